"""The predictor's memory: a search round streams through the encoder, and the budget per megapixel holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sgjnd.runtime.predictor as predictor_module
from sgjnd.runtime import batching
from sgjnd.runtime.backends.registry import open_model
from sgjnd.runtime.predictor import JNDPredictor, PredictConfig
from sgjnd.runtime.search import SearchConfig

BUDGET_MB_PER_MEGAPIXEL = 12
"""The budget stated in docs/errors.md ("Memory"): peak memory above the loaded model, per megapixel."""
BUDGET_FIXED_MB = 64
"""Plus this much for one search round's patches and features with the tiny model (about 110 MB with sgjnd_r50)."""


def test_a_streamed_round_equals_the_concatenated_round(
    tiny_onnx_dir: Path, photos: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 5 patches a QF in batches of 3: batches straddle QFs, as they did when the round was one array.
    config = PredictConfig(search=SearchConfig(strategy="full", threshold=0.3), max_patches=5, batch_size=3)
    with open_model("onnxruntime", tiny_onnx_dir) as models:
        predictor = JNDPredictor(models, config)
        streamed = predictor.predict(photos[0])

        def concatenated(models: Any, patches: Any, *args: Any, **kwargs: Any) -> np.ndarray:
            whole = patches if isinstance(patches, np.ndarray) else np.concatenate(list(patches))
            return batching.encode(models, whole, *args, **kwargs)  # the old way: the whole round at once

        monkeypatch.setattr(predictor_module, "encode", concatenated)
        whole = predictor.predict(photos[0])
    assert len(streamed.scores) == 100  # QF 1..100, one round
    assert streamed.scores == whole.scores  # bit for bit
    assert streamed.patches == whole.patches and streamed.encoder_passes == whole.encoder_passes
    assert streamed.psnr_db == whole.psnr_db and streamed.jpeg_bytes == whole.jpeg_bytes


_MEASURE = """
import sys
from pathlib import Path
import cv2, numpy as np
from sgjnd.compress import compress_image
import sgjnd.runtime.predictor as predictor_module
from sgjnd.runtime import batching
from sgjnd.runtime.backends.registry import open_model
from sgjnd.runtime.predictor import JNDPredictor, PredictConfig
from sgjnd.runtime.search import SearchConfig

def status(key):
    line = next(s for s in Path("/proc/self/status").read_text().splitlines() if s.startswith(key + ":"))
    return int(line.split()[1]) / 1024

rng = np.random.default_rng(0)
h, w = 3000, 4000  # 12 MP of smooth noise, as a PNG
image = cv2.resize(rng.integers(0, 256, (h // 64, w // 64, 3), dtype=np.uint8), (w, h))
data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()
del image
config = PredictConfig(search=SearchConfig(strategy="full", threshold=0.3))
with open_model("onnxruntime", Path(sys.argv[1])) as models:
    predictor = JNDPredictor(models, config)
    predictor.predict(cv2.imencode(".png", rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))[1].tobytes())
    before = status("VmRSS")
    result = predictor.predict(data)
    assert result.recommended_qf is not None and result.psnr_db is not None  # the full-image PSNR ran
    predict_peak = status("VmHWM") - before
    compress_image(predictor, data, source="x", output=Path("x.jpg"))
    compress_peak = status("VmHWM") - before
print(predict_peak, compress_peak, h * w / 1e6)
"""


def test_predict_and_compress_hold_the_memory_budget(tiny_onnx_dir: Path) -> None:
    """Peak RSS of a 12-megapixel PNG, full search, predict then compress, in a fresh process."""
    if not Path("/proc/self/status").exists():  # pragma: no cover - not Linux
        pytest.skip("VmHWM needs /proc")
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(tiny_onnx_dir)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    predict_mb, compress_mb, megapixels = map(float, out.stdout.split())
    budget = BUDGET_MB_PER_MEGAPIXEL * megapixels + BUDGET_FIXED_MB
    assert predict_mb <= budget, f"predict peaked {predict_mb:.0f} MB above the loaded model; budget {budget:.0f}"
    assert compress_mb <= budget, f"compress peaked {compress_mb:.0f} MB above the loaded model; budget {budget:.0f}"
