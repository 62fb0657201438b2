"""Error types of sgjnd.

Every error a user can cause is an :class:`SgjndError` subclass whose message says what was expected, what came,
and what to do next. This module imports nothing from the package, so every other module can depend on it.
"""

from __future__ import annotations


class SgjndError(Exception):
    """Base class of every error sgjnd raises on purpose. ``exit_code`` is what the CLI exits with."""

    exit_code: int = 1


class UsageError(SgjndError):
    """An argument or option has a value that cannot work."""

    exit_code = 2


class ImageError(SgjndError):
    """An image cannot be read, or is of a kind the runtime refuses (empty, truncated, unsupported, too large)."""

    exit_code = 3


class PixelLimitError(ImageError):
    """An image has more pixels than the limit (the decompression-bomb guard); the service answers 413."""


class SpecError(SgjndError):
    """A spec sidecar is missing, unreadable, or does not match its artifact or the running environment."""

    exit_code = 4


class CheckpointError(SgjndError):
    """A checkpoint is not a checkpoint, or its keys or shapes do not match the model it claims to be."""

    exit_code = 4


class BackendUnavailable(SgjndError):
    """A backend, execution provider or device is not installed or not present on this machine."""

    exit_code = 5


class BackendError(SgjndError):
    """A backend failed while loading an artifact or running inference."""

    exit_code = 6


class ExportError(SgjndError):
    """Export to ONNX failed, or the exported graph does not match PyTorch within tolerance."""

    exit_code = 7


class CalibrationError(SgjndError):
    """Calibration data could not be read, or quantisation failed."""

    exit_code = 8


class BuildError(SgjndError):
    """A TensorRT engine could not be built."""

    exit_code = 9
