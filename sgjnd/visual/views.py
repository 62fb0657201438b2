"""What the visual report shows of one image: the data of a view, with its pictures inline as ``data:`` URLs.

A view is plain JSON (see ``assets/jnd_view.js`` for its fields): the S(QF) curve of one or more targets, the patch
grid with q and w, an overview of the photo (downscaled to at most ``overview_max`` pixels on its long side, as a
JPEG at quality 90: it only places the patches), and the **most-weighted patch at its own resolution** in the
original, at the recommended quality and a few QFs below the JND, as lossless PNGs of the decoded pixels: that is
where artefacts are judged, so nothing there is resampled or re-encoded. Bytes and PSNR are those of the full image.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from sgjnd.runtime.jpeg import JpegCodec, psnr
from sgjnd.runtime.predictor import JNDResult

OVERVIEW_MAX = 960
"""Longest side of the overview picture, in pixels."""

BELOW_STEPS = 5
"""How many QFs below the JND the "visible" version is made at."""


@dataclass(frozen=True)
class ViewSettings:
    """How views are made.

    Attributes:
        patch_size: the model's patch size (the grid's cell size).
        threshold: S at which a QF counts as invisible (the search's threshold).
        below_steps: the lower version is made at ``jnd_qf - below_steps`` (at least QF 1).
        overview_max: longest side of the overview picture.
    """

    patch_size: int
    threshold: float = 0.5
    below_steps: int = BELOW_STEPS
    overview_max: int = OVERVIEW_MAX


def data_url(image_bgr: np.ndarray, fmt: str = ".png", quality: int = 90) -> str:
    """An image as a ``data:`` URL (PNG lossless, or JPEG at ``quality`` for ``fmt=".jpg"``)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 6]
    ok, buffer = cv2.imencode(fmt, image_bgr, params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image_bgr.shape} image as {fmt}")
    mime = "image/jpeg" if fmt == ".jpg" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buffer.tobytes()).decode('ascii')}"


def focus_patch(result: JNDResult) -> tuple[int, int] | None:
    """The top-left corner (x, y) of the patch with the largest finite weight, or None without one."""
    weighted = [p for p in result.patches if math.isfinite(p.w)]
    if not weighted:
        return None
    best = max(weighted, key=lambda p: p.w)
    return best.x, best.y


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _crop(image: np.ndarray, x: int, y: int, size: int) -> np.ndarray:
    return np.ascontiguousarray(image[y:y + size, x:x + size])


def image_view(
    result: JNDResult,
    bgr: np.ndarray,
    codec: JpegCodec,
    settings: ViewSettings,
    *,
    source_bytes: int | None = None,
    series: Sequence[tuple[str, JNDResult]] = (),
) -> dict[str, Any]:
    """The view of one prediction.

    Args:
        result: the prediction (of the first series, or the only one).
        bgr: the decoded image the prediction was made on (after EXIF orientation).
        codec: the model's JPEG codec (the encoder settings the prediction used).
        settings: patch size, threshold and picture sizes.
        source_bytes: the input file's size, shown for the original.
        series: (label, result) of every target for the curve; empty: ``result`` alone, labelled by its backend.

    Returns:
        JSON-ready view data (``assets/jnd_view.js``).
    """
    height, width = bgr.shape[:2]
    s = settings.patch_size
    scale = min(1.0, settings.overview_max / max(height, width))
    overview = bgr if scale >= 1.0 else cv2.resize(
        bgr, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
    )
    focus = focus_patch(result)
    fx, fy = focus if focus is not None else (0, 0)
    fx, fy = min(fx, max(width - 1, 0)), min(fy, max(height - 1, 0))
    size = min(s, width - fx, height - fy)

    def version(label: str, qf: int | None, pixels: np.ndarray, nbytes: int | None,
                psnr_db: float | None) -> dict[str, Any]:
        crop = _crop(pixels, fx, fy, size)
        return {
            "label": label,
            "qf": qf,
            "bytes": nbytes,
            "psnr_db": _finite(psnr_db) if psnr_db is not None else None,
            "zoom": {"src": data_url(crop), "x": 0, "y": 0, "width": int(crop.shape[1]), "height": int(crop.shape[0])},
        }

    def encoded(label: str, qf: int) -> dict[str, Any]:
        data = codec.encode(bgr, qf)
        decoded = codec.decode(data)
        return version(label, qf, decoded, len(data), psnr(bgr, decoded))

    versions = [version("original", None, bgr, source_bytes, None)]
    if result.recommended_qf is not None:
        versions.append(encoded("recommended", result.recommended_qf))
    if result.jnd_qf is not None and result.jnd_qf > 1:
        versions.append(encoded("below the JND", max(1, result.jnd_qf - settings.below_steps)))
    curves = series or [(result.backend, result)]
    return {
        "title": result.source,
        "width": int(width),
        "height": int(height),
        "patch_size": int(s),
        "threshold": settings.threshold,
        "jnd_qf": result.jnd_qf,
        "recommended_qf": result.recommended_qf,
        "series": [
            {"label": label, "scores": {str(q): _finite(v) for q, v in sorted(r.scores.items())},
             "jnd_qf": r.jnd_qf, "recommended_qf": r.recommended_qf}
            for label, r in curves
        ],
        "patches": [{"x": p.x, "y": p.y, "q": _finite(p.q), "w": _finite(p.w)} for p in result.patches],
        "overview": {"src": data_url(overview, ".jpg", 90), "width": int(overview.shape[1]),
                     "height": int(overview.shape[0])},
        "versions": versions,
        "focus": {"x": int(fx), "y": int(fy), "size": int(size)} if focus is not None else None,
        "notes": list(result.notes),
    }
