"""Helpers shared by the service tests (plain functions; the fixtures are in conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sgjnd.runtime.predictor import PredictConfig

TOKEN = "test-token"
"""The bearer token of the ``client`` fixture."""


def require_serve() -> None:
    """Skip the calling module when the serve extra is not installed."""
    pytest.importorskip("fastapi", reason="the service needs the serve extra: pip install 'sgjnd[serve]'")
    pytest.importorskip("python_multipart", reason="the service needs the serve extra: pip install 'sgjnd[serve]'")


def make_config(model_dir: Path, predict: PredictConfig, **overrides: Any) -> Any:
    """A ServeConfig over the tiny ONNX model with small limits; ``overrides`` replace fields."""
    from sgjnd.serve.config import ServeConfig, ServeLimits

    limits = overrides.pop("limits", ServeLimits(max_body_bytes=1 << 20, workers=4, queue=4, timeout_s=30.0))
    fields: dict[str, Any] = {
        "backend": "onnxruntime",
        "location": model_dir,
        "backend_options": {"threads": 1},
        "predict": predict,
        "max_batch": 16,
        "max_delay_ms": 2.0,
        "limits": limits,
    }
    fields.update(overrides)
    return ServeConfig(**fields)
