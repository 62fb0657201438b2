"""The model spec: the contract every stage shares, written as a JSON sidecar beside every artifact.

A checkpoint ``model.pt`` has ``model.pt.json``; an ONNX graph ``encoder.onnx`` has ``encoder.onnx.json``; an engine
``encoder.engine`` has ``encoder.engine.json``. The runtime reads preprocessing, tensor names and shapes from the
sidecar only, and refuses an artifact whose sidecar is missing or whose recorded sha256 does not match the file.

This module imports nothing from the package but :mod:`sgjnd.errors` and :mod:`sgjnd.fileio`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sgjnd.errors import SpecError
from sgjnd.fileio import sha256_file, write_atomic

SPEC_FORMAT = 1
"""Version of the sidecar layout; bumped when a field changes meaning."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

BATCH = "batch"
"""Name of the dynamic batch axis in tensor shapes."""

Subsampling = Literal["420", "422", "444"]
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
    """

    name: str
    patch_size: int
    feature_dim: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channel_order: Literal["rgb", "bgr"] = "rgb"
    jpeg: JpegSettings = field(default_factory=JpegSettings)
    arch: dict[str, Any] = field(default_factory=dict)

    def encoder_graph(self) -> GraphSpec:
        """Graph spec of the encoder: normalised patches -> features."""
        s = self.patch_size
        return GraphSpec(
            "encoder",
            inputs=(TensorSpec("patches", (BATCH, 3, s, s)),),
            outputs=(TensorSpec("features", (BATCH, self.feature_dim)),),
        )

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
    format: int = SPEC_FORMAT

    def to_json(self) -> str:
        """Serialise deterministically (sorted keys), so unchanged inputs give identical files."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sidecar:
        """Parse a sidecar dictionary; raises SpecError naming the first field that does not fit."""
        try:
            fmt = int(data.get("format", -1))
            if fmt != SPEC_FORMAT:
                raise SpecError(f"sidecar format {fmt} is not supported: expected {SPEC_FORMAT}")
            m = dict(data["model"])
            model = ModelSpec(
                name=str(m["name"]),
                patch_size=int(m["patch_size"]),
                feature_dim=int(m["feature_dim"]),
                mean=_triple(m["mean"]),
                std=_triple(m["std"]),
                channel_order=m["channel_order"],
                jpeg=JpegSettings(**m["jpeg"]),
                arch=dict(m.get("arch", {})),
            )
            artifact = ArtifactInfo(**data["artifact"])
        except SpecError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise SpecError(f"sidecar does not have the expected fields: {type(exc).__name__}: {exc}") from exc
        if model.channel_order not in ("rgb", "bgr"):
            raise SpecError(f"channel_order must be 'rgb' or 'bgr', got {model.channel_order!r}")
        if model.jpeg.subsampling not in ("420", "422", "444"):
            raise SpecError(f"jpeg.subsampling must be '420', '422' or '444', got {model.jpeg.subsampling!r}")
        return cls(model=model, artifact=artifact, format=fmt)


def _triple(values: Any) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return (a, b, c)


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
        data = json.loads(path.read_text())
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
