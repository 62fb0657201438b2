"""Content-aware compression: each image as a JPEG at its recommended quality, with its ICC profile and EXIF kept.

Policies:

- **Quality.** The QF is the predictor's recommended QF plus ``margin``, clamped to ``[min_q, max_q]``. When every
  candidate QF is judged visible (no recommendation), ``max_q`` is used. Each choice is noted in the result.
- **Pixels.** The JPEG holds the decoded pixels the predictor saw: EXIF orientation applied, grayscale replicated,
  16-bit rounded, alpha composited over white (see :mod:`sgjnd.runtime.decode`); the model's JPEG settings
  (encoder, chroma subsampling) are used. PSNR is measured against those pixels, for the output and for a
  fixed-quality baseline (QF 90 by default), so the saving is shown at a known cost.
- **Metadata.** EXIF (JPEG APP1, PNG ``eXIf``, WebP ``EXIF``) and the ICC profile (JPEG APP2, PNG ``iCCP``, WebP
  ``ICCP``) are copied into the output as APP1 ``Exif`` and APP2 ``ICC_PROFILE`` segments (split over several APP2
  segments when large); :mod:`sgjnd.runtime.container` reads and writes them. The EXIF orientation tag is set to 1,
  since the pixels are already upright. An ICC profile that does not describe RGB data (a CMYK or gray profile; the
  output is always RGB) is dropped, and so is EXIF above the 64 KiB a JPEG segment holds; both with a note. XMP,
  comments and other segments are not copied, nor is any metadata of TIFF, GIF, BMP or AVIF inputs.
- **Files.** Outputs are written through a temporary file in the output folder and linked into place, which fails
  instead of replacing a file that appeared meanwhile; an existing output is replaced only with ``overwrite``, and
  never when it is one of the inputs (:class:`OutputGuard`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sgjnd.errors import ImageError, UsageError
from sgjnd.fileio import _FILE_MODE, atomic_output
from sgjnd.jobs.inputs import InputItem, is_list_file, read_list
from sgjnd.jobs.results_log import DoneSet
from sgjnd.jobs.runner import Skip
from sgjnd.runtime.container import (
    MAX_JPEG_EXIF_BYTES,
    MAX_JPEG_ICC_BYTES,
    METADATA_FORMATS,
    detect_format,
    exif_with_orientation,
    jpeg_with_app_segments,
    read_embedded_metadata,
    read_exif_orientation,
)
from sgjnd.runtime.decode import decode_image
from sgjnd.runtime.jpeg import psnr
from sgjnd.runtime.predictor import JNDPredictor

# -- configuration and results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompressConfig:
    """How images are compressed.

    Attributes:
        margin: QF steps added to the recommended QF (negative: more aggressive).
        min_q: lowest QF ever written.
        max_q: highest QF ever written; also used when no QF is recommended.
        baseline_q: the fixed quality the sizes and PSNR are compared with.
        keep_metadata: copy EXIF (orientation reset) and the ICC profile.
    """

    margin: int = 0
    min_q: int = 1
    max_q: int = 100
    baseline_q: int = 90
    keep_metadata: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.min_q <= self.max_q <= 100:
            raise UsageError(f"need 1 <= min-q <= max-q <= 100, got min-q {self.min_q} and max-q {self.max_q}")
        if not 1 <= self.baseline_q <= 100:
            raise UsageError(f"the baseline quality must be in 1..100, got {self.baseline_q}")
        if not -99 <= self.margin <= 99:
            raise UsageError(f"the margin must be in -99..99 QF steps, got {self.margin}")


@dataclass(frozen=True)
class CompressResult:
    """One compressed image; ``to_dict`` gives plain JSON types.

    Attributes:
        source: the input.
        output: the JPEG written.
        width: pixels (after EXIF orientation).
        height: pixels.
        jnd_qf: the predicted JND.
        recommended_qf: the predicted first invisible QF; None when every candidate was visible.
        qf: the QF written (recommended + margin, clamped).
        input_bytes: size of the input file.
        output_bytes: size of the output file, metadata included.
        psnr_db: PSNR of the output against the decoded input, in dB.
        baseline_q: the fixed comparison quality.
        baseline_bytes: size of the JPEG at ``baseline_q`` (same metadata, not written).
        baseline_psnr_db: its PSNR.
        metadata: which metadata were copied: ``exif``, ``icc``.
        notes: decoding conversions, QF choices and metadata decisions, in words.
    """

    source: str
    output: str
    width: int
    height: int
    jnd_qf: int | None
    recommended_qf: int | None
    qf: int
    input_bytes: int
    output_bytes: int
    psnr_db: float
    baseline_q: int
    baseline_bytes: int
    baseline_psnr_db: float
    metadata: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def saving(self) -> float:
        """Fraction of the baseline's bytes saved (negative when the output is larger)."""
        return 1.0 - self.output_bytes / self.baseline_bytes

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields (infinite PSNR, for identical pixels, becomes None)."""
        return {
            "source": self.source,
            "output": self.output,
            "width": self.width,
            "height": self.height,
            "jnd_qf": self.jnd_qf,
            "recommended_qf": self.recommended_qf,
            "qf": self.qf,
            "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes,
            "psnr_db": _finite(self.psnr_db),
            "baseline_q": self.baseline_q,
            "baseline_bytes": self.baseline_bytes,
            "baseline_psnr_db": _finite(self.baseline_psnr_db),
            "saving": round(self.saving, 6),
            "metadata": list(self.metadata),
            "notes": list(self.notes),
        }


@dataclass
class CompressTotals:
    """Sums over the images of a run."""

    images: int = 0
    input_bytes: int = 0
    output_bytes: int = 0
    baseline_bytes: int = 0
    psnr_sum: float = 0.0
    baseline_psnr_sum: float = 0.0
    finite_psnr: int = 0

    def add(self, result: CompressResult) -> None:
        """Count one image."""
        self.images += 1
        self.input_bytes += result.input_bytes
        self.output_bytes += result.output_bytes
        self.baseline_bytes += result.baseline_bytes
        if result.psnr_db != float("inf") and result.baseline_psnr_db != float("inf"):
            self.psnr_sum += result.psnr_db
            self.baseline_psnr_sum += result.baseline_psnr_db
            self.finite_psnr += 1

    def to_dict(self) -> dict[str, Any]:
        """Totals and the mean PSNR (over images with finite PSNR)."""
        n = self.finite_psnr
        return {
            "images": self.images,
            "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes,
            "baseline_bytes": self.baseline_bytes,
            "saving": round(1.0 - self.output_bytes / self.baseline_bytes, 6) if self.baseline_bytes else None,
            "mean_psnr_db": round(self.psnr_sum / n, 3) if n else None,
            "mean_baseline_psnr_db": round(self.baseline_psnr_sum / n, 3) if n else None,
        }


def _finite(value: float) -> float | None:
    return None if value != value or value in (float("inf"), float("-inf")) else round(value, 3)


def choose_qf(recommended: int | None, config: CompressConfig) -> tuple[int, str | None]:
    """The QF to write and, when it is not simply the recommendation, why.

    Args:
        recommended: the predictor's recommended QF; None when every candidate was judged visible.
        config: margin and clamp.

    Returns:
        ``(qf, note)``; the note is None when the QF is the recommendation plus the margin, unclamped.
    """
    if recommended is None:
        return config.max_q, f"every candidate QF was judged visible: wrote max-q {config.max_q}"
    wanted = recommended + config.margin
    qf = min(max(wanted, config.min_q), config.max_q)
    if qf != wanted:
        return qf, f"QF {wanted} (recommended {recommended} + margin {config.margin}) clamped to {qf}"
    return qf, None


# -- compressing ---------------------------------------------------------------------------------------------------


def compress_image(
    predictor: JNDPredictor, data: bytes, *, source: str, output: Path, config: CompressConfig | None = None
) -> tuple[bytes, CompressResult]:
    """Compress one image (given as its file's bytes) at its recommended quality; nothing is written.

    Args:
        predictor: the JND predictor (its model's JPEG settings are used for the output).
        data: the input file's bytes.
        source: the input's name, for the result.
        output: where the caller will write the JPEG, for the result.
        config: quality and metadata settings; None uses the defaults.

    Returns:
        The JPEG file's bytes and the result.

    Raises:
        ImageError: the image cannot be decoded or is refused (see :func:`~sgjnd.runtime.decode.decode_image`).
        SgjndError: the prediction failed.
    """
    cfg = config or CompressConfig()
    decoded = decode_image(data, max_pixels=predictor.config.max_pixels)
    prediction = predictor.predict(decoded, source=source)
    notes = list(prediction.notes)
    qf, why = choose_qf(prediction.recommended_qf, cfg)
    if why:
        notes.append(why)
    meta = read_metadata(data) if cfg.keep_metadata else ImageMetadata()
    notes.extend(meta.notes)
    codec = predictor.codec
    encoded = codec.encode(decoded.bgr, qf)
    baseline = codec.encode(decoded.bgr, cfg.baseline_q)
    out = jpeg_with_metadata(encoded, meta)
    result = CompressResult(
        source=source,
        output=str(output),
        width=decoded.width,
        height=decoded.height,
        jnd_qf=prediction.jnd_qf,
        recommended_qf=prediction.recommended_qf,
        qf=qf,
        input_bytes=len(data),
        output_bytes=len(out),
        psnr_db=psnr(decoded.bgr, codec.decode(encoded)),
        baseline_q=cfg.baseline_q,
        baseline_bytes=len(jpeg_with_metadata(baseline, meta)),
        baseline_psnr_db=psnr(decoded.bgr, codec.decode(baseline)),
        metadata=meta.kept,
        notes=tuple(notes),
    )
    return out, result


class CompressJob:
    """The job of ``sgjnd compress`` for :func:`sgjnd.jobs.runner.run_jobs`: plan the output, compress, write.

    Args:
        predictor: the predictor, shared by the worker threads.
        guard: decides each input's output path and refuses unsafe ones.
        config: quality and metadata settings.
    """

    def __init__(self, predictor: JNDPredictor, guard: OutputGuard, config: CompressConfig) -> None:
        self.predictor = predictor
        self.guard = guard
        self.config = config

    def prepare(self, item: InputItem) -> Path:
        """The output path (checked and claimed in input order)."""
        return self.guard.claim(item)

    def process(self, item: InputItem, data: bytes, prepared: Any) -> tuple[dict[str, Any], CompressResult]:
        """Compress one image and write its JPEG."""
        output = Path(prepared)
        out, result = compress_image(self.predictor, data, source=str(item.path), output=output, config=self.config)
        write_output(output, out, overwrite=self.guard.overwrite)
        return result.to_dict(), result


# -- where outputs go ----------------------------------------------------------------------------------------------


def _real(path: Path) -> str:
    return os.path.realpath(path)


def _entry(path: Path) -> str:
    """The directory entry a write to ``path`` replaces: its folder resolved, its name kept."""
    absolute = Path(os.path.abspath(path))
    return os.path.join(os.path.realpath(absolute.parent), absolute.name)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class OutputGuard:
    """Maps inputs to output paths under ``out_dir`` and refuses every write that could destroy an input.

    An input found in a folder argument keeps its path relative to that folder; any other input goes to
    ``out_dir/<stem>.jpg``. Refused for the whole run (UsageError, before anything is read): ``out_dir`` is an
    existing file (an input, say), is an input folder, or holds an input folder or a folder named in a list.
    Refused per input: an output path that is an input's directory entry or its target, that another input of the
    run already claimed, or that exists (unless ``overwrite``; with ``skip_existing`` the input is skipped).
    Inputs inside ``out_dir`` can only come from file arguments and list entries (folder walks skip ``out_dir``),
    which are read here first, so the check covers inputs that come later in the run too.

    Args:
        out_dir: the output folder.
        inputs: the run's arguments (files, folders, ``.txt`` lists).
        overwrite: replace existing outputs.
        skip_existing: skip inputs whose output exists.

    Raises:
        UsageError: one of the run-wide refusals above, or both ``overwrite`` and ``skip_existing``.
    """

    def __init__(
        self, out_dir: Path, inputs: Sequence[Path], *, overwrite: bool = False, skip_existing: bool = False
    ) -> None:
        if overwrite and skip_existing:
            raise UsageError("--overwrite and --skip-existing contradict each other; choose one")
        self.out_dir = Path(out_dir)
        self.overwrite = overwrite
        self.skip_existing = skip_existing
        self._claimed = DoneSet()
        out_real = _real(self.out_dir)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise UsageError(
                f"-o {self.out_dir} is an existing file{' (one of the inputs)' if _is_input(out_real, inputs) else ''}"
                f"; expected an output folder (it is created if missing)"
            )
        self._protected: set[str] = set()
        for arg in inputs:
            entries = read_list(arg) if is_list_file(arg) and arg.is_file() else iter([arg])
            if is_list_file(arg):
                self._protect(arg, out_real)
            for entry in entries:
                self._protect(entry, out_real)

    def _protect(self, path: Path, out_real: str) -> None:
        real = _real(path)
        if path.is_dir():
            if _inside(real, out_real):
                what = "is" if real == out_real else "is inside"
                raise UsageError(
                    f"the input folder {path} {what} the output folder {self.out_dir}: outputs could replace inputs. "
                    f"Choose an output folder outside the inputs (a subfolder of an input folder is fine)"
                )
        elif _inside(real, out_real) or _inside(_entry(path), out_real):
            self._protected.update((real, _entry(path)))

    def output_for(self, item: InputItem) -> Path:
        """Where the JPEG of ``item`` goes (not checked)."""
        if item.root is not None:
            relative = item.path.relative_to(item.root)
            return self.out_dir / relative.with_suffix(".jpg")
        return self.out_dir / (item.path.stem + ".jpg")

    def claim(self, item: InputItem) -> Path:
        """Check and reserve the output of ``item``.

        Raises:
            Skip: the output exists and ``skip_existing`` is set.
            UsageError: the output would replace an input, was claimed by another input, or exists.
        """
        output = self.output_for(item)
        entry = _entry(output)
        inputs = {_entry(item.path), _real(item.path)}
        if {entry, _real(output)} & inputs or {entry, _real(output)} & self._protected:
            raise UsageError(f"{item.path}: its output {output} would replace an input; choose another -o folder")
        if not self._claimed.add(entry, None):
            raise UsageError(
                f"{item.path}: its output {output} is already the output of another input of this run (same name, "
                f"another extension?); rename one of them or compress them separately"
            )
        if os.path.lexists(output):
            if self.skip_existing:
                raise Skip(f"{output} exists")
            if not self.overwrite:
                raise UsageError(
                    f"{item.path}: {output} exists; pass --overwrite to replace it or --skip-existing to keep it"
                )
        return output


def _is_input(real: str, inputs: Sequence[Path]) -> bool:
    return any(_real(p) == real for p in inputs)


def write_output(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Write ``data`` to ``path`` atomically; without ``overwrite``, never replace a file that exists.

    The bytes go to a temporary file in the same folder first, then are hard-linked into place (which fails if the
    name exists) or, with ``overwrite``, renamed over it. Where hard links are not supported the existence check
    and the rename are separate steps.

    Raises:
        UsageError: the output exists (without ``overwrite``) or cannot be written (permissions, disk full).
    """
    try:
        tmp = atomic_output(path)
    except OSError as exc:
        raise UsageError(f"cannot create {path.parent}: {exc.strerror or exc}; check the -o folder") from exc
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)  # the temporary file is 0600; give the output the mode a plain open() would
        if overwrite:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)
        except FileExistsError as exc:
            raise UsageError(f"{path} exists; pass --overwrite to replace it") from exc
        except OSError:  # no hard links here (some network and FAT file systems)
            if os.path.lexists(path):
                raise UsageError(f"{path} exists; pass --overwrite to replace it") from None
            os.replace(tmp, path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}; check free space and permissions") from exc
    finally:
        tmp.unlink(missing_ok=True)


