"""Every route through the ASGI app: results, error codes, limits, auth, metrics, and a service that goes on."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fixtures_bad import jpeg_bomb, png_bomb
from serve_helpers import TOKEN, make_config, require_serve

from sgjnd.runtime.backends.registry import open_model
from sgjnd.runtime.predictor import JNDPredictor, PredictConfig

require_serve()

from fastapi.testclient import TestClient  # noqa: E402

from sgjnd.serve.app import create_app  # noqa: E402
from sgjnd.serve.config import ServeLimits  # noqa: E402
from sgjnd.serve.errors import ERROR_CODES  # noqa: E402
from sgjnd.serve.metrics import parse_histogram  # noqa: E402


def error_of(response: Any, status: int, code: str) -> str:
    """Check an error response's status, code and shape; return its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert response.headers["x-error-code"] == code
    assert ERROR_CODES[code] == status
    message: str = body["error"]["message"]
    assert message
    return message


def test_jnd_raw_body_equals_the_predictor(
    client: Any, tiny_onnx_dir: Path, predict_config: PredictConfig, jpeg_image: bytes
) -> None:
    response = client.post("/v1/jnd", content=jpeg_image, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200, response.text
    got = response.json()
    with open_model("onnxruntime", tiny_onnx_dir, threads=1) as models:
        want = JNDPredictor(models, predict_config).predict(jpeg_image).to_dict()
    assert (got["jnd_qf"], got["recommended_qf"], got["width"]) == (want["jnd_qf"], want["recommended_qf"], 96)
    assert got["scores"].keys() == want["scores"].keys()
    assert all(abs(got["scores"][k] - v) < 1e-5 for k, v in want["scores"].items())


def test_jnd_multipart(client: Any, png_image: bytes) -> None:
    response = client.post("/v1/jnd", files={"file": ("../../etc/cat.png", png_image, "image/png")})
    assert response.status_code == 200, response.text
    assert response.json()["source"] == "cat.png"  # a client's file name never carries a path


def test_multipart_without_a_file_field(client: Any) -> None:
    message = error_of(client.post("/v1/jnd", data={"image": "x"}, files={"other": ("a", b"x")}), 400, "bad_request")
    assert "'file'" in message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [(b"", "empty"), (b"hello, not an image", "not an image"), (b"\xff\xd8\xff\xe0" + b"\0" * 40, "")],
)
def test_bad_images_are_422_with_the_cli_message(client: Any, body: bytes, fragment: str) -> None:
    message = error_of(client.post("/v1/jnd", content=body), 422, "invalid_image")
    assert fragment in message


def test_bombs_are_refused_from_the_header(client: Any) -> None:
    for bomb in (png_bomb(50_000, 50_000), jpeg_bomb(60_000, 60_000)):
        message = error_of(client.post("/v1/jnd", content=bomb), 413, "too_many_pixels")
        assert "refused before decoding" in message


def test_body_too_large_declared_and_streamed(client: Any) -> None:
    big = b"\0" * ((1 << 20) + 1)
    error_of(client.post("/v1/jnd", content=big), 413, "body_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while the body streams in
        for _ in range(20):
            yield b"\0" * (64 << 10)

    error_of(client.post("/v1/jnd", content=chunks()), 413, "body_too_large")
    assert client.get("/healthz").status_code == 200


def test_auth(client: Any, jpeg_image: bytes) -> None:
    error_of(client.post("/v1/jnd", content=jpeg_image, headers={"Authorization": ""}), 401, "unauthorized")
    wrong = client.post("/v1/jnd", content=jpeg_image, headers={"Authorization": "Bearer nope"})
    error_of(wrong, 401, "unauthorized")
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    error_of(client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}), 401, "unauthorized")
    # Auth comes before the body limits: an anonymous client learns nothing else.
    error_of(client.post("/v1/jnd", content=b"\0" * (2 << 20), headers={"Authorization": ""}), 401, "unauthorized")
    assert client.get("/healthz", headers={"Authorization": ""}).json() == {"status": "ok"}
    assert client.get("/readyz", headers={"Authorization": ""}).json()["status"] == "ready"


def test_compress_returns_the_jpeg_and_the_result_in_headers(client: Any, png_image: bytes) -> None:
    response = client.post("/v1/compress?margin=2", content=png_image)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (96, 96, 3)
    result = json.loads(response.headers["x-sgjnd-result"])
    assert str(result["qf"]) == response.headers["x-sgjnd-qf"]
    assert result["output_bytes"] == len(response.content)
    error_of(client.post("/v1/compress?margin=500", content=png_image), 400, "bad_request")
    error_of(client.post("/v1/compress", content=b"nope"), 422, "invalid_image")


def test_unknown_routes_and_methods_are_json(client: Any) -> None:
    error_of(client.get("/nowhere"), 404, "not_found")
    error_of(client.get("/v1/jnd"), 405, "method_not_allowed")


def test_metrics_count_requests_errors_and_batches(client: Any, jpeg_image: bytes) -> None:
    client.post("/v1/jnd", content=jpeg_image)
    client.post("/v1/jnd", content=b"junk")
    text = client.get("/metrics").text
    assert 'sgjnd_requests_total{route="/v1/jnd",status="200"}' in text
    assert 'sgjnd_errors_total{code="invalid_image"}' in text
    assert 'sgjnd_request_duration_seconds_bucket{route="/v1/jnd",le="+Inf"}' in text
    assert sum(parse_histogram(text, "sgjnd_batch_size", {"graph": "encoder"}).values()) > 0
    assert "sgjnd_model_ready 1" in text


def test_overload_is_503_with_retry_after(client: Any, jpeg_image: bytes) -> None:
    admission = client.app.state.service.admission
    capacity, admission.capacity = admission.capacity, 0
    try:
        response = client.post("/v1/jnd", content=jpeg_image)
    finally:
        admission.capacity = capacity
    error_of(response, 503, "overloaded")
    assert response.headers["retry-after"] == "1"
    assert admission.in_flight == 0


def test_a_bug_fails_one_request_and_the_service_goes_on(
    client: Any, jpeg_image: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = client.app.state.service.predictor

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(predictor, "predict", broken)
    error_of(client.post("/v1/jnd", content=jpeg_image), 500, "internal")
    monkeypatch.undo()
    assert client.post("/v1/jnd", content=jpeg_image).status_code == 200


def test_timeout_is_504_and_the_work_stops_at_its_next_inference(
    tiny_onnx_dir: Path, predict_config: PredictConfig, jpeg_image: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(tiny_onnx_dir, predict_config, limits=ServeLimits(workers=1, queue=0, timeout_s=0.2))
    app = create_app(config)
    with TestClient(app) as slow:
        service = app.state.service
        predictor = service.predictor
        original = predictor.predict

        def late(*args: object, **kwargs: object) -> object:
            time.sleep(0.5)  # past the deadline before the first inference
            return original(*args, **kwargs)

        monkeypatch.setattr(predictor, "predict", late)
        error_of(slow.post("/v1/jnd", content=jpeg_image), 504, "timeout")
        give_up = time.monotonic() + 10
        while service.admission.in_flight and time.monotonic() < give_up:
            time.sleep(0.02)
        assert service.admission.in_flight == 0  # the slot is freed when the work really ended
        assert service.metrics.batch_rows.summary(graph="encoder") == (0, 0.0)  # no inference ran for it
        assert slow.get("/readyz").json()["status"] == "ready"
    assert not service.ready
    assert 'sgjnd_errors_total{code="timeout"} 1' in service.metrics.render()
