"""The pixel limit, and OpenCV's own decoding limit that follows it (no OpenCV import here).

OpenCV reads ``OPENCV_IO_MAX_IMAGE_PIXELS`` once, when its library loads (``import cv2``), never per decode. So the
variable must be set before anything imports cv2: :mod:`sgjnd.runtime.decode` sets the default, and the CLI raises it
to ``--max-pixels`` before it builds its parser (whose subcommands load OpenCV).
"""

from __future__ import annotations

import os
import sys

DEFAULT_MAX_PIXELS = 100_000_000
"""Largest width × height an image may have unless told otherwise."""

OPENCV_PIXEL_LIMIT_VARIABLE = "OPENCV_IO_MAX_IMAGE_PIXELS"
"""OpenCV's own decoding limit. OpenCV reads it once, when its library loads, not per decode."""


_USER_LIMIT = os.environ.get(OPENCV_PIXEL_LIMIT_VARIABLE)
"""The variable as the user's environment set it (None: not set); a limit the user chose is never changed."""


def bound_opencv(max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Set OpenCV's limit to the largest of ``max_pixels``, the default and any earlier call's, unless the user's
    environment set it or OpenCV is already loaded (then it has read its limit already)."""
    if _USER_LIMIT is not None or "cv2" in sys.modules:
        return
    current = os.environ.get(OPENCV_PIXEL_LIMIT_VARIABLE, "")
    earlier = int(current) if current.isdigit() else 0
    os.environ[OPENCV_PIXEL_LIMIT_VARIABLE] = str(max(int(max_pixels), DEFAULT_MAX_PIXELS, earlier))
