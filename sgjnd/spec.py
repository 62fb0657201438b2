"""The model spec: the contract every stage shares, written as a JSON sidecar beside every artifact.

A checkpoint ``model.pt`` has ``model.pt.json``; an ONNX graph ``encoder.onnx`` has ``encoder.onnx.json``; an engine
``encoder.engine`` has ``encoder.engine.json``. The runtime reads preprocessing, tensor names and shapes from the
sidecar only, and refuses an artifact whose sidecar is missing or whose recorded sha256 does not match the file.

This module imports nothing from the package but :mod:`sgjnd.errors` and :mod:`sgjnd.fileio`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sgjnd.errors import SpecError
from sgjnd.fileio import sha256_file, write_atomic

SPEC_FORMAT = 2
"""Version of the sidecar layout; bumped when a field changes meaning. Format 2 added ``model.encoder_input``; a
sidecar is written with the lowest format that describes it (:meth:`Sidecar.to_json`), so that float-input
artifacts stay readable by runtimes that know only format 1, and a uint8-input one is refused by them instead of
being fed float32 patches."""

READABLE_FORMATS = (1, 2)
"""Sidecar formats this version reads (format 1 has no ``encoder_input``: its encoder takes float32)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BATCH = "batch"
"""Name of the dynamic batch axis in tensor shapes."""

Subsampling = Literal["420", "422", "444"]
EncoderInput = Literal["float32", "uint8"]
"""What the encoder graph takes (:attr:`ModelSpec.encoder_input`)."""
GraphName = Literal["encoder", "head"]
ArtifactKind = Literal["checkpoint", "onnx", "engine"]


@dataclass(frozen=True)
class JpegSettings:
    """How distorted images are made. Must equal the settings used to make the training labels.

    Attributes:
        encoder: the JPEG implementation; only OpenCV's bundled libjpeg is shipped.
        subsampling: chroma subsampling; 4:2:0 is what most encoders and the JND datasets use.
        optimize: Huffman optimisation (changes bytes, not pixels).
        progressive: progressive scan (changes bytes, not pixels).
    """

    encoder: str = "opencv-libjpeg"
    subsampling: Subsampling = "420"
    optimize: bool = False
    progressive: bool = False

    @property
    def mcu_size(self) -> tuple[int, int]:
        """(height, width) of one minimum coded unit in pixels; crops aligned to it encode identically."""
        return {"420": (16, 16), "422": (8, 16), "444": (8, 8)}[self.subsampling]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a graph. A string dimension is dynamic (``"batch"``)."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str = "float32"


