"""Calibration data: reference and JPEG-distorted patches made exactly as the runtime makes them at inference.

The reader walks an image folder (recursively; jpg, jpeg, png, bmp, webp, tif, tiff in any case), decodes each image
with the runtime's :func:`~sgjnd.runtime.decode.decode_image` and makes its patches with the predictor's own
:class:`~sgjnd.runtime.pairs.PairMaker`: the same padding of small images, patch grid (capped per image), exact-crop
JPEG codec and normalisation (with the spec read from the graph's sidecar), so calibration sees the inference
distribution and nothing else.

Which patches are taken differs from the predictor on purpose: the predictor scores every cell of an image at every
QF its search visits, while calibration has a fixed budget of ``num_patches`` to spread over many images and the whole
QF range:

- ``reference_share`` of the ``num_patches`` are reference (pristine) patches, spread evenly over the images (an
  accumulator hands out the quota, so a skipped image passes its share on); the cells within an image are drawn with
  the seeded generator from the image's grid.
- The rest are distorted patches of those same cells, each at one QF taken from a stratified sequence over the QF
  range (one QF per equal-width stratum, shuffled by the seed): every part of the range is covered, whatever
  ``num_patches`` is.
- Each distorted patch records the index of its reference patch, so the head can be calibrated on real
  (reference, distorted) feature pairs (:func:`head_features`, :class:`HeadDataReader`).

Everything is a pure function of (the image files, the settings, the seed). A file that cannot be decoded is logged,
listed in :attr:`CalibrationSet.skipped` (and so in the report) and skipped, never silently; a folder with no
readable image fails with :class:`~sgjnd.errors.CalibrationError`.

A set can be saved to, and read back from, an ``.npz`` file (uint8 BGR patches plus their QFs and pairing): the
normalisation is applied when the set is used, from the spec of the graph being calibrated.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sgjnd.engine_spec import batch_shape
from sgjnd.errors import CalibrationError, ImageError, UsageError
from sgjnd.fileio import sha256_bytes, write_atomic
from sgjnd.progress import Progress
from sgjnd.runtime.backends.base import ModelBackends
from sgjnd.runtime.batching import batch_size_for, encode
from sgjnd.runtime.decode import DEFAULT_MAX_PIXELS, decode_image
from sgjnd.runtime.pairs import GriddedImage, PairMaker
from sgjnd.runtime.patches import PatchGrid
from sgjnd.spec import ModelSpec

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
"""File suffixes read from an image folder (compared case-insensitively)."""

NPZ_FORMAT = 1
"""Version of the ``.npz`` layout written by :meth:`CalibrationSet.save`."""

REFERENCE_QF = 0
"""The QF recorded for a reference (pristine) patch."""

HEAD_CHUNK = 64
"""Feature pairs per head calibrator pass, and per batch of a :class:`HeadDataReader` (ONNX Runtime's calibrators
take whatever batch a reader yields). The encoder's passes are ``QuantizeConfig.chunk`` patches, few because every
intermediate tensor of a pass is held; the head's tensors are those of two small MLPs, so a larger chunk costs
nothing. It is fixed here rather than taken from a runner: the chunking decides how the histogram methods merge
their passes, so it must not vary with the machine."""


@dataclass(frozen=True)
class ReaderConfig:
    """How calibration patches are chosen.

    Attributes:
        num_patches: patches in the set (reference plus distorted).
        reference_share: fraction of the patches that are pristine reference patches.
        patches_per_image: cap on the patch grid of each image (the runtime's ``max_patches``).
        qf_min: lowest QF of the distorted patches.
        qf_max: highest QF of the distorted patches.
        seed: seed of every random choice (image order, cells, QF order).
        stride: patch-grid stride; None means the patch size, as at inference.
        max_pixels: images with more pixels are refused from their header, as at inference.
        jpeg_margin: context pixels of the exact-crop JPEG encode, as at inference.
    """

    num_patches: int = 256
    reference_share: float = 0.25
    patches_per_image: int = 8
    qf_min: int = 1
    qf_max: int = 100
    seed: int = 0
    stride: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    jpeg_margin: int = 16

    def __post_init__(self) -> None:
        if self.num_patches < 2:
            raise UsageError(
                f"num_patches must be at least 2 (a reference and a distorted patch), got {self.num_patches}"
            )
        if not 0.0 < self.reference_share < 1.0:
            raise UsageError(f"reference_share must be in (0, 1), got {self.reference_share}")
        if self.patches_per_image < 1:
            raise UsageError(f"patches_per_image must be at least 1, got {self.patches_per_image}")
        if not 1 <= self.qf_min <= self.qf_max <= 100:
            raise UsageError(f"need 1 <= qf_min <= qf_max <= 100, got qf_min={self.qf_min} qf_max={self.qf_max}")
        if self.seed < 0:
            raise UsageError(f"seed must be a non-negative integer, got {self.seed}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON types (for cache keys, sidecars and reports)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SkippedImage:
    """An image the reader could not use, and why."""

    path: str
    reason: str


@dataclass(frozen=True, eq=False)
class CalibrationSet:
    """Calibration patches of one patch size, before normalisation.

    Attributes:
        patches: (N, s, s, 3) uint8 BGR patches.
        qf: (N,) int16 QF of each patch; :data:`REFERENCE_QF` (0) for a reference patch.
        ref_index: (N,) int64 index of each patch's reference patch (a reference points at itself).
        sources: the image files the patches came from (relative to the folder), in reading order.
        skipped: images that could not be used, with the reason.
        settings: the reader settings, or where a loaded set came from.
    """

    patches: np.ndarray
    qf: np.ndarray
    ref_index: np.ndarray
    sources: tuple[str, ...] = ()
    skipped: tuple[SkippedImage, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_arrays(self.patches, self.qf, self.ref_index, "calibration set")

    def __len__(self) -> int:
        return int(self.patches.shape[0])

    @property
    def patch_size(self) -> int:
        """Side s of the patches."""
        return int(self.patches.shape[1])

    @property
    def num_reference(self) -> int:
        """Number of reference (pristine) patches."""
        return int(np.sum(self.qf == REFERENCE_QF))

    @property
    def distorted_index(self) -> np.ndarray:
        """Indices of the distorted patches."""
        return np.flatnonzero(self.qf != REFERENCE_QF)

    def sha256(self) -> str:
        """Hash of the content (patch bytes, QFs and pairing): equal sets hash equal, whatever their origin."""
        parts = [
            f"{self.patches.shape}|".encode(),
            np.ascontiguousarray(self.patches).tobytes(),
            np.ascontiguousarray(self.qf.astype("<i2")).tobytes(),
            np.ascontiguousarray(self.ref_index.astype("<i8")).tobytes(),
        ]
        return sha256_bytes(b"".join(parts))

    def encoder_inputs(self, spec: ModelSpec, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Encoder input for patches ``start:stop`` as the runtime gives it to ``spec``'s encoder graph (uint8 pixels
        or normalised float32: ``spec.encoder_input``), so INT8 ranges are calibrated on what the graph will see.

        Raises:
            CalibrationError: the set's patch size is not the spec's.
        """
        self.check_spec(spec)
        return PairMaker(spec).encoder_input(np.ascontiguousarray(self.patches[start:stop]))

    def batches(self, spec: ModelSpec, batch_size: int) -> Iterator[np.ndarray]:
        """Encoder inputs (:meth:`encoder_inputs`) in batches of ``batch_size`` (the last one may be shorter)."""
        if batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            yield self.encoder_inputs(spec, start, start + batch_size)

    def check_spec(self, spec: ModelSpec) -> None:
        """Refuse a spec whose patch size differs from the set's.

        Raises:
            CalibrationError: naming both sizes and how to make a fitting set.
        """
        if spec.patch_size != self.patch_size:
            raise CalibrationError(
                f"the calibration patches are {self.patch_size}px but model {spec.name!r} expects "
                f"{spec.patch_size}px patches: read the images again for this model (sgjnd calibrate --images DIR)"
            )

    def summary(self) -> dict[str, Any]:
        """Counts, QF coverage, sources and skipped images, for reports and sidecars."""
        dis = self.qf[self.qf != REFERENCE_QF]
        return {
            "patches": len(self),
            "reference": self.num_reference,
            "distorted": int(dis.size),
            "patch_size": self.patch_size,
            "qf_min": int(dis.min()) if dis.size else None,
            "qf_max": int(dis.max()) if dis.size else None,
            "images": len(self.sources),
            "skipped": [dataclasses.asdict(s) for s in self.skipped],
            "sha256": self.sha256(),
            "settings": self.settings,
        }

    # -- .npz ----------------------------------------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        """Write the set to ``path`` (``.npz``, compressed) atomically and return the path."""
        path = Path(path)
        skipped = [dataclasses.asdict(s) for s in self.skipped]
        meta = {"format": NPZ_FORMAT, "settings": self.settings, "skipped": skipped}
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            patches=self.patches,
            qf=self.qf.astype(np.int16),
            ref_index=self.ref_index.astype(np.int64),
            sources=np.array(self.sources, dtype=np.str_),
            meta=np.array(json.dumps(meta, sort_keys=True)),
        )
        write_atomic(path, buffer.getvalue())
        return path

    @staticmethod
    def is_ours(path: Path) -> bool:
        """True when ``path`` is a ``.npz`` written by :meth:`save` (a zip with its ``patches`` and ``meta``)."""
        import zipfile

        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
        except (zipfile.BadZipFile, OSError):
            return False
        return {"patches.npy", "meta.npy"} <= names

    @classmethod
    def load(cls, path: Path) -> CalibrationSet:
        """Read a set written by :meth:`save`.

        Raises:
            CalibrationError: the file is missing, not an npz, or lacks or mistypes an array.
        """
        path = Path(path)
        hint = "write one with CalibrationSet.save() or `sgjnd calibrate ... --save-patches FILE.npz`"
        if not path.is_file():
            raise CalibrationError(f"calibration patches file {path} does not exist; {hint}")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as exc:
            raise CalibrationError(f"{path} is not a readable .npz file ({exc}); {hint}") from exc
        missing = [k for k in ("patches", "qf", "ref_index") if k not in arrays]
        if missing:
            raise CalibrationError(f"{path} lacks the array(s) {missing}: expected patches, qf, ref_index; {hint}")
        meta: dict[str, Any] = {}
        if "meta" in arrays:
            try:
                meta = json.loads(str(arrays["meta"]))
            except json.JSONDecodeError as exc:
                raise CalibrationError(f"{path}: its 'meta' entry is not JSON ({exc}); {hint}") from exc
        if meta.get("format", NPZ_FORMAT) != NPZ_FORMAT:
            raise CalibrationError(f"{path} has npz format {meta.get('format')}, expected {NPZ_FORMAT}; {hint}")
        try:
            _check_arrays(arrays["patches"], arrays["qf"], arrays["ref_index"], str(path))
        except CalibrationError as exc:
            raise CalibrationError(f"{exc}; {hint}") from exc
        skipped = tuple(SkippedImage(str(s["path"]), str(s["reason"])) for s in meta.get("skipped", []))
        settings = dict(meta.get("settings", {}))
        settings["loaded_from"] = path.name
        return cls(
            patches=np.ascontiguousarray(arrays["patches"]),
            qf=arrays["qf"].astype(np.int16),
            ref_index=arrays["ref_index"].astype(np.int64),
            sources=tuple(str(s) for s in arrays.get("sources", np.array([], dtype=np.str_)).tolist()),
            skipped=skipped,
            settings=settings,
        )


