"""The lean runtime: `pip install sgjnd[ort]` resolves without torch, and with torch unimportable the runtime opens
an exported model on ONNX Runtime, runs both graphs, predicts a JND, and never imports torch."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Installed first on the path of the child process: any attempt to import torch (or a torch submodule) fails.
BLOCKER = """
import importlib.abc, sys

class _BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked in this test (importing {name!r})")
        return None

sys.meta_path.insert(0, _BlockTorch())
"""

CHILD = """
import json, sys
import numpy as np
from pathlib import Path

model_dir, photo = Path(sys.argv[1]), Path(sys.argv[2])
import sgjnd, sgjnd.runtime
from sgjnd.runtime.backends.registry import open_model
from sgjnd.runtime.predictor import JNDPredictor, PredictConfig
from sgjnd.runtime.search import SearchConfig

result = {}
with open_model("onnxruntime", model_dir, providers=("cpu",), threads=1) as models:
    patches = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)  # exports take pixels
    features = models.encoder.infer({"patches": patches})["features"]
    out = models.head.infer({"f_ref": features, "f_dis": features[::-1].copy()})
    result["shapes"] = [list(features.shape), list(out["q"].shape), list(out["w"].shape)]
    config = PredictConfig(search=SearchConfig(strategy="bisect"), max_patches=2)
    result["jnd_qf"] = JNDPredictor(models, config).predict(photo).jnd_qf

from sgjnd.cli import main  # the whole CLI (every subcommand's parser) must stay lean as well
result["cli"] = main(["predict", str(photo), "--backend", "onnxruntime", "--model", str(model_dir),
                      "--search", "bisect", "--max-patches", "2", "--json"])
result["torch_loaded"] = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print("RESULT " + json.dumps(result))
"""


def test_runtime_runs_onnxruntime_with_torch_blocked(tiny_onnx_dir: Path, photos: list[Path], tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    # Prove the blocker works before trusting a pass.
    blocked = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert blocked.returncode != 0 and "torch is blocked" in blocked.stderr
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tiny_onnx_dir), str(photos[1])],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    assert result["shapes"] == [[3, 128], [3], [3]]
    assert result["jnd_qf"] is None or 1 <= result["jnd_qf"] <= 100
    assert result["cli"] == 0
    assert result["torch_loaded"] == []


@pytest.mark.slow
def test_ort_extra_resolves_without_torch(tmp_path: Path) -> None:
    """`pip install '.[ort]'` into an empty environment would install onnxruntime and no torch (a dry run)."""
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--report", str(report), f"{ROOT}[ort]"]
    if importlib.util.find_spec("setuptools") is not None:
        command.insert(4, "--no-build-isolation")  # build sgjnd's metadata with the setuptools already here
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    if proc.returncode != 0 and ("Could not find" in proc.stderr or "NewConnectionError" in proc.stderr):
        pytest.skip(f"the package index is not reachable: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"sgjnd", "onnxruntime", "numpy", "opencv-python-headless"} <= names
    heavy = sorted(n for n in names if n in {"torch", "onnx", "onnxscript", "tensorrt"} or n.startswith("nvidia-"))
    assert heavy == [], f"sgjnd[ort] pulls {heavy}"