@dataclass(frozen=True)
class GraphSpec:
    """The inputs and outputs of one deployment graph (``encoder`` or ``head``)."""

    name: GraphName
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class ModelSpec:
    """What a runtime must know about a model: preprocessing, feature width and JPEG settings.

    Attributes:
        name: registry name of the model variant (``sgjnd_r50``, ``sgjnd_tiny``, ...).
        patch_size: side s of the square patches, in pixels.
        feature_dim: width of the encoder's per-patch feature vector (4·d).
        mean: per-channel mean subtracted after scaling pixels to [0, 1], in ``channel_order``.
        std: per-channel standard deviation divided after subtracting the mean.
        channel_order: channel order the encoder expects.
        jpeg: how distorted patches are made.
        arch: keyword arguments that rebuild the network from the registry (widths, heads, ...).
        encoder_input: what the encoder graph takes. ``float32``: (N, 3, s, s) patches in ``channel_order``, scaled
            and normalised by the caller. ``uint8``: (N, s, s, 3) BGR pixels exactly as decoded and cut, with the
            channel order, cast, normalisation and layout change inside the graph: a quarter of the bytes to copy
            to a device and no normalisation pass on the host (DESIGN.md §3). ``mean``, ``std`` and
            ``channel_order`` describe the network either way.
    """

    name: str
    patch_size: int
    feature_dim: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channel_order: Literal["rgb", "bgr"] = "rgb"
    jpeg: JpegSettings = field(default_factory=JpegSettings)
    arch: dict[str, Any] = field(default_factory=dict)
    encoder_input: EncoderInput = "float32"

    def encoder_graph(self) -> GraphSpec:
        """Graph spec of the encoder: patches (per :attr:`encoder_input`) -> features."""
        s = self.patch_size
        patches = (
            TensorSpec("patches", (BATCH, s, s, 3), "uint8")
            if self.encoder_input == "uint8"
            else TensorSpec("patches", (BATCH, 3, s, s))
        )
        return GraphSpec("encoder", inputs=(patches,), outputs=(TensorSpec("features", (BATCH, self.feature_dim)),))

    def with_encoder_input(self, encoder_input: EncoderInput) -> ModelSpec:
        """This spec with another encoder input kind (the network and its preprocessing are the same)."""
        if encoder_input not in ("float32", "uint8"):
            raise SpecError(f"encoder_input must be 'float32' or 'uint8', got {encoder_input!r}")
        return dataclasses.replace(self, encoder_input=encoder_input)

    def same_network(self, other: ModelSpec) -> bool:
        """Whether ``other`` describes the same network, whatever input kind its encoder graph takes."""
        return self.with_encoder_input("float32") == other.with_encoder_input("float32")

    def head_graph(self) -> GraphSpec:
        """Graph spec of the head: reference and distorted features -> patch quality q and weight w."""
        f = self.feature_dim
        return GraphSpec(
            "head",
            inputs=(TensorSpec("f_ref", (BATCH, f)), TensorSpec("f_dis", (BATCH, f))),
            outputs=(TensorSpec("q", (BATCH,)), TensorSpec("w", (BATCH,))),
        )

    def graph(self, name: GraphName) -> GraphSpec:
        """The spec of graph ``name``."""
        if name == "encoder":
            return self.encoder_graph()
        if name == "head":
            return self.head_graph()
        raise SpecError(f"unknown graph {name!r}: expected 'encoder' or 'head'")