def _check_arrays(patches: Any, qf: Any, ref_index: Any, where: str) -> None:
    """Refuse arrays that do not form a calibration set, naming what was expected and what came."""
    if not isinstance(patches, np.ndarray) or patches.dtype != np.uint8 or patches.ndim != 4 or patches.shape[3] != 3:
        got = f"{patches.dtype} {patches.shape}" if isinstance(patches, np.ndarray) else type(patches).__name__
        raise CalibrationError(f"{where}: patches must be (N, s, s, 3) uint8 BGR, got {got}")
    n = patches.shape[0]
    if n < 1 or patches.shape[1] != patches.shape[2]:
        raise CalibrationError(f"{where}: patches must be a non-empty stack of square patches, got {patches.shape}")
    for name, arr in (("qf", qf), ("ref_index", ref_index)):
        if not isinstance(arr, np.ndarray) or arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
            got = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
            raise CalibrationError(f"{where}: {name} must be ({n},) integers, got {got}")
    if np.any((qf < 0) | (qf > 100)):
        raise CalibrationError(f"{where}: qf values must be 0 (reference) or 1..100, got {np.unique(qf)[:8]}")
    if np.any((ref_index < 0) | (ref_index >= n)) or np.any(qf[ref_index] != REFERENCE_QF):
        raise CalibrationError(f"{where}: ref_index must point at reference patches (qf 0) within the set")


