"""Schemathesis against the served OpenAPI schema: whatever it sends, no response is a 5xx and each conforms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from serve_helpers import make_config, require_serve

from sgjnd.runtime.predictor import PredictConfig

require_serve()
schemathesis = pytest.importorskip("schemathesis", reason="schema tests need schemathesis (the dev extra)")

from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from sgjnd.serve.app import create_app  # noqa: E402


@pytest.fixture(scope="module")
def api_schema(tiny_onnx_dir: Path, predict_config: PredictConfig) -> Any:
    """The schema of an app with small limits (so that generated bodies also hit the 413 path)."""
    from sgjnd.serve.config import ServeLimits

    limits = ServeLimits(max_body_bytes=4096, workers=2, queue=8, timeout_s=30.0)
    return schemathesis.openapi.from_asgi(
        "/openapi.json", create_app(make_config(tiny_onnx_dir, predict_config, limits=limits))
    )


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_api_conforms_and_never_fails_server_side(api_schema: Any) -> None:
    # schemathesis' pytest plugin (from_fixture) does not run on pytest 9, so each operation's strategy is drawn
    # by a plain hypothesis test here.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/jnd", "/v1/compress", "/healthz", "/readyz", "/metrics"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        check()