# -- metadata ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageMetadata:
    """Metadata to copy into the output JPEG.

    Attributes:
        exif: the EXIF TIFF structure (from ``II``/``MM``, without JPEG's ``Exif\\0\\0``), orientation set to 1.
        icc: the ICC profile (an RGB one).
        notes: what was dropped or changed, and why.
    """

    exif: bytes | None = None
    icc: bytes | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def kept(self) -> tuple[str, ...]:
        """Names of the metadata present: ``exif``, ``icc``."""
        return tuple(name for name, value in (("exif", self.exif), ("icc", self.icc)) if value)


def read_metadata(data: bytes) -> ImageMetadata:
    """The EXIF and ICC profile of a JPEG, PNG or WebP file, checked for the output (see the module docstring).

    Never raises on damaged metadata: what cannot be read is dropped, with a note.

    Args:
        data: the input file's bytes.

    Returns:
        The metadata to copy; empty for other formats (with a note when the format can carry metadata).
    """
    fmt = detect_format(data)
    if fmt not in METADATA_FORMATS:
        note = f"metadata of {fmt.upper()} files is not copied" if fmt in ("tiff", "avif", "heic") else None
        return ImageMetadata(notes=(note,) if note else ())
    try:
        embedded = read_embedded_metadata(data)
    except ImageError as exc:
        return ImageMetadata(notes=(f"the {fmt.upper()} metadata is damaged and was not copied ({exc})",))
    notes = list(embedded.notes)
    exif = icc = None
    if embedded.exif is not None:
        exif = _checked_exif(embedded.exif, read_exif_orientation(data) or 1, notes)
    if embedded.icc is not None:
        icc = _checked_icc(embedded.icc, notes)
    return ImageMetadata(exif=exif, icc=icc, notes=tuple(notes))