# -- reading a folder --------------------------------------------------------------------------------------------


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, suffixes in :data:`IMAGE_SUFFIXES`, any case), sorted by path.

    Raises:
        CalibrationError: ``folder`` does not exist, is not a directory, or holds no image file.
    """
    folder = Path(folder)
    if not folder.exists():
        raise CalibrationError(f"image folder {folder} does not exist: pass a folder of calibration photos")
    if not folder.is_dir():
        raise CalibrationError(f"{folder} is a file, but a folder of images (or a saved .npz of patches) was expected")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CalibrationError(
            f"no images found under {folder}: expected files ending in {', '.join(IMAGE_SUFFIXES)} (any case); "
            f"add real photographs like the ones the model will see"
        )
    return files


def split_holdout(files: Sequence[Path], count: int, *, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Split ``files`` into (calibration, held-out) with ``count`` held-out files chosen by ``seed``.

    Raises:
        CalibrationError: ``count`` leaves no calibration file or is negative.
    """
    if count < 0 or count >= len(files):
        raise CalibrationError(
            f"cannot hold out {count} of {len(files)} image(s): at least one must remain for calibration; "
            f"pass a smaller number or a separate folder of held-out images"
        )
    order = np.random.default_rng([seed, 0x401D]).permutation(len(files))
    held = set(order[:count].tolist())
    calib = [f for i, f in enumerate(files) if i not in held]
    holdout = [f for i, f in enumerate(files) if i in held]
    return calib, holdout


