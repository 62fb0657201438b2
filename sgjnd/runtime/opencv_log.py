"""OpenCV's own log lines, beside its decoding limit (:mod:`sgjnd.runtime.pixel_limit`); no OpenCV import at load."""

from __future__ import annotations

import os
import sys

OPENCV_LOG_VARIABLE = "OPENCV_LOG_LEVEL"
"""OpenCV's log level when it loads (``import cv2``); afterwards only ``cv2.utils.logging.setLogLevel`` changes it."""


def quiet_opencv(verbose: int, *, load: bool = False) -> None:
    """Hide OpenCV's own log lines (``[ WARN:0@0.8] ... PNG input buffer is incomplete``) unless ``verbose``.

    They repeat, less clearly, what the one-line error of each refused image says. libjpeg's own warnings
    (``Corrupt JPEG data: ...``) are printed straight to file descriptor 2 and cannot be hidden without silencing
    every thread's stderr; libpng's are avoided at their source (:func:`sgjnd.runtime.container.png_for_decoder`).

    Args:
        verbose: the CLI's ``-v`` count; 0 shows errors only, more shows OpenCV's warnings.
        load: import OpenCV first, so that the level is set on the loaded module rather than left to the
            environment variable (which OpenCV reads once, and which a user's environment may have set).
    """
    if not verbose:
        os.environ.setdefault(OPENCV_LOG_VARIABLE, "ERROR")  # read by cv2 when it is first imported
    if load:
        import cv2  # noqa: F401  # the level is then set on the loaded module below
    if "cv2" in sys.modules:
        cv_logging = sys.modules["cv2"].utils.logging
        cv_logging.setLogLevel(cv_logging.LOG_LEVEL_WARNING if verbose else cv_logging.LOG_LEVEL_ERROR)
