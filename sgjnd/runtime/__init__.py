"""The runtime's public face, for services that embed it (README, "Embedding the runtime").

    from sgjnd.runtime import open_predictor

    with open_predictor("models/r50") as predictor:
        result = predictor.predict("photo.jpg")       # also: bytes, a decoded BGR array, a DecodedImage
        print(result.jnd_qf, result.recommended_qf)

The names below are loaded on first use (PEP 562), not when the package is imported: every ``sgjnd.runtime.*``
module passes through this file, and the CLI must set OpenCV's pixel limit before anything loads OpenCV
(:mod:`sgjnd.runtime.pixel_limit`). Using them loads numpy and OpenCV only; a backend's library is imported when a
model is opened.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sgjnd.runtime.decode import DecodedImage, decode_image, decoded_from_array
    from sgjnd.runtime.embed import ImageInput, Predictor, open_predictor
    from sgjnd.runtime.predictor import JNDPredictor, JNDResult, PatchResult, PredictConfig
    from sgjnd.runtime.search import STRATEGIES, SearchConfig
    from sgjnd.runtime.source import ModelSource, ResolvedSource, open_source, resolve_source

_HOMES = {
    "decode": ("DecodedImage", "decode_image", "decoded_from_array"),
    "embed": ("ImageInput", "Predictor", "open_predictor"),
    "predictor": ("JNDPredictor", "JNDResult", "PatchResult", "PredictConfig"),
    "search": ("STRATEGIES", "SearchConfig"),
    "source": ("ModelSource", "ResolvedSource", "open_source", "resolve_source"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "STRATEGIES",
    "DecodedImage",
    "ImageInput",
    "JNDPredictor",
    "JNDResult",
    "ModelSource",
    "PatchResult",
    "PredictConfig",
    "Predictor",
    "ResolvedSource",
    "SearchConfig",
    "decode_image",
    "decoded_from_array",
    "open_predictor",
    "open_source",
    "resolve_source",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'sgjnd.runtime' has no attribute {name!r}")
    value = getattr(import_module(f"sgjnd.runtime.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
