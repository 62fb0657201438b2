"""Readers of the JND datasets: MCL-JCI, KonJND-1k and proxy labels written by ``sgjnd label``.

Each reader checks the whole tree before returning and raises :class:`DatasetError` naming the first file that does
not fit and what was expected there. The layouts (method notes §4; the official archives may need renaming into
them, which the docs of each reader spell out):

**MCL-JCI** (``read_mcl_jci``)::

    ROOT/distorted_image/ImageJND_SRC01/ImageJND_SRC01_001.jpg … _100.jpg     one folder per source, QF = QQQ
    ROOT/reference/ImageJND_SRC01.png (or .bmp/.ppm/.tif)                       optional pristine sources
    ROOT/jnd.csv   columns source,subject,jnd1[,jnd2,jnd3]                      per-subject JND QFs, or
    ROOT/sur.csv   columns source,qf,first_SUR[,second_SUR,third_SUR]           SUR curves (SUR-FeatNet style)

Without ``reference/`` the QF-100 file is the reference (VP-JND's choice; notes A3) and the dataset says so.

**KonJND-1k** (``read_konjnd``)::

    ROOT/images/<name>.png                        pristine reference (``images/`` may be omitted: files in ROOT)
    ROOT/images/<name>_001.jpg … <name>_100.jpg    JPEG-coded versions, file index = QF
    ROOT/pjnd.csv  columns image,qf | image,slider [,subject,codec]

``qf`` is the subject's PJND as the highest QF still seen as distorted; ``slider`` is the study GUI's slider value
v, converted with QF = 101 - v (the GUI shows file index 101 - v; unverified for the released CSVs, notes §4.2).
Rows whose ``codec`` is not ``jpeg`` (the BPG half) are skipped and counted in the notes.

**Proxy labels** (``read_proxy_labels``): the CSV of ``sgjnd label``; distorted images are made on the fly with the
runtime's JPEG codec, the one the labels were computed with.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from sgjnd.data.labels import LabelConfig, binary_target, dense_sur, jnd_from_samples, jnd_from_sur, sur_from_samples
from sgjnd.errors import UsageError
from sgjnd.spec import JpegSettings

DatasetKind = Literal["mcl-jci", "konjnd-1k", "proxy"]
KINDS: tuple[DatasetKind, ...] = ("mcl-jci", "konjnd-1k", "proxy")

REFERENCE_SUFFIXES = (".png", ".bmp", ".ppm", ".tif", ".tiff")
_MCL_DIR = re.compile(r"^ImageJND_SRC(\d+)$")
_MCL_FILE = re.compile(r"^ImageJND_SRC(\d+)_(\d{3})\.jpg$", re.IGNORECASE)
_KON_DIS = re.compile(r"^(?P<name>.+)_(?P<qf>\d{3})\.(?P<ext>jpe?g|bpg)$", re.IGNORECASE)

PROXY_COLUMNS = (
    "kind", "image", "group", "path", "width", "height", "y", "x", "size", "oracle", "threshold", "jnd_qf", "evaluated",
)
"""Columns of a proxy-label CSV (``kind`` is ``image`` or ``patch``; y, x, size are empty for image rows)."""
PROXY_MARK = "# PROXY LABELS"
"""Start of the first line of every proxy-label CSV."""


class DatasetError(UsageError):
    """A dataset tree or label file does not have the expected layout."""


@dataclass(frozen=True)
class PatchLabel:
    """A proxy JND for one patch of a source: its top-left corner, side and JND QF."""

    y: int
    x: int
    size: int
    jnd: float


@dataclass(frozen=True)
class Source:
    """One source image with its coded versions and labels.

    Attributes:
        name: the source's id, unique in its dataset.
        group: the split key: sources of one group (crops of one photo, one MCL-JCI source) stay together.
        reference: the pristine image (or the dataset's stand-in, see the dataset notes).
        distorted: QF -> coded image file; empty when distorted images are made with the runtime's codec.
        samples: per-subject JND QFs (human datasets with samples).
        sur: QF -> SUR (datasets that give curves).
        jnd: an already aggregated JND (proxy labels).
        patches: per-patch proxy JNDs.
    """

    name: str
    group: str
    reference: Path
    distorted: Mapping[int, Path] = field(default_factory=dict)
    samples: tuple[float, ...] = ()
    sur: Mapping[int, float] | None = None
    jnd: float | None = None
    patches: tuple[PatchLabel, ...] = ()

    def jnd_label(self, config: LabelConfig | None = None) -> float:
        """The image's JND QF under ``config`` (proxy labels are already aggregated and ignore it).

        Raises:
            DatasetError: the source has no label.
        """
        if self.jnd is not None:
            return float(self.jnd)
        if self.samples:
            return jnd_from_samples(self.samples, config)
        if self.sur:
            return jnd_from_sur(self.sur, config)
        raise DatasetError(f"source {self.name!r} has no JND label (no samples, SUR curve or proxy JND)")

    def sur_target(self, qf: int, config: LabelConfig | None = None) -> float:
        """The SUR at ``qf`` (regression target); a 0/1 step at the JND when only a JND is known."""
        if self.samples:
            return float(sur_from_samples(self.samples, [qf])[0])
        if self.sur:
            return float(dense_sur(self.sur)[qf - 1])
        return binary_target(qf, self.jnd_label(config))


@dataclass(frozen=True)
class JNDDataset:
    """A JND dataset: its sources, whether the labels are human data, and notes on how it was read.

    Attributes:
        kind: ``mcl-jci``, ``konjnd-1k`` or ``proxy``.
        root: the folder (or label file) it was read from.
        sources: the sources, sorted by name.
        human: True for subjective data, False for proxy labels.
        description: one line on what the labels are (for logs, metrics and model cards).
        jpeg: JPEG settings the distorted images were made with, when known (proxy labels).
        notes: what the reader assumed or skipped, in words.
    """

    kind: DatasetKind
    root: Path
    sources: tuple[Source, ...]
    human: bool
    description: str
    jpeg: JpegSettings | None = None
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def names(self) -> list[str]:
        """Source names in order."""
        return [s.name for s in self.sources]

    @property
    def groups(self) -> list[str]:
        """Each source's split group, in source order."""
        return [s.group for s in self.sources]

    def subset(self, names: Iterable[str]) -> JNDDataset:
        """The dataset restricted to ``names`` (kept in dataset order).

        Raises:
            DatasetError: a name is not a source of this dataset.
        """
        wanted = set(names)
        unknown = sorted(wanted - set(self.names))
        if unknown:
            raise DatasetError(f"unknown source(s) {unknown[:5]} in {self.root}: expected names like {self.names[:3]}")
        return JNDDataset(self.kind, self.root, tuple(s for s in self.sources if s.name in wanted), self.human,
                          self.description, self.jpeg, self.notes)


# -- helpers ----------------------------------------------------------------------------------------------------


def _read_csv(path: Path, required: Sequence[str], alternatives: Sequence[Sequence[str]] = ()) -> list[dict[str, str]]:
    """Rows of a CSV with a header (lines starting with '#' skipped), after checking its columns.

    ``alternatives``: groups of columns of which at least one must be present.
    """
    if not path.is_file():
        raise DatasetError(f"{path} is missing: expected a CSV file with columns {', '.join(required)}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} cannot be read as UTF-8 text ({exc}): expected a CSV file") from exc
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise DatasetError(f"{path} is empty: expected a header row with columns {', '.join(required)}")
    reader = csv.DictReader(lines)
    columns = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in required if c not in columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; expected {', '.join(required)}, got {columns}")
    for group in alternatives:
        if not any(c in columns for c in group):
            raise DatasetError(f"{path}: expected one of the columns {list(group)}, got {columns}")
    rows = []
    for row in reader:
        rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items()})
    if not rows:
        raise DatasetError(f"{path} has a header but no rows")
    return rows


