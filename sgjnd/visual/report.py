"""The report of a `sgjnd predict` or `sgjnd compare` run: views collected image by image, one page at the end."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sgjnd.fileio import check_output_dir, check_output_files
from sgjnd.runtime.decode import decode_image
from sgjnd.runtime.jpeg import JpegCodec
from sgjnd.runtime.predictor import JNDResult
from sgjnd.visual.page import GENERATOR, REPORT_NAME, report_html, write_report
from sgjnd.visual.views import ViewSettings, image_view

MAX_VIEWS = 50
"""Images shown in full on one page; the rest appear in the summary table only (a page stays a few tens of MB)."""


def check_report_dir(directory: Path) -> Path:
    """Refuse a report directory that is not a folder, or that holds a ``report.html`` sgjnd did not write (the
    rule of every output folder: :func:`sgjnd.fileio.check_output_dir` and :func:`~sgjnd.fileio.check_output_files`).

    Raises:
        UsageError: naming the path and what to do.
    """
    directory = Path(directory)
    check_output_dir(directory, what="--report directory")
    check_output_files(directory, {REPORT_NAME: _our_page}, what="--report directory")
    return directory


def _our_page(path: Path) -> bool:
    """Whether ``path`` is a report page sgjnd wrote: its head names the generator."""
    with path.open("rb") as handle:
        return GENERATOR.encode() in handle.read(4096)


class RunReport:
    """Collects the views of a run and writes them as one page.

    Args:
        directory: where ``report.html`` goes (checked now, written by :meth:`write`).
        settings: patch size, threshold and picture sizes.
        codec: the model's JPEG codec.
        max_pixels: the decoding limit of the run (images are decoded again for their pictures).
        max_views: images shown in full; the others are listed in the table.
    """

    def __init__(self, directory: Path, settings: ViewSettings, codec: JpegCodec, *, max_pixels: int,
                 max_views: int = MAX_VIEWS) -> None:
        self.directory = check_report_dir(directory)
        self.settings = settings
        self.codec = codec
        self.max_pixels = max_pixels
        self.max_views = max_views
        self.views: list[dict[str, Any]] = []
        self.rows: list[list[Any]] = []
        self.header: list[str] = ["image", "size", "JND QF", "use QF", "PSNR dB", "KiB"]

    def add(self, path: Path, result: JNDResult, series: Sequence[tuple[str, JNDResult]] = ()) -> None:
        """Add one image: a table row, and its view while fewer than ``max_views`` are shown."""
        psnr = round(result.psnr_db, 2) if result.psnr_db is not None and result.psnr_db != float("inf") else None
        kib = round(result.jpeg_bytes / 1024, 1) if result.jpeg_bytes is not None else None
        row: list[Any] = [Path(result.source).name, f"{result.width}x{result.height}", result.jnd_qf,
                          result.recommended_qf, psnr, kib]
        if series:
            row += [r.jnd_qf for _, r in series[1:]]
        self.rows.append(row)
        if len(self.views) >= self.max_views:
            return
        decoded = decode_image(Path(path), max_pixels=self.max_pixels)
        size = Path(path).stat().st_size if Path(path).is_file() else None
        self.views.append(image_view(result, decoded.bgr, self.codec, self.settings, source_bytes=size,
                                     series=series))

    def write(self, title: str, meta: str) -> Path:
        """Write ``report.html`` (atomically) and return its path."""
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        shown = len(self.views)
        more = f"; {len(self.rows) - shown} more in the table only" if len(self.rows) > shown else ""
        page = report_html(self.views, title=title, meta=f"{meta} · {stamp} · {shown} image(s) shown{more}",
                           summary=(self.header, self.rows))
        return write_report(self.directory, page)
