"""The embedding API: one object that opens a model and predicts from paths, bytes or decoded arrays.

    from sgjnd.runtime import open_predictor

    with open_predictor("models/r50") as predictor:          # backend auto: what `sgjnd predict` would run
        result = predictor.predict("photo.jpg")
        print(result.jnd_qf, result.recommended_qf)

The model is named as everywhere else (:class:`~sgjnd.runtime.source.ModelSource`); nothing heavy is imported
until a backend is opened, so a service that embeds the runtime pays only for the backend it runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from sgjnd.errors import SgjndError, UsageError
from sgjnd.runtime.backends.base import ModelBackends
from sgjnd.runtime.decode import DecodedImage, decoded_from_array
from sgjnd.runtime.predictor import JNDPredictor, JNDResult, PredictConfig
from sgjnd.runtime.source import ModelSource, open_source

ImageInput = str | Path | bytes | np.ndarray | DecodedImage
"""What :meth:`Predictor.predict` takes: a file path, encoded bytes, a decoded (H, W, 3) uint8 BGR array (OpenCV's
order; pass ``rgb=True`` for RGB), or a :class:`~sgjnd.runtime.decode.DecodedImage`."""


class Predictor:
    """A model opened on a backend, with a :class:`~sgjnd.runtime.predictor.JNDPredictor` over it.

    Use it in a ``with`` block (the backend's memory is freed at its end). One instance serves one thread at a
    time; a service with several worker threads shares one model through ``sgjnd.serve`` or one Predictor per
    thread.

    Args:
        source: the model (see :func:`open_predictor` for the short form).
        config: prediction settings; None uses :class:`~sgjnd.runtime.predictor.PredictConfig`'s defaults.
        announce: told, in one line, what was picked where something was left open (demo model, ``auto``).
    """

    def __init__(self, source: ModelSource, config: PredictConfig | None = None, *, announce: Any = None) -> None:
        self.source = source
        self.config = config or PredictConfig()
        self._announce = announce
        self._models: ModelBackends | None = None
        self._predictor: JNDPredictor | None = None

    def __enter__(self) -> Predictor:
        models = open_source(self.source, announce=self._announce)
        models.__enter__()
        self._models = models
        self._predictor = JNDPredictor(models, self.config)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        models, self._models, self._predictor = self._models, None, None
        if models is not None:
            models.__exit__(exc_type, exc, tb)

    @property
    def backend(self) -> str:
        """What runs the graphs (backend, device, precision)."""
        return self._require().models.encoder.description

    def predict(self, image: ImageInput, *, source: str | None = None, rgb: bool = False) -> JNDResult:
        """The JND of one image.

        Args:
            image: see :data:`ImageInput`.
            source: a name for the image in the result (default: its path, ``<bytes>`` or ``<array>``).
            rgb: a numpy ``image`` is in RGB order (default: BGR, as OpenCV decodes).

        Raises:
            ImageError: the image cannot be decoded or is too large.
            UsageError: an array that is not (H, W, 3) uint8.
        """
        predictor = self._require()
        if isinstance(image, np.ndarray):  # held to the limits of a file (decode.py)
            image = decoded_from_array(image, rgb=rgb, source=source or "<array>", max_pixels=self.config.max_pixels)
        elif isinstance(image, str):
            image = Path(image)
        return predictor.predict(image, source=source)

    def predict_many(self, images: Iterable[ImageInput], *, rgb: bool = False) -> Iterator[JNDResult | SgjndError]:
        """Each image's result, in order; an image that fails gives its error in its place (the rest go on)."""
        for image in images:
            try:
                yield self.predict(image, rgb=rgb)
            except SgjndError as exc:
                yield exc

    def _require(self) -> JNDPredictor:
        if self._predictor is None:
            raise UsageError("the predictor is not open: use it in a `with open_predictor(...) as predictor:` block")
        return self._predictor


def open_predictor(
    model: str | Path | ModelSource | None = None,
    *,
    backend: str = "auto",
    precision: str | None = None,
    config: PredictConfig | None = None,
    announce: Any = None,
    **options: Any,
) -> Predictor:
    """A :class:`Predictor` for ``model`` (use it in a ``with`` block).

    Args:
        model: a model directory from ``sgjnd export``, a checkpoint, a ModelSource, or None for the bundled demo
            model.
        backend: ``auto`` (torch for a checkpoint; for a directory its TensorRT engines where a GPU can run them,
            else the fastest CPU backend and precision that passed the accuracy gate) or a backend name.
        precision: which prepared graphs to run; None: fp32, or auto's choice.
        config: prediction settings (search strategy, patches, batch size, pixel limit).
        announce: called with one line saying what was picked when something was left open (default: logged).
        options: backend options (``threads``, ``providers``, ``device``, ...), checked against the backend.
    """
    if isinstance(model, ModelSource):
        if options or precision is not None or backend != "auto":
            raise UsageError("give backend, precision and options inside the ModelSource, not beside it")
        source = model
    else:
        source = ModelSource(backend, None if model is None else Path(model), precision, options)
    return Predictor(source, config, announce=announce)
