"""The lean-runtime rule: the core and the CLI import no heavy library until a backend that needs it is chosen."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "onnx", "onnxruntime", "openvino", "tensorrt", "modelopt", "skimage", "matplotlib")


def imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_runtime_imports_no_heavy_library():
    loaded = imported_after(
        "import sgjnd, sgjnd.runtime, sgjnd.runtime.predictor, sgjnd.runtime.backends.registry, sgjnd.spec"
    )
    assert "cv2" in loaded and "numpy" in loaded
    assert not set(HEAVY) & loaded, set(HEAVY) & loaded


def test_cli_parser_imports_no_heavy_library():
    loaded = imported_after("from sgjnd.cli import build_parser; build_parser()")
    assert not set(HEAVY) & loaded, set(HEAVY) & loaded