def read_calibration_set(
    source: Path | Sequence[Path],
    spec: ModelSpec,
    config: ReaderConfig | None = None,
    *,
    root: Path | None = None,
    progress: bool = True,
) -> CalibrationSet:
    """Make (or load) the calibration set for a model.

    Args:
        source: a folder of images, a saved ``.npz`` of patches, or a list of image files.
        spec: the model spec (patch size, JPEG settings); read it from the graph's sidecar.
        config: how patches are chosen; None uses the defaults of :class:`ReaderConfig`.
        root: the folder ``sources`` are reported relative to, for a list of files.
        progress: show a progress line on stderr.

    Returns:
        The set, with the images used and skipped.

    Raises:
        CalibrationError: the folder is missing or empty, no image could be read, or the npz does not fit ``spec``.
    """
    config = config or ReaderConfig()
    if isinstance(source, str | Path) and Path(source).is_file() and Path(source).suffix.lower() == ".npz":
        loaded = CalibrationSet.load(Path(source))
        loaded.check_spec(spec)
        return loaded
    if isinstance(source, str | Path):
        root = Path(source)
        files = list_images(root)
    else:
        files = [Path(f) for f in source]
        if not files:
            raise CalibrationError("no calibration images were given: pass a folder of photos or a list of files")
    return _read_images(files, spec, config, root=root, progress=progress)