@dataclass(frozen=True)
class ArtifactInfo:
    """Provenance of one artifact file.

    Attributes:
        kind: checkpoint, onnx or engine.
        file: the artifact's file name, relative to the sidecar.
        sha256: sha256 of the artifact file.
        graph: which graph the file holds; None for a checkpoint (it holds both).
        precision: fp32, fp16 or int8 (with a flavour such as ``int8-ort`` where it matters).
        checkpoint_sha256: sha256 of the checkpoint the artifact was made from.
        weights: a plain statement of what the weights are (trained on what, or untrained).
        producer: versions of the libraries that made the artifact.
        details: kind-specific facts (opset, TensorRT version, GPU, profile, calibration hash, ...).
    """

    kind: ArtifactKind
    file: str
    sha256: str
    graph: GraphName | None = None
    precision: str = "fp32"
    checkpoint_sha256: str | None = None
    weights: str = ""
    producer: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sidecar:
    """The JSON document beside an artifact: the model spec plus the artifact's provenance."""

    model: ModelSpec
    artifact: ArtifactInfo

    @property
    def format(self) -> int:
        """The sidecar format it is written with: the lowest that describes it (1 unless the encoder takes uint8)."""
        return 1 if self.model.encoder_input == "float32" else SPEC_FORMAT

    def to_json(self) -> str:
        """Serialise deterministically (sorted keys), so unchanged inputs give identical files.

        Written with the lowest format that describes it: a float-input spec as format 1 without
        ``encoder_input`` (readable by every runtime), a uint8-input one as format 2.
        """
        data = dataclasses.asdict(self)
        data["model"] = spec_dict(self.model)
        data["format"] = self.format
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sidecar:
        """Parse a sidecar dictionary; raises SpecError naming the first field that does not fit.

        Every field is checked for its type and range (a patch size above 0, three finite means, three finite
        standard deviations above 0, ...), so a damaged or hand-edited sidecar is refused rather than giving results
        of nonsense.
        """
        if not isinstance(data, dict):
            raise SpecError(f"a sidecar must be a JSON object, got {type(data).__name__}")
        fmt = data.get("format", -1)
        if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt not in READABLE_FORMATS:
            raise SpecError(
                f"sidecar format {fmt!r} is not supported: this version of sgjnd reads formats "
                f"{', '.join(map(str, READABLE_FORMATS))}; a newer format comes from a newer sgjnd: upgrade it"
            )
        m = _field(data, "model", dict, "")
        j = _field(m, "jpeg", dict, "model.")
        subsampling = _field(j, "subsampling", str, "model.jpeg.", JpegSettings.subsampling)
        if subsampling not in ("420", "422", "444"):
            raise SpecError(f"jpeg.subsampling must be '420', '422' or '444', got {subsampling!r}")
        jpeg = JpegSettings(
            encoder=_field(j, "encoder", str, "model.jpeg.", JpegSettings.encoder),
            subsampling=subsampling,
            optimize=_field(j, "optimize", bool, "model.jpeg.", JpegSettings.optimize),
            progressive=_field(j, "progressive", bool, "model.jpeg.", JpegSettings.progressive),
        )
        unknown = set(j) - {f.name for f in dataclasses.fields(JpegSettings)}
        if unknown:
            raise SpecError(f"model.jpeg has unknown fields {sorted(unknown)}")
        channel_order = _field(m, "channel_order", str, "model.")
        if channel_order not in ("rgb", "bgr"):
            raise SpecError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
        encoder_input = _field(m, "encoder_input", str, "model.", "float32")
        if encoder_input not in ("float32", "uint8") or (fmt < 2 and "encoder_input" in m):
            raise SpecError(
                f"model.encoder_input must be 'float32' or 'uint8' (from sidecar format 2 on), got {encoder_input!r} "
                f"in format {fmt}"
            )
        model = ModelSpec(
            name=_field(m, "name", str, "model."),
            patch_size=_positive_int(m, "patch_size"),
            feature_dim=_positive_int(m, "feature_dim"),
            mean=_triple(m, "mean", positive=False),
            std=_triple(m, "std", positive=True),
            channel_order=channel_order,  # checked just above
            jpeg=jpeg,
            arch=_field(m, "arch", dict, "model.", {}),
            encoder_input=encoder_input,  # checked just above
        )
        a = _field(data, "artifact", dict, "")
        kind = _field(a, "kind", str, "artifact.")
        if kind not in ("checkpoint", "onnx", "engine"):
            raise SpecError(f"artifact.kind must be 'checkpoint', 'onnx' or 'engine', got {kind!r}")
        graph = _field(a, "graph", (str, type(None)), "artifact.", None)
        if graph not in (None, "encoder", "head"):
            raise SpecError(f"artifact.graph must be 'encoder', 'head' or null, got {graph!r}")
        unknown = set(a) - {f.name for f in dataclasses.fields(ArtifactInfo)}
        if unknown:
            raise SpecError(f"artifact has unknown fields {sorted(unknown)}")
        artifact = ArtifactInfo(
            kind=kind,  # checked just above
            file=_field(a, "file", str, "artifact."),
            sha256=_field(a, "sha256", str, "artifact."),
            graph=graph,
            precision=_field(a, "precision", str, "artifact.", "fp32"),
            checkpoint_sha256=_field(a, "checkpoint_sha256", (str, type(None)), "artifact.", None),
            weights=_field(a, "weights", str, "artifact.", ""),
            producer=_field(a, "producer", dict, "artifact.", {}),
            details=_field(a, "details", dict, "artifact.", {}),
        )
        return cls(model=model, artifact=artifact)


def spec_dict(model: ModelSpec) -> dict[str, Any]:
    """``model`` as the JSON object sidecars and checkpoints hold: ``encoder_input`` is left out when it is the
    ``float32`` of format 1, so float-input specs have the same form as before the field existed."""
    data = dataclasses.asdict(model)
    if model.encoder_input == "float32":
        del data["encoder_input"]
    return data


_MISSING = object()

_TYPE_WORDS = {str: "a string", dict: "a JSON object", bool: "true or false", int: "an integer", list: "a list"}


