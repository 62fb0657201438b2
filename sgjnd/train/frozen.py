"""A frozen backbone's stage outputs, computed by PyTorch or by ONNX Runtime.

With the whole backbone frozen (``freeze = ["encoder.backbone"]``), training only needs its stage outputs, as
constants: the backbone is a feature extractor, and the fastest runtime for it on a CPU is not PyTorch eager
(measured, EfficientNet-Lite0 at 160 px, one thread: eager 30.7 ms/patch, ONNX Runtime 9.2 ms/patch, the same
stage outputs within 7e-5). ``frozen_backbone = "onnxruntime"`` exports the frozen backbone once and runs
it there; ``torch`` (the default) keeps every number of earlier runs.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch
from torch import Tensor, nn

from sgjnd.errors import UsageError
from sgjnd.train.config import FrozenRuntime

FROZEN_RUNTIMES: tuple[str, ...] = get_args(FrozenRuntime)


class FrozenBackbone:
    """Stage outputs of a frozen backbone on normalised patches (N, 3, s, s), without gradients.

    Args:
        backbone: the frozen module (its ``forward`` returns the stage outputs F1..F4).
        runtime: ``torch`` or ``onnxruntime``.
        threads: ONNX Runtime intra-op threads (PyTorch uses ``torch.set_num_threads``).
        patch_size: side s of the patches, for the export's example input.
    """

    def __init__(self, backbone: nn.Module, runtime: FrozenRuntime, threads: int, patch_size: int) -> None:
        if runtime not in FROZEN_RUNTIMES:
            raise UsageError(f"frozen_backbone must be one of {', '.join(FROZEN_RUNTIMES)}, got {runtime!r}")
        self.backbone = backbone
        self.runtime = runtime
        self._session = _ort_session(backbone, threads, patch_size) if runtime == "onnxruntime" else None

    def __call__(self, patches: Tensor) -> tuple[Tensor, ...]:
        if self._session is None:
            with torch.no_grad():
                return tuple(self.backbone(patches))
        outputs = self._session.run(None, {"patches": np.ascontiguousarray(patches.numpy(), dtype=np.float32)})
        return tuple(torch.from_numpy(o) for o in outputs)


def _ort_session(backbone: nn.Module, threads: int, patch_size: int) -> Any:
    """An ONNX Runtime CPU session of ``backbone`` (eval mode, dynamic batch), exported through a temporary file."""
    try:
        import onnxruntime as ort
    except ImportError as err:  # pragma: no cover - onnxruntime is a core dependency
        raise UsageError("frozen_backbone = 'onnxruntime' needs onnxruntime: pip install onnxruntime") from err
    was_training = backbone.training
    backbone.eval()
    example = torch.zeros(2, 3, patch_size, patch_size)
    with torch.no_grad():
        n_stages = len(backbone(example))
    names = [f"stage{i + 1}" for i in range(n_stages)]
    with tempfile.TemporaryDirectory(prefix="sgjnd-frozen-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on constant folding and shape inference
        path = Path(tmp) / "backbone.onnx"
        torch.onnx.export(backbone, (example,), str(path), input_names=["patches"], output_names=names,
                          dynamic_axes={n: {0: "batch"} for n in ("patches", *names)}, opset_version=17,
                          dynamo=False)
        graph = path.read_bytes()
    backbone.train(was_training)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
