"""A/B of two exported sgjnd_r50 model folders (old and new attention), as run for README.md.

Interleaved timing at batch 16, 2 threads: PyTorch eager (from CHECKPOINT), then ONNX Runtime and OpenVINO on each
folder's FP32 and INT8 encoder graphs, with the features' cosine to PyTorch; then OpenVINO ``PERF_COUNT`` on each
folder's U8S8 graph, split into the first attention layer, the other two and the rest.

    python ab_old_new.py CHECKPOINT OLD_DIR NEW_DIR
"""

from __future__ import annotations

import collections
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import openvino as ov
import torch

from sgjnd.model import load_checkpoint
from sgjnd.model.pixels import PixelEncoder

BATCH, THREADS, REPEATS = 16, 2, 6
PIXELS = np.random.default_rng(0).integers(0, 256, (BATCH, 224, 224, 3), dtype=np.uint8)


def ort_runner(path: Path) -> Callable[[], np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"patches": PIXELS})[0]


def ov_request(path: Path, **config: object) -> ov.InferRequest:
    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({model.inputs[0].get_any_name(): [BATCH, 224, 224, 3]})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": THREADS, "PERFORMANCE_HINT": "LATENCY",
                                                 "INFERENCE_PRECISION_HINT": "f32", **config})
    return compiled.create_infer_request()


def ov_runner(path: Path) -> Callable[[], np.ndarray]:
    request = ov_request(path)
    return lambda: request.infer({0: PIXELS})[0].copy()


def timings(checkpoint: Path, folders: dict[str, Path]) -> None:
    torch.set_num_threads(THREADS)
    model = load_checkpoint(checkpoint)
    encoder = PixelEncoder(model.encoder, model.spec).eval()
    pixels = torch.from_numpy(PIXELS)

    def eager() -> np.ndarray:
        with torch.inference_mode():
            return encoder(pixels).numpy()

    runs: dict[str, Callable[[], np.ndarray]] = {"torch eager fp32": eager}
    for tag, folder in folders.items():
        for graph in ("encoder.onnx", "encoder.int8-ort.onnx", "encoder.int8.onnx"):
            if graph != "encoder.int8.onnx":  # the S8S8 graph is TensorRT's; ONNX Runtime runs it slowly
                runs[f"ort {tag} {graph}"] = ort_runner(folder / graph)
            runs[f"ov {tag} {graph}"] = ov_runner(folder / graph)
    outputs = {name: run() for name, run in runs.items()}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(REPEATS):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    reference = outputs["torch eager fp32"]
    base = float(np.median(seconds["torch eager fp32"]))
    for name, values in seconds.items():
        out = outputs[name]
        cosine = float((out * reference).sum() / np.linalg.norm(out) / np.linalg.norm(reference))
        median = float(np.median(values))
        print(f"{name:34s} {1000 * median / BATCH:6.1f} ms/patch  {base / median:4.2f}x eager  cos {cosine:.4f}")


def perf_counts(folders: dict[str, Path]) -> None:
    for tag, folder in folders.items():
        request = ov_request(folder / "encoder.int8-ort.onnx", PERF_COUNT=True)
        for _ in range(3):
            request.infer({0: PIXELS})
        totals: collections.Counter[str] = collections.Counter()
        for _ in range(3):
            request.infer({0: PIXELS})
            for layer in request.profiling_info:
                part = "csa.0" if "csa.0" in layer.node_name else \
                    "csa.1/2" if ("csa.1" in layer.node_name or "csa.2" in layer.node_name) else "rest"
                totals[part] += layer.real_time.total_seconds() * 1000 / 3 / BATCH
        print(tag, {k: round(v, 2) for k, v in totals.items()}, "total", round(sum(totals.values()), 2), "ms/patch")


if __name__ == "__main__":
    checkpoint, old, new = (Path(a) for a in sys.argv[1:4])
    timings(checkpoint, {"old": old, "new": new})
    perf_counts({"old": old, "new": new})