def _number(value: str, path: Path, line: int, column: str, lo: float, hi: float) -> float:
    try:
        out = float(value)
    except ValueError:
        out = float("nan")
    if not np.isfinite(out) or not lo <= out <= hi:
        raise DatasetError(f"{path} line {line}: column {column!r} must be a number in {lo:g}..{hi:g}, got {value!r}")
    return out


def _coded_files(folder: Path, pattern: re.Pattern[str], expected: str) -> list[tuple[re.Match[str], Path]]:
    """Every non-hidden file of ``folder`` matched against ``pattern``; a mismatch is an error naming the file."""
    out = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        match = pattern.match(path.name)
        if match is None or not path.is_file():
            raise DatasetError(f"{path}: unexpected {'file' if path.is_file() else 'entry'}; expected {expected}")
        out.append((match, path))
    return out


def _check_qfs(name: str, qfs: Iterable[int], where: Path, expected: str) -> None:
    missing = sorted(set(range(1, 101)) - set(qfs))
    if missing:
        shown = ", ".join(f"{q:03d}" for q in missing[:8]) + (" …" if len(missing) > 8 else "")
        raise DatasetError(f"{where}: source {name} lacks QF {shown} ({len(missing)} missing); expected {expected} "
                           "for every QF 001..100")


# -- MCL-JCI ----------------------------------------------------------------------------------------------------


