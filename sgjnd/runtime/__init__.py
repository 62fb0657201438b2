"""The runtime's public face, for services that embed it (README, "Embedding the runtime").

    from sgjnd.runtime import open_predictor

    with open_predictor("models/r50") as predictor:
        result = predictor.predict("photo.jpg")       # also: bytes, a decoded BGR array, a DecodedImage
        print(result.jnd_qf, result.recommended_qf)

Importing it loads numpy and OpenCV only; the backend's library is imported when a model is opened.
"""

from sgjnd.runtime.decode import DecodedImage, decode_image
from sgjnd.runtime.embed import ImageInput, Predictor, decoded_from_array, open_predictor
from sgjnd.runtime.predictor import JNDPredictor, JNDResult, PatchResult, PredictConfig
from sgjnd.runtime.search import STRATEGIES, SearchConfig
from sgjnd.runtime.source import ModelSource, ResolvedSource, open_source, resolve_source

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
