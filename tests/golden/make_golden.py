"""Regenerate the golden predictions (tests/golden/demo_predictions.json): run only after an intended change.

    python tests/golden/make_golden.py [--check]

The bundled sample photos through the demo checkpoint, on the PyTorch reference and on ONNX Runtime FP32 (an export
of the same checkpoint), with the demo's search settings. ``tests/runtime/test_golden.py`` compares every run of the
suite with this file: any change to decoding, patches, JPEG trials, batching or the search that moves a JND or an
S(QF) fails there, and must either be fixed or recorded here with the reason in the commit.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("demo_predictions.json")
CHECKPOINT = ROOT / "models" / "demo" / "sgjnd_effl0_proxy.pt"
SETTINGS: dict[str, Any] = {"search": "coarse-to-fine", "max_patches": 8}


def predictions(backend: str, location: Path) -> dict[str, dict[str, Any]]:
    """JND, recommended QF and every evaluated S(QF) per sample photo, on ``backend``."""
    from sgjnd.runtime.backends.registry import open_model
    from sgjnd.runtime.predictor import JNDPredictor, PredictConfig
    from sgjnd.runtime.search import SearchConfig
    from sgjnd.samples import sample_photos

    config = PredictConfig(search=SearchConfig(strategy=SETTINGS["search"]), max_patches=SETTINGS["max_patches"])
    out: dict[str, dict[str, Any]] = {}
    with open_model(backend, location) as models:
        predictor = JNDPredictor(models, config)
        for photo in sample_photos():
            result = predictor.predict(photo)
            out[photo.name] = {
                "jnd_qf": result.jnd_qf,
                "recommended_qf": result.recommended_qf,
                "scores": {str(k): round(v, 6) for k, v in result.scores.items()},
            }
    return out


def make() -> dict[str, Any]:
    """The golden record, computed now."""
    from sgjnd.export.onnx import onnx_from_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        onnx_from_checkpoint(CHECKPOINT, model_dir)
        return {
            "checkpoint": CHECKPOINT.name,
            "settings": SETTINGS,
            "torch": predictions("torch", CHECKPOINT),
            "onnxruntime": predictions("onnxruntime", model_dir),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the stored file instead of writing it")
    args = parser.parse_args()
    record = make()
    if args.check:
        stored = json.loads(GOLDEN.read_text())
        same = stored == record
        print("same as stored" if same else "DIFFERS from stored")
        return 0 if same else 1
    GOLDEN.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