def _checked_exif(exif: bytes, applied: int, notes: list[str]) -> bytes | None:
    """``exif`` with its orientation reset to 1, or None (with a note) when it cannot be copied.

    ``applied`` is the orientation the decoder applied to the pixels (1: none), for the note.
    """
    if exif[:4] not in (b"II*\x00", b"MM\x00*"):
        notes.append("EXIF is not a TIFF structure and was not copied")
        return None
    if len(exif) > MAX_JPEG_EXIF_BYTES:
        notes.append(f"EXIF of {len(exif):,} bytes does not fit in a JPEG segment (64 KiB) and was not copied")
        return None
    try:
        exif, stored = exif_with_orientation(exif, 1)
    except ImageError as exc:
        notes.append(f"EXIF is damaged and was not copied ({exc})")
        return None
    if stored not in (None, 1):
        why = "the pixels are written upright" if stored == applied else "the decoder did not apply it"
        notes.append(f"EXIF orientation {stored} reset to 1: {why}")
    return exif


def _checked_icc(icc: bytes, notes: list[str]) -> bytes | None:
    if len(icc) < 132 or icc[36:40] != b"acsp":
        notes.append("the ICC profile is damaged and was not copied")
        return None
    space = icc[16:20].decode("latin-1").strip()
    if space != "RGB":
        notes.append(f"the ICC profile describes {space or '?'} data, not the RGB output, and was not copied")
        return None
    if len(icc) > MAX_JPEG_ICC_BYTES:
        notes.append(f"the ICC profile of {len(icc):,} bytes is too large for JPEG and was not copied")
        return None
    return icc


def jpeg_with_metadata(jpeg: bytes, meta: ImageMetadata) -> bytes:
    """Insert EXIF (APP1) and ICC (APP2) segments into a JPEG made by our encoder (which writes neither).

    They go right after the JFIF APP0 segment when there is one, else right after SOI (see
    :func:`~sgjnd.runtime.container.jpeg_with_app_segments`).

    Args:
        jpeg: a JPEG file's bytes.
        meta: what to insert.

    Returns:
        The JPEG with the segments; ``jpeg`` itself when there is nothing to insert.

    Raises:
        UsageError: ``jpeg`` does not start with SOI, or the metadata is too large for JPEG.
    """
    return jpeg_with_app_segments(jpeg, exif=meta.exif, icc=meta.icc)