def _field(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = _MISSING) -> Any:
    """``data[key]``, checked to be of ``kind``; ``default`` when missing (or SpecError when there is none)."""
    value = data.get(key, _MISSING)
    if value is _MISSING:
        if default is _MISSING:
            raise SpecError(f"sidecar does not have the expected fields: {where}{key} is missing")
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
        words = " or ".join(_TYPE_WORDS.get(k, "null" if k is type(None) else k.__name__) for k in kinds)
        raise SpecError(f"{where}{key} must be {words}, got {_short(value)}")
    return value


def _positive_int(m: dict[str, Any], key: str) -> int:
    value = _field(m, key, int, "model.")
    if value < 1:
        raise SpecError(f"model.{key} must be an integer above 0, got {value}")
    return int(value)


def _triple(m: dict[str, Any], key: str, *, positive: bool) -> tuple[float, float, float]:
    values = _field(m, key, list, "model.")
    rule = "three finite numbers" + (" above 0" if positive else "")
    if len(values) != 3 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise SpecError(f"model.{key} must be {rule}, got {_short(values)}")
    a, b, c = (float(v) for v in values)
    if not all(math.isfinite(v) and (v > 0 or not positive) for v in (a, b, c)):
        raise SpecError(f"model.{key} must be {rule}, got {_short(values)}")
    return (a, b, c)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


SIDECAR_MAX_BYTES = 16 << 20
"""The largest sidecar read: real ones are a few kilobytes."""


def sidecar_path(artifact: Path) -> Path:
    """Where the sidecar of ``artifact`` lives: the same name with ``.json`` appended."""
    return artifact.with_name(artifact.name + ".json")


def write_sidecar(artifact: Path, sidecar: Sidecar) -> Path:
    """Write ``sidecar`` beside ``artifact`` atomically and return its path."""
    path = sidecar_path(artifact)
    write_atomic(path, sidecar.to_json().encode())
    return path


def read_sidecar(artifact: Path, *, rebuild_hint: str = "", verify_hash: bool = True) -> Sidecar:
    """Read and check the sidecar of ``artifact``.

    Args:
        artifact: the artifact file (checkpoint, ONNX graph or engine).
        rebuild_hint: the command that regenerates the artifact, quoted in every error.
        verify_hash: compare the artifact's sha256 with the one recorded in the sidecar.

    Raises:
        SpecError: the artifact or its sidecar is missing, unreadable, or they do not match.
    """
    hint = f" Regenerate it with: {rebuild_hint}" if rebuild_hint else ""
    if not artifact.is_file():
        raise SpecError(f"{artifact} does not exist or is not a file.{hint}")
    path = sidecar_path(artifact)
    if not path.is_file():
        raise SpecError(f"{artifact} has no spec sidecar: expected {path}.{hint}")
    try:
        with open(path, "rb") as fh:  # is_file() above: a regular file (or a link to one), never a FIFO or device
            raw = fh.read(SIDECAR_MAX_BYTES + 1)
        if len(raw) > SIDECAR_MAX_BYTES:
            raise SpecError(f"{path} is larger than {SIDECAR_MAX_BYTES:,} bytes: not a sidecar.{hint}")
        data = json.loads(raw.decode("utf-8"))
    except RecursionError as exc:
        raise SpecError(f"{path} is not a readable JSON sidecar (nested too deeply).{hint}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"{path} is not a readable JSON sidecar ({exc}).{hint}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path} is not a JSON object.{hint}")
    try:
        sidecar = Sidecar.from_dict(data)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}.{hint}") from exc
    if sidecar.artifact.file != artifact.name:
        raise SpecError(f"{path} describes {sidecar.artifact.file!r}, not {artifact.name!r}.{hint}")
    if verify_hash:
        actual = sha256_file(artifact)
        if actual != sidecar.artifact.sha256:
            raise SpecError(
                f"{artifact} does not match its sidecar: sha256 {actual[:12]}… but the sidecar records "
                f"{sidecar.artifact.sha256[:12]}… (the file was changed, truncated or replaced).{hint}"
            )
    return sidecar
