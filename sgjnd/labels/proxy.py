"""Proxy JND labels: the JPEG quality below which an oracle metric finds the compression visible.

**These are proxy labels, not human data.** For each image (and each patch of the runtime's patch grid), the JND
is the highest candidate QF at which the oracle says the JPEG round trip is visible, with the runtime's own JPEG
codec and settings (:class:`sgjnd.runtime.jpeg.JpegCodec`, 4:2:0 by default), so a model trained on them learns
the distortions it will be asked about. Convention as in :mod:`sgjnd.data.labels`: QF ≤ JND visible, QF > JND not;
0 means even the lowest candidate is invisible.

Search per target: the oracle is evaluated at every ``coarse_step``-th candidate (and the highest), then at every
candidate between the highest visible coarse QF and the next coarse QF. This is exact when the oracle's score is
monotone in QF (JPEG's nearly is); ``coarse_step=1`` evaluates every QF. One JPEG round trip per QF serves the image
and all its patches.

Cache and resume: oracle scores (not decisions) are cached per image in one JSON file, keyed by the decoded
pixels, the oracle and its settings, the JPEG settings and the patch grid, and written after each search stage. A
rerun (after an interruption, or with another threshold) only evaluates QFs not in the cache.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import sgjnd
from sgjnd.data.datasets import PROXY_COLUMNS
from sgjnd.data.labels import QF_AXIS
from sgjnd.errors import SgjndError, UsageError
from sgjnd.fileio import check_output_file, write_atomic
from sgjnd.labels.oracle import Oracle, get_oracle
from sgjnd.progress import Progress
from sgjnd.runtime.decode import DEFAULT_MAX_PIXELS, decode_image
from sgjnd.runtime.jpeg import JpegCodec, encoder_info
from sgjnd.runtime.patches import PatchGrid, extract_patches, patch_grid
from sgjnd.spec import JpegSettings

CACHE_FORMAT = 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pnm", ".tif", ".tiff", ".webp")
GROUP_SEPARATOR = "__"
"""``photo__crop1.png`` belongs to split group ``photo``: crops of one photo never straddle train and validation."""


@dataclass(frozen=True)
class ProxyConfig:
    """How proxy labels are made.

    Attributes:
        oracle: ``butteraugli`` or ``ssimulacra2``.
        threshold: the oracle's visibility threshold; None uses the oracle's calibrated default.
        qfs: candidate QFs, ascending.
        coarse_step: stride of the coarse pass over ``qfs`` (1: every QF).
        patch_size: side of the patches labelled individually (the model's patch size).
        max_patches: patches per image, spread evenly over the grid as the runtime does; 0 labels images only.
        stride: patch grid stride; None means the patch size.
        jpeg: JPEG settings of the distorted images (must equal the model spec's).
        max_pixels: larger images are refused.
    """

    oracle: str = "butteraugli"
    threshold: float | None = None
    qfs: tuple[int, ...] = QF_AXIS
    coarse_step: int = 4
    patch_size: int = 224
    max_patches: int = 8
    stride: int | None = None
    jpeg: JpegSettings = field(default_factory=JpegSettings)
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if not self.qfs or list(self.qfs) != sorted(set(self.qfs)) or not 1 <= self.qfs[0] <= self.qfs[-1] <= 100:
            raise UsageError(f"candidate QFs must be distinct, ascending and within 1..100, got {self.qfs[:5]}…")
        if self.coarse_step < 1:
            raise UsageError(f"coarse step must be >= 1, got {self.coarse_step}")
        if self.max_patches < 0 or self.patch_size < 16:
            raise UsageError(f"need max_patches >= 0 and patch_size >= 16, got {self.max_patches}, {self.patch_size}")


@dataclass(frozen=True)
class PatchProxy:
    """One patch's proxy label: top-left corner, JND QF, oracle scores at the QFs the search visited."""

    y: int
    x: int
    jnd_qf: int
    scores: dict[int, float]


@dataclass(frozen=True)
class ImageProxy:
    """One image's proxy labels.

    Attributes:
        name: file stem (unique in one run).
        group: split group (the stem before ``__``).
        path: the image file.
        width: width in pixels after EXIF orientation.
        height: height.
        jnd_qf: highest candidate QF still visible to the oracle (``qfs[0] - 1`` when none is).
        scores: oracle scores at the QFs the image-level search visited.
        patches: per-patch labels (empty for images smaller than a patch or with ``max_patches=0``).
        evaluated: oracle evaluations this run made (0 when everything came from the cache).
    """

    name: str
    group: str
    path: Path
    width: int
    height: int
    jnd_qf: int
    scores: dict[int, float]
    patches: tuple[PatchProxy, ...] = ()
    evaluated: int = 0


@dataclass(frozen=True)
class Failure:
    """An image that could not be labelled, and why."""

    path: Path
    error: str


def coarse_qfs(qfs: Sequence[int], step: int) -> list[int]:
    """Every ``step``-th candidate from the first, plus the last."""
    out = list(qfs[::step])
    if out[-1] != qfs[-1]:
        out.append(qfs[-1])
    return out


def refine_qfs(qfs: Sequence[int], coarse: Sequence[int], visible: Callable[[int], bool]) -> list[int]:
    """Candidates between the highest visible coarse QF and the next coarse QF (exclusive); [] if none needed."""
    seen = [q for q in coarse if visible(q)]
    if not seen:
        return [q for q in qfs if q < coarse[0]]
    top = max(seen)
    later = [q for q in coarse if q > top]
    if not later:
        return []
    return [q for q in qfs if top < q < later[0]]


def jnd_of(visited: Iterable[int], visible: Callable[[int], bool], first_qf: int) -> int:
    """Highest visited QF judged visible, or ``first_qf - 1``."""
    shown = [q for q in visited if visible(q)]
    return max(shown) if shown else first_qf - 1


def group_of(name: str) -> str:
    """The split group of an image named ``name`` (its stem before ``__``)."""
    return name.split(GROUP_SEPARATOR, 1)[0] or name


def expand_inputs(inputs: Sequence[Path]) -> list[Path]:
    """Files as given and the image files directly inside given folders, sorted by name.

    Raises:
        UsageError: an input does not exist, a folder holds no image, or two images share a file stem.
    """
    files: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise UsageError(f"{item} holds no image files: expected {', '.join(IMAGE_SUFFIXES)}")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise UsageError(f"{item} does not exist: expected an image file or a folder of images")
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems and stems[path.stem] != path:
            raise UsageError(f"two images share the name {path.stem!r} ({stems[path.stem]} and {path}): labels are "
                             "keyed by file stem; rename one")
        stems[path.stem] = path
    return list(dict.fromkeys(files))


# -- one image ------------------------------------------------------------------------------------------------


class _Cache:
    """Oracle scores of one image: target -1 is the whole image, 0..N-1 the patches."""

    def __init__(self, folder: Path | None, key: str, n_patches: int) -> None:
        self.path = folder / f"{key}.json" if folder is not None else None
        self.scores: dict[int, dict[int, float]] = {t: {} for t in range(-1, n_patches)}
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                if data.get("format") == CACHE_FORMAT and data.get("key") == key:
                    for t, curve in data["scores"].items():
                        if int(t) in self.scores:
                            self.scores[int(t)] = {int(q): float(s) for q, s in curve.items()}
            except (OSError, ValueError, KeyError, AttributeError):
                pass  # a damaged cache file is recomputed, never trusted
        self.key = key

    def save(self) -> None:
        if self.path is None:
            return
        data = {"format": CACHE_FORMAT, "key": self.key,
                "scores": {str(t): {str(q): s for q, s in sorted(c.items())} for t, c in self.scores.items()}}
        write_atomic(self.path, json.dumps(data, sort_keys=True).encode())


def _cache_key(bgr: np.ndarray, grid: PatchGrid | None, oracle: Oracle, config: ProxyConfig) -> str:
    digest = hashlib.sha256()
    digest.update(repr(bgr.shape).encode())
    digest.update(np.ascontiguousarray(bgr).tobytes())
    coords = [] if grid is None else grid.coords.tolist()
    parts = {"oracle": oracle.version(), "jpeg": dataclasses.asdict(config.jpeg), "patch": config.patch_size,
             "coords": coords}
    digest.update(json.dumps(parts, sort_keys=True).encode())
    return digest.hexdigest()[:32]


def label_image(path: Path, config: ProxyConfig, oracle: Oracle, *, cache_dir: Path | None = None,
                only_qfs: Sequence[int] | None = None) -> ImageProxy:
    """Proxy labels of one image (see the module docstring for the search).

    Args:
        path: the image file.
        config: labelling settings.
        oracle: the oracle (its threshold comes from ``config``).
        cache_dir: folder of the score cache; None disables it.
        only_qfs: evaluate the image (no patches) at exactly these QFs and skip the search; the result's
            ``jnd_qf`` then comes from them alone (used by calibration).

    Raises:
        ImageError: the image cannot be decoded; OracleError: the oracle failed.
    """
    threshold = oracle.default_threshold if config.threshold is None else float(config.threshold)
    decoded = decode_image(path, max_pixels=config.max_pixels)
    bgr = decoded.bgr
    height, width = bgr.shape[:2]
    s = config.patch_size
    grid = None
    if config.max_patches and only_qfs is None and min(height, width) >= s:
        grid = patch_grid(height, width, s, stride=config.stride, max_patches=config.max_patches)
    ref_patches = extract_patches(bgr, grid) if grid is not None else None
    n = 0 if grid is None else len(grid)
    cache = _Cache(cache_dir, _cache_key(bgr, grid, oracle, config), n)
    codec = JpegCodec(config.jpeg)
    evaluated = 0

    def evaluate(qf: int, targets: Iterable[int]) -> None:
        nonlocal evaluated
        need = [t for t in targets if qf not in cache.scores[t]]
        if not need:
            return
        dis = codec.roundtrip(bgr, qf)
        for t in need:
            if t < 0:
                cache.scores[t][qf] = oracle.score(bgr, dis)
            elif grid is not None and ref_patches is not None:  # patch targets exist only with a grid
                y, x = grid.coords[t].tolist()
                cache.scores[t][qf] = oracle.score(ref_patches[t], dis[y:y + s, x:x + s])
            evaluated += 1

    targets = list(range(-1, n))
    if only_qfs is not None:
        for qf in only_qfs:
            evaluate(qf, [-1])
        cache.save()
        curve = {q: cache.scores[-1][q] for q in only_qfs}
        jnd = jnd_of(only_qfs, lambda q: oracle.visible(curve[q], threshold), config.qfs[0])
        return ImageProxy(path.stem, group_of(path.stem), path, width, height, jnd, curve, (), evaluated)

    coarse = coarse_qfs(config.qfs, config.coarse_step)
    for qf in coarse:
        evaluate(qf, targets)
    cache.save()  # resume point: the coarse pass is the bulk of the work
    def visible_in(t: int) -> Callable[[int], bool]:
        return lambda q: oracle.visible(cache.scores[t][q], threshold)

    fine = {t: refine_qfs(config.qfs, coarse, visible_in(t)) for t in targets}
    for qf in sorted({q for qs in fine.values() for q in qs}):
        evaluate(qf, [t for t in targets if qf in fine[t]])
    cache.save()

    def result(t: int) -> tuple[int, dict[int, float]]:
        visited = sorted(set(coarse) | set(fine[t]))
        curve = {q: cache.scores[t][q] for q in visited}
        return jnd_of(visited, lambda q: oracle.visible(curve[q], threshold), config.qfs[0]), curve

    jnd, curve = result(-1)
    patches = []
    if grid is not None:
        for t, (y, x) in enumerate(grid.coords.tolist()):
            pj, pc = result(t)
            patches.append(PatchProxy(int(y), int(x), pj, pc))
    return ImageProxy(path.stem, group_of(path.stem), path, width, height, jnd, curve, tuple(patches), evaluated)


# -- many images ----------------------------------------------------------------------------------------------


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core: no nested thread pools


def _label_one(args: tuple[Path, ProxyConfig, Oracle, Path | None, tuple[int, ...] | None]) -> ImageProxy | Failure:
    path, config, oracle, cache_dir, only = args
    try:
        return label_image(path, config, oracle, cache_dir=cache_dir, only_qfs=only)
    except SgjndError as exc:
        return Failure(path, str(exc))


def label_images(
    paths: Sequence[Path],
    config: ProxyConfig,
    *,
    cache_dir: Path | None = None,
    jobs: int = 1,
    progress: bool = True,
    only_qfs: Sequence[int] | None = None,
) -> tuple[list[ImageProxy], list[Failure]]:
    """Label many images, ``jobs`` at a time (processes), with progress on stderr.

    Returns:
        ``(labels, failures)``, labels in the order of ``paths``.

    Raises:
        UsageError: bad settings; OracleUnavailable: the oracle is not installed.
    """
    if jobs < 1:
        raise UsageError(f"jobs must be >= 1, got {jobs}")
    oracle = get_oracle(config.oracle)
    only = tuple(only_qfs) if only_qfs is not None else None
    tasks = [(Path(p), config, oracle, cache_dir, only) for p in paths]
    bar = Progress(len(tasks), "label", enabled=progress)
    results: dict[Path, ImageProxy | Failure] = {}

    def done(item: ImageProxy | Failure) -> None:
        results[item.path] = item
        bar.step(f"{item.path.name}: " + ("failed" if isinstance(item, Failure) else f"JND {item.jnd_qf}"))

    if jobs == 1 or len(tasks) == 1:
        for task in tasks:
            done(_label_one(task))
    else:
        workers = min(jobs, len(tasks))
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, initializer=_worker_init) as pool:
            futures = [pool.submit(_label_one, task) for task in tasks]
            for future in concurrent.futures.as_completed(futures):
                done(future.result())
    ordered = [results[Path(p)] for p in paths]
    return [r for r in ordered if isinstance(r, ImageProxy)], [r for r in ordered if isinstance(r, Failure)]


def statement(config: ProxyConfig) -> str:
    """The plain statement every proxy-label output carries."""
    oracle = get_oracle(config.oracle)
    threshold = oracle.default_threshold if config.threshold is None else config.threshold
    return (f"PROXY LABELS from the {oracle.name} oracle ({oracle.rule(threshold)}), NOT human data; JPEG "
            f"{config.jpeg.encoder} {config.jpeg.subsampling}")


def is_labels_csv(path: Path) -> bool:
    """True when ``path`` is a labels CSV written by :func:`write_labels` (its first line names `sgjnd label`)."""
    with open(path, "rb") as fh:
        first = fh.readline(4096)
    return first.startswith(b"# ") and b"`sgjnd label`" in first


def write_labels(out: Path, labels: Sequence[ImageProxy], config: ProxyConfig) -> Path:
    """Write the labels CSV (image rows, then their patch rows) and its ``.json`` sidecar, atomically.

    Image paths are written relative to the CSV's folder when they lie under it, else absolute.

    Returns:
        The sidecar's path.
    """
    out = Path(out)
    oracle = get_oracle(config.oracle)
    threshold = oracle.default_threshold if config.threshold is None else float(config.threshold)
    base = out.parent.resolve()
    lines = [f"# {statement(config)}; made by sgjnd {sgjnd.__version__} `sgjnd label`",
             ",".join(PROXY_COLUMNS)]

    def row(*values: object) -> str:
        return ",".join("" if v is None else str(v) for v in values)

    for item in labels:
        resolved = item.path.resolve()
        shown = os.path.relpath(resolved, base) if resolved.is_relative_to(base) else str(resolved)
        if "," in shown or '"' in shown:
            raise UsageError(f"image path {shown!r} contains a comma or quote; rename it before labelling")
        lines.append(row("image", item.name, item.group, shown, item.width, item.height, None, None, None,
                         oracle.name, f"{threshold:g}", item.jnd_qf, len(item.scores)))
        for p in item.patches:
            lines.append(row("patch", item.name, item.group, shown, item.width, item.height, p.y, p.x,
                             config.patch_size, oracle.name, f"{threshold:g}", p.jnd_qf, len(p.scores)))
    check_output_file(out, what="labels CSV", ours=is_labels_csv)
    write_atomic(out, ("\n".join(lines) + "\n").encode())
    meta: dict[str, Any] = {
        "proxy": True,
        "statement": statement(config),
        "oracle": oracle.name,
        "oracle_version": oracle.version(),
        "threshold": threshold,
        "rule": oracle.rule(threshold),
        "config": {**dataclasses.asdict(config), "qfs": [config.qfs[0], config.qfs[-1], len(config.qfs)]},
        "jpeg": dataclasses.asdict(config.jpeg),
        "encoder": encoder_info(config.jpeg),
        "sgjnd": sgjnd.__version__,
        "images": {item.name: {"jnd_qf": item.jnd_qf, "scores": {str(q): round(s, 6) for q, s in item.scores.items()}}
                   for item in labels},
    }
    side = out.with_name(out.name + ".json")
    write_atomic(side, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    return side


# -- calibration ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """A threshold that puts the images' proxy JNDs around ``target_qf``.

    Attributes:
        target_qf: the QF the median proxy JND should fall on.
        per_image: image name -> (score at target, score at target + 1, midpoint).
        threshold: the median of the midpoints.
    """

    target_qf: int
    per_image: dict[str, tuple[float, float, float]]
    threshold: float


def calibrate(paths: Sequence[Path], config: ProxyConfig, target_qf: int, *, cache_dir: Path | None = None,
              jobs: int = 1, progress: bool = True) -> tuple[Calibration, list[Failure]]:
    """Per image, the threshold between its scores at ``target_qf`` and ``target_qf + 1``; their median.

    With that threshold and monotone scores, about half the images get a proxy JND at or below ``target_qf``.

    Raises:
        UsageError: ``target_qf`` outside 1..99 or no image could be scored.
    """
    if not 1 <= target_qf <= 99:
        raise UsageError(f"the calibration target must be a QF in 1..99, got {target_qf}")
    labels, failures = label_images(paths, config, cache_dir=cache_dir, jobs=jobs, progress=progress,
                                    only_qfs=(target_qf, target_qf + 1))
    if not labels:
        raise UsageError("no image could be scored for calibration")
    per = {}
    for item in labels:
        a, b = item.scores[target_qf], item.scores[target_qf + 1]
        per[item.name] = (a, b, (a + b) / 2)
    threshold = float(np.median([m for _, _, m in per.values()]))
    return Calibration(target_qf, per, threshold), failures