def read_mcl_jci(root: Path, *, jnd_index: int = 1) -> JNDDataset:
    """Read an MCL-JCI tree (layout in the module docstring).

    Args:
        root: the dataset folder.
        jnd_index: which JND to label: 1 (first JND, the usual target), 2 or 3.

    Returns:
        The dataset, one source per ``ImageJND_SRCxx`` folder.

    Raises:
        DatasetError: naming the first file or folder that does not fit the layout.
    """
    root = Path(root)
    if jnd_index not in (1, 2, 3):
        raise UsageError(f"jnd_index must be 1, 2 or 3 (first, second or third JND), got {jnd_index}")
    dis_root = root / "distorted_image"
    if not dis_root.is_dir():
        raise DatasetError(f"{root} is not an MCL-JCI tree: expected the folder {dis_root} "
                           "with one ImageJND_SRCxx folder per source")
    distorted: dict[str, dict[int, Path]] = {}
    for folder in sorted(dis_root.iterdir()):
        if folder.name.startswith("."):
            continue
        m = _MCL_DIR.match(folder.name)
        if m is None or not folder.is_dir():
            raise DatasetError(f"{folder}: unexpected entry in distorted_image/; expected folders ImageJND_SRCxx")
        name = folder.name
        files: dict[int, Path] = {}
        expected = f"files {name}_QQQ.jpg (QQQ = QF 001..100)"
        for match, path in _coded_files(folder, _MCL_FILE, expected):
            if f"ImageJND_SRC{match.group(1)}" != name:
                raise DatasetError(f"{path}: belongs to another source than its folder {name}; expected {expected}")
            qf = int(match.group(2))
            if not 1 <= qf <= 100:
                raise DatasetError(f"{path}: QF {qf} is outside 1..100; expected {expected}")
            files[qf] = path
        _check_qfs(name, files, folder, expected)
        distorted[name] = files
    if not distorted:
        raise DatasetError(f"{dis_root} holds no ImageJND_SRCxx folders: expected one per source")

    notes: list[str] = []
    references: dict[str, Path] = {}
    ref_root = root / "reference"
    if ref_root.is_dir():
        for path in sorted(ref_root.iterdir()):
            if path.name.startswith("."):
                continue
            if path.suffix.lower() not in REFERENCE_SUFFIXES or path.stem not in distorted:
                raise DatasetError(f"{path}: unexpected file in reference/; expected ImageJND_SRCxx with one of "
                                   f"{', '.join(REFERENCE_SUFFIXES)} for a source in distorted_image/")
            references[path.stem] = path
        lacking = sorted(set(distorted) - set(references))
        if lacking:
            raise DatasetError(f"{ref_root} lacks the reference of {', '.join(lacking[:5])}: expected "
                               f"{ref_root / (lacking[0] + '.png')} (or .bmp/.ppm/.tif)")
    else:
        references = {name: files[100] for name, files in distorted.items()}
        notes.append("no reference/ folder: the QF-100 files are the references (notes A3)")

    samples: dict[str, list[float]] = defaultdict(list)
    sur_values: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    jnd_csv, sur_csv = root / "jnd.csv", root / "sur.csv"
    if jnd_csv.is_file():
        column = f"jnd{jnd_index}"
        for line, row in enumerate(_read_csv(jnd_csv, ("source", column)), start=2):
            if row["source"] not in distorted:
                raise DatasetError(f"{jnd_csv} line {line}: source {row['source']!r} has no folder in "
                                   f"{dis_root}; expected one of {sorted(distorted)[:3]} …")
            if row[column] != "":  # a subject without a second/third JND
                samples[row["source"]].append(_number(row[column], jnd_csv, line, column, 0, 100))
        label_text = f"per-subject JND{jnd_index} samples from jnd.csv"
    elif sur_csv.is_file():
        column = ("first_SUR", "second_SUR", "third_SUR")[jnd_index - 1]
        for line, row in enumerate(_read_csv(sur_csv, ("source", "qf", column)), start=2):
            if row["source"] not in distorted:
                raise DatasetError(f"{sur_csv} line {line}: source {row['source']!r} has no folder in {dis_root}")
            qf = int(_number(row["qf"], sur_csv, line, "qf", 1, 100))
            # SUR-FeatNet's table repeats each (source, QF) per patch; the curve is per image, so keep the mean.
            sur_values[row["source"]][qf].append(_number(row[column], sur_csv, line, column, 0, 1))
        label_text = f"{column} curves from sur.csv"
    else:
        raise DatasetError(f"{root} has no labels: expected {jnd_csv} (source,subject,jnd1,…) or {sur_csv} "
                           "(source,qf,first_SUR,…)")
    sur = {name: {qf: float(np.mean(v)) for qf, v in curve.items()} for name, curve in sur_values.items()}
    unlabelled = sorted(n for n in distorted if n not in samples and n not in sur)
    if unlabelled:
        raise DatasetError(f"{root}: source(s) {', '.join(unlabelled[:5])} have images but no labels in "
                           f"{jnd_csv.name if jnd_csv.is_file() else sur_csv.name}")
    sources = tuple(
        Source(name=name, group=name, reference=references[name], distorted=distorted[name],
               samples=tuple(samples.get(name, ())), sur=sur.get(name))
        for name in sorted(distorted)
    )
    return JNDDataset("mcl-jci", root, sources, True, f"MCL-JCI (human data): {label_text}", None, tuple(notes))


