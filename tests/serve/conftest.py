"""Fixtures of the service tests: the tiny ONNX model with a short QF search, and small real images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures_bad import crop, encode
from serve_helpers import TOKEN, make_config

from sgjnd.runtime.predictor import PredictConfig
from sgjnd.runtime.search import SearchConfig


@pytest.fixture(scope="session")
def predict_config() -> PredictConfig:
    """Few patches and QFs: the tests check plumbing, not the model."""
    return PredictConfig(max_patches=2, search=SearchConfig(qfs=tuple(range(80, 91)), window=3))


@pytest.fixture(scope="session")
def jpeg_image(photos: list[Path]) -> bytes:
    """A 96×96 crop of a real photograph as a JPEG."""
    return encode(crop(photos[1]), ".jpg")


@pytest.fixture(scope="session")
def png_image(photos: list[Path]) -> bytes:
    """Another 96×96 crop as a PNG."""
    return encode(crop(photos[2]), ".png")


@pytest.fixture(scope="module")
def client(tiny_onnx_dir: Path, predict_config: PredictConfig) -> Iterator[Any]:
    """A TestClient of a running app (model loaded) that sends the bearer token TOKEN."""
    pytest.importorskip("fastapi", reason="the service needs the serve extra: pip install 'sgjnd[serve]'")
    from fastapi.testclient import TestClient

    from sgjnd.serve.app import create_app

    app = create_app(make_config(tiny_onnx_dir, predict_config, token=TOKEN))
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as test_client:
        yield test_client