def _relative(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return str(path)


def _stratified_qfs(count: int, config: ReaderConfig, rng: np.random.Generator) -> np.ndarray:
    """``count`` QFs, one per equal-width stratum of [qf_min, qf_max + 1), in a seeded random order."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    width = config.qf_max - config.qf_min + 1
    positions = (np.arange(count) + rng.random(count)) * width / count
    qfs = config.qf_min + np.floor(positions).astype(np.int64)
    return rng.permutation(np.clip(qfs, config.qf_min, config.qf_max))


def _read_images(
    files: Sequence[Path], spec: ModelSpec, config: ReaderConfig, *, root: Path | None, progress: bool
) -> CalibrationSet:
    rng = np.random.default_rng(config.seed)
    maker = PairMaker(spec, margin=config.jpeg_margin)
    order = rng.permutation(len(files))
    ref_target = max(1, round(config.num_patches * config.reference_share))
    dis_target = config.num_patches - ref_target
    qf_stream = _stratified_qfs(dis_target, config, rng).tolist()

    patches: list[np.ndarray] = []
    qfs: list[int] = []
    ref_index: list[int] = []
    sources: list[str] = []
    skipped: list[SkippedImage] = []
    refs_left, dis_left, share = ref_target, dis_target, 0.0
    bar = Progress(len(files), "calibration images", enabled=progress)
    for rank, idx in enumerate(order.tolist()):
        path = files[idx]
        name = _relative(path, root)
        images_left = len(files) - rank
        # Hand out the reference quota evenly over the images still to read; a skipped or small image leaves its
        # share to the ones after it.
        share += refs_left / images_left
        quota = min(refs_left, math.floor(share + 1e-9))
        if quota == 0 or refs_left == 0:
            bar.step(name)
            continue
        try:
            decoded = decode_image(path, max_pixels=config.max_pixels)
        except ImageError as exc:
            log.warning("calibration: skipping %s: %s", name, exc)
            skipped.append(SkippedImage(name, str(exc)))
            bar.step(f"{name} (skipped)")
            continue
        image = maker.grid(decoded.bgr, stride=config.stride, max_patches=config.patches_per_image)
        k = min(quota, len(image))
        share -= k
        # Unlike the predictor (every cell of the grid), a seeded draw of the image's quota of cells.
        cells = _cells(image, np.sort(rng.choice(len(image), size=k, replace=False)))
        # Distorted patches follow the references in proportion, so every image adds both kinds.
        n_dis = dis_left if k >= refs_left else round(dis_left * k / refs_left)
        refs_left -= k
        dis_left -= n_dis
        base = len(patches)
        patches.extend(maker.reference_pixels(cells))
        qfs.extend([REFERENCE_QF] * k)
        ref_index.extend(range(base, base + k))
        # Unlike the predictor (each cell at every QF its search visits), each distorted patch is one cell at one QF
        # of the stratified stream, so a fixed budget covers the whole QF range.
        chosen_qfs, qf_stream = qf_stream[:n_dis], qf_stream[n_dis:]
        owners = np.resize(rng.permutation(k), n_dis)  # cycle through the image's cells
        for qf in sorted(set(chosen_qfs)):
            members = [j for j, q in enumerate(chosen_qfs) if q == qf]
            cell_ids = owners[members]
            patches.extend(maker.distorted_pixels(_cells(cells, cell_ids), int(qf)))
            qfs.extend([int(qf)] * len(members))
            ref_index.extend((base + cell_ids).tolist())
        sources.append(name)
        bar.step(name)

    if not patches:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in skipped[:3])
        raise CalibrationError(
            f"none of the {len(files)} image(s) could be read for calibration ({reasons}"
            f"{' …' if len(skipped) > 3 else ''}); pass a folder of readable photographs"
        )
    if len(patches) < config.num_patches:
        log.warning(
            "calibration: %d patches instead of the %d asked for (%d reference cells available); add images or "
            "raise patches_per_image", len(patches), config.num_patches, ref_target - refs_left
        )
    if skipped:
        log.warning("calibration: %d image(s) skipped: %s", len(skipped), ", ".join(s.path for s in skipped))
    return CalibrationSet(
        patches=np.ascontiguousarray(np.stack(patches)),
        qf=np.asarray(qfs, dtype=np.int16),
        ref_index=np.asarray(ref_index, dtype=np.int64),
        sources=tuple(sources),
        skipped=tuple(skipped),
        settings=config.to_dict(),
    )


def _cells(image: GriddedImage, index: np.ndarray) -> GriddedImage:
    """``image`` with only the cells ``index`` of its grid."""
    grid = image.grid
    coords = np.ascontiguousarray(grid.coords[index])
    return dataclasses.replace(image, grid=PatchGrid(coords=coords, patch_size=grid.patch_size,
                                                     image_shape=grid.image_shape))


def head_features(models: ModelBackends, data: CalibrationSet) -> np.ndarray:
    """The head's calibration data: encoder features of every patch of ``data``, in the set's order.

    ``models`` is an entered model (the FP32 graphs); the patches stream through its encoder in the runtime's batches
    (:func:`sgjnd.runtime.batching.encode`), as ``models.model``'s encoder takes them.
    """
    batches = data.batches(models.model, batch_size_for(models.encoder))
    return np.asarray(encode(models, batches), dtype=np.float32)


# -- adapters ----------------------------------------------------------------------------------------------------


class EncoderDataReader:
    """ONNX Runtime ``CalibrationDataReader`` for the encoder: ``get_next() -> {"patches": batch}`` then None.

    ONNX Runtime accepts any object with ``get_next`` (its ABC has a ``__subclasshook__``), so this module does
    not import onnxruntime. Call :meth:`rewind` to read the set again.

    Args:
        data: the calibration set.
        spec: the model spec that gives the normalisation.
        batch_size: patches per batch.
        input_name: the encoder's input tensor.
        start: first patch to read.
        stop: one past the last patch to read; None reads to the end.
    """

    def __init__(self, data: CalibrationSet, spec: ModelSpec, *, batch_size: int = 8,
                 input_name: str = "patches", start: int = 0, stop: int | None = None) -> None:
        data.check_spec(spec)
        if batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {batch_size}")
        self.data = data
        self.spec = spec
        self.batch_size = batch_size
        self.input_name = input_name
        self.start = max(0, start)
        self.stop = len(data) if stop is None else min(stop, len(data))
        self._next = self.start

    def __len__(self) -> int:
        return math.ceil(max(0, self.stop - self.start) / self.batch_size)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch of encoder inputs, or None when the range is exhausted."""
        if self._next >= self.stop:
            return None
        start = self._next
        self._next = min(start + self.batch_size, self.stop)
        return {self.input_name: self.data.encoder_inputs(self.spec, start, self._next)}

    def rewind(self) -> None:
        """Start again from the first batch."""
        self._next = self.start


class HeadDataReader:
    """ONNX Runtime ``CalibrationDataReader`` for the head: (reference, distorted) encoder-feature pairs.

    Args:
        features: (N, F) FP32 encoder features of every patch of the set, in the set's order.
        data: the calibration set (for the pairing).
        batch_size: pairs per batch.
        start: first pair to read.
        stop: one past the last pair to read; None reads to the end.
    """

    def __init__(self, features: np.ndarray, data: CalibrationSet, *, batch_size: int = HEAD_CHUNK, start: int = 0,
                 stop: int | None = None) -> None:
        if features.ndim != 2 or features.shape[0] != len(data):
            raise CalibrationError(
                f"head calibration needs one feature row per calibration patch: expected ({len(data)}, F), "
                f"got {features.shape}"
            )
        dis = data.distorted_index
        if dis.size == 0:
            raise CalibrationError("head calibration needs distorted patches, but the set has only references")
        dis = dis[start:stop]
        self.f_ref = np.ascontiguousarray(features[data.ref_index[dis]], dtype=np.float32)
        self.f_dis = np.ascontiguousarray(features[dis], dtype=np.float32)
        self.batch_size = batch_size
        self._next = 0

    def __len__(self) -> int:
        return math.ceil(len(self.f_ref) / self.batch_size)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch of feature pairs, or None when all pairs were given."""
        if self._next >= len(self.f_ref):
            return None
        sl = slice(self._next, self._next + self.batch_size)
        self._next += self.batch_size
        return {"f_ref": self.f_ref[sl], "f_dis": self.f_dis[sl]}

    def rewind(self) -> None:
        """Start again from the first batch."""
        self._next = 0


def encoder_chunks(data: CalibrationSet, spec: ModelSpec, chunk: int) -> list[EncoderDataReader]:
    """The encoder's calibration data as readers of ``chunk`` patches, one batch each (one calibrator pass each:
    the passes are small because the calibrator holds every intermediate tensor of a pass)."""
    if chunk < 1:
        raise UsageError(f"chunk must be at least 1, got {chunk}")
    starts = range(0, len(data), chunk)
    return [EncoderDataReader(data, spec, batch_size=chunk, start=s, stop=s + chunk) for s in starts]


def head_chunks(features: np.ndarray, data: CalibrationSet, chunk: int = HEAD_CHUNK) -> list[HeadDataReader]:
    """The head's calibration data, the (reference, distorted) feature pairs of ``data``, as readers of ``chunk``
    pairs, one batch each."""
    starts = range(0, int(data.distorted_index.size), chunk)
    return [HeadDataReader(features, data, batch_size=chunk, start=s, stop=s + chunk) for s in starts]


class TrtCalibrationBatches:
    """Re-iterable encoder batches ``{"patches": array}`` for TensorRT 10's legacy calibrator, as the encoder graph
    takes them (``(B, 3, s, s)`` float32 or ``(B, s, s, 3)`` uint8 pixels: ``spec.encoder_input``).

    Satisfies :class:`sgjnd.export.trt.CalibrationBatches`: every ``iter()`` starts from the first batch (a
    generator could not be rewound), all batches have the same size (the last short batch is dropped, since an
    implicit-quantisation calibrator binds fixed-size buffers), and the data hash keys the calibration cache.

    Args:
        data: the calibration set.
        spec: the model spec that gives the normalisation.
        batch_size: patches per batch.
    """

    def __init__(self, data: CalibrationSet, spec: ModelSpec, *, batch_size: int = 8) -> None:
        data.check_spec(spec)
        if not 1 <= batch_size <= len(data):
            raise CalibrationError(
                f"batch_size must be between 1 and the set's {len(data)} patches, got {batch_size}"
            )
        self.data = data
        self.spec = spec
        self.batch_size = batch_size

    @property
    def num_batches(self) -> int:
        """Number of full batches one pass yields."""
        return len(self.data) // self.batch_size

    def __len__(self) -> int:
        return self.num_batches

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Shape of every batch."""
        (patches,) = self.spec.encoder_graph().inputs
        n, a, b, c = batch_shape(patches, self.batch_size)
        return (n, a, b, c)

    @property
    def fingerprint(self) -> str:
        """Stable hash of the batches (what ``sgjnd.export.trt_legacy`` keys its calibration cache with)."""
        return self.sha256()

    def sha256(self) -> str:
        """Hash of the calibration data and the normalisation (for the legacy cache key)."""
        norm = json.dumps({"mean": self.spec.mean, "std": self.spec.std, "order": self.spec.channel_order,
                           "batch": self.batch_size, "input": self.spec.encoder_input})
        return sha256_bytes(f"{self.data.sha256()}|{norm}".encode())

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for b in range(self.num_batches):
            start = b * self.batch_size
            yield {"patches": self.data.encoder_inputs(self.spec, start, start + self.batch_size)}