# -- KonJND-1k --------------------------------------------------------------------------------------------------


def read_konjnd(root: Path) -> JNDDataset:
    """Read a KonJND-1k tree (layout in the module docstring); only the JPEG-coded sources are kept.

    Raises:
        DatasetError: naming the first file that does not fit the layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder: expected a KonJND-1k tree with pjnd.csv")
    folder = root / "images" if (root / "images").is_dir() else root
    references: dict[str, Path] = {}
    distorted: dict[str, dict[int, Path]] = defaultdict(dict)
    bpg: set[str] = set()
    expected = "<name>.png references and <name>_001.jpg … <name>_100.jpg coded versions"
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or (folder == root and path.suffix.lower() in (".csv", ".md", ".txt", ".json")):
            continue
        if not path.is_file():
            if folder == root and path.name == "images":
                continue
            raise DatasetError(f"{path}: unexpected folder; expected only {expected} in {folder}")
        m = _KON_DIS.match(path.name)
        if m is not None:
            if m.group("ext").lower() == "bpg":
                bpg.add(m.group("name"))
                continue
            qf = int(m.group("qf"))
            if not 1 <= qf <= 100:
                raise DatasetError(f"{path}: distortion index {qf} is outside 1..100; expected {expected}")
            distorted[m.group("name")][qf] = path
        elif path.suffix.lower() == ".png":
            references[path.stem] = path
        else:
            raise DatasetError(f"{path}: unexpected file; expected {expected}")
    for name, files in distorted.items():
        if name not in references:
            raise DatasetError(f"{folder}: {name}_xxx.jpg files have no reference; expected {folder / (name + '.png')}")
        _check_qfs(name, files, folder, f"{name}_QQQ.jpg")
    csv_path = root / "pjnd.csv"
    rows = _read_csv(csv_path, ("image",), alternatives=(("qf", "slider"),))
    samples: dict[str, list[float]] = defaultdict(list)
    skipped_codec = 0
    for line, row in enumerate(rows, start=2):
        codec = row.get("codec", "jpeg").lower() or "jpeg"
        if codec not in ("jpeg", "jpg"):
            skipped_codec += 1
            continue
        name = Path(row["image"]).stem
        if name not in distorted:
            what = "only BPG files" if name in bpg else "no JPEG files"
            raise DatasetError(f"{csv_path} line {line}: image {row['image']!r} has {what} in {folder}; expected "
                               f"{folder / (name + '.png')} and {name}_001.jpg … {name}_100.jpg")
        if row.get("qf", "") != "":
            value = _number(row["qf"], csv_path, line, "qf", 0, 100)
        else:
            value = 101.0 - _number(row["slider"], csv_path, line, "slider", 1, 101)
        samples[name].append(value)
    notes = []
    if skipped_codec:
        notes.append(f"{skipped_codec} PJND rows of other codecs (BPG) skipped: JPEG only")
    unlabelled = sorted(set(distorted) - set(samples))
    if unlabelled:
        notes.append(f"{len(unlabelled)} source(s) with images but no PJND samples skipped (e.g. {unlabelled[0]})")
    if not samples:
        raise DatasetError(f"{csv_path} has no JPEG PJND samples for the images in {folder}")
    sources = tuple(
        Source(name=name, group=name, reference=references[name], distorted=dict(distorted[name]),
               samples=tuple(samples[name]))
        for name in sorted(samples)
    )
    return JNDDataset("konjnd-1k", root, sources, True, "KonJND-1k (human data): per-subject JPEG PJND samples",
                      None, tuple(notes))


# -- proxy labels -----------------------------------------------------------------------------------------------


def read_proxy_labels(path: Path) -> JNDDataset:
    """Read the CSV written by ``sgjnd label`` (and its ``.json`` sidecar when present).

    Relative image paths are resolved against the CSV's folder.

    Raises:
        DatasetError: the file is not a proxy-label CSV, a column or value does not fit, or an image is missing.
    """
    path = Path(path)
    rows = _read_csv(path, ("kind", "image", "group", "path", "jnd_qf"))
    first = path.read_text(encoding="utf-8-sig").splitlines()[0]
    if not first.startswith(PROXY_MARK):
        raise DatasetError(f"{path}: expected a proxy-label CSV from `sgjnd label` (first line {PROXY_MARK!r} …), "
                           f"got {first[:60]!r}")
    meta: dict[str, object] = {}
    side = path.with_name(path.name + ".json")
    if side.is_file():
        try:
            meta = json.loads(side.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{side} is not readable JSON ({exc}); regenerate it with `sgjnd label`") from exc
    images: dict[str, dict[str, object]] = {}
    patches: dict[str, list[PatchLabel]] = defaultdict(list)
    for line, row in enumerate(rows, start=3):  # line 1 is the PROXY mark, line 2 the header
        if row["kind"] not in ("image", "patch"):
            raise DatasetError(f"{path} line {line}: kind must be 'image' or 'patch', got {row['kind']!r}")
        jnd = _number(row["jnd_qf"], path, line, "jnd_qf", 0, 100)
        if row["kind"] == "patch":
            y, x, size = (int(_number(row[c], path, line, c, 0, 1e9)) for c in ("y", "x", "size"))
            patches[row["image"]].append(PatchLabel(y, x, size, jnd))
            continue
        image_path = Path(row["path"])
        if not image_path.is_absolute():
            image_path = path.parent / image_path
        if not image_path.is_file():
            raise DatasetError(f"{path} line {line}: image {image_path} does not exist; expected the labelled file "
                               "(move the CSV with its images, or label again)")
        if row["image"] in images:
            raise DatasetError(f"{path} line {line}: image name {row['image']!r} appears twice; names must be unique")
        images[row["image"]] = {"path": image_path, "group": row["group"] or row["image"], "jnd": jnd}
    stray = sorted(set(patches) - set(images))
    if stray:
        raise DatasetError(f"{path}: patch rows for {stray[:3]} have no image row")
    sources = tuple(
        Source(name=name, group=str(info["group"]), reference=Path(str(info["path"])), jnd=float(str(info["jnd"])),
               patches=tuple(patches.get(name, ())))
        for name, info in sorted(images.items())
    )
    jpeg = None
    if isinstance(meta.get("jpeg"), dict):
        try:
            jpeg = JpegSettings(**meta["jpeg"])  # type: ignore[arg-type]
        except TypeError as exc:
            raise DatasetError(f"{side}: 'jpeg' does not describe JPEG settings ({exc})") from exc
    description = first.lstrip("# ").strip()
    return JNDDataset("proxy", path, sources, False, description, jpeg, ())


# -- any ------------------------------------------------------------------------------------------------------


def open_dataset(location: Path, kind: str = "auto", *, jnd_index: int = 1) -> JNDDataset:
    """Read a dataset of any kind; ``auto`` tells them apart by their layout.

    Args:
        location: a dataset folder, or a proxy-label CSV.
        kind: ``auto``, ``mcl-jci``, ``konjnd-1k`` or ``proxy``.
        jnd_index: MCL-JCI's first, second or third JND.

    Raises:
        DatasetError: the location fits no layout, or the layout it fits has a problem.
    """
    location = Path(location)
    if kind == "auto":
        if location.is_file():
            kind = "proxy"
        elif (location / "distorted_image").is_dir():
            kind = "mcl-jci"
        elif (location / "pjnd.csv").is_file():
            kind = "konjnd-1k"
        else:
            raise DatasetError(
                f"{location} is no known dataset: expected a proxy-label CSV from `sgjnd label`, an MCL-JCI folder "
                "with distorted_image/, or a KonJND-1k folder with pjnd.csv"
            )
    if kind == "proxy":
        return read_proxy_labels(location)
    if kind == "mcl-jci":
        return read_mcl_jci(location, jnd_index=jnd_index)
    if kind == "konjnd-1k":
        return read_konjnd(location)
    raise UsageError(f"unknown dataset kind {kind!r}: expected auto, {', '.join(KINDS)}")
