"""The bundled demo model: what runs when no model is given.

The repository ships the demo checkpoint (``models/demo/``, see its MODEL_CARD.md). Its ONNX graphs are made from
it once, on first use, into a user cache folder keyed by the checkpoint's hash, so later runs (and installs without
torch that share the cache) open them directly. Nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from sgjnd.errors import UsageError

log = logging.getLogger(__name__)

DEMO_CHECKPOINT = "sgjnd_effl0_proxy.pt"
"""File name of the demo checkpoint in ``models/demo/``."""

_GRAPH_FILES = ("encoder.onnx", "encoder.onnx.json", "head.onnx", "head.onnx.json")


def demo_checkpoint() -> Path:
    """The demo checkpoint: ``$SGJND_DEMO_CHECKPOINT``, else ``models/demo/`` of the source tree sgjnd runs from.

    Raises:
        UsageError: neither exists (an install from a wheel does not carry the 8 MB checkpoint).
    """
    override = os.environ.get("SGJND_DEMO_CHECKPOINT")
    candidates = [Path(override)] if override else []
    candidates.append(Path(__file__).resolve().parents[2] / "models" / "demo" / DEMO_CHECKPOINT)
    for path in candidates:
        if path.is_file():
            return path
    raise UsageError(
        f"no model given and the bundled demo model is not here (looked for {', '.join(map(str, candidates))}): "
        "give one with --model (a model directory from `sgjnd export`, or a checkpoint), or point "
        "SGJND_DEMO_CHECKPOINT at the demo checkpoint of a source checkout"
    )


def cache_root() -> Path:
    """Where sgjnd caches derived files: ``$SGJND_CACHE``, else ``$XDG_CACHE_HOME/sgjnd`` or ``~/.cache/sgjnd``."""
    if os.environ.get("SGJND_CACHE"):
        return Path(os.environ["SGJND_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sgjnd"


def demo_model_dir(*, checkpoint: Path | None = None) -> Path:
    """The demo model's ONNX model directory, exported from its checkpoint on first use (needs torch then).

    Raises:
        UsageError: the directory is not cached yet and torch is not installed, or the checkpoint is missing.
    """
    checkpoint = checkpoint or demo_checkpoint()
    sha = json.loads(Path(f"{checkpoint}.json").read_text())["artifact"]["sha256"]
    target = cache_root() / f"demo-{sha[:16]}"
    if all((target / name).is_file() for name in _GRAPH_FILES):
        return target
    try:
        import torch  # noqa: F401 - the exporter needs it
    except ImportError as exc:
        raise UsageError(
            f"the demo model's ONNX graphs are made once from its checkpoint, which needs torch "
            f"(pip install 'sgjnd[torch,ort]'), and {target} does not hold them yet; or give --model DIR"
        ) from exc
    from sgjnd.export.onnx import onnx_from_checkpoint

    log.warning("exporting the demo model to ONNX once, into %s", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".demo-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on constant folding say nothing to a demo user
        staged = Path(tmp) / "model"
        onnx_from_checkpoint(checkpoint, staged)
        try:
            staged.rename(target)  # atomic: a concurrent first use finds either nothing or the whole folder
        except OSError:
            if not all((target / name).is_file() for name in _GRAPH_FILES):
                shutil.rmtree(target, ignore_errors=True)
                staged.rename(target)
    return target
