"""PyTorch eager, old (nn.MultiheadAttention) vs new (CrossAttention) encoder, same checkpoint, alternated calls.

    python eager_ab.py CHECKPOINT OLD_SOURCE_TREE NEW_SOURCE_TREE   # trees: checkouts of sgjnd before/after
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

BATCH, THREADS, REPEATS = 16, 2, 6


def encoder_from(tree: str, checkpoint: str) -> torch.nn.Module:
    for name in [m for m in sys.modules if m == "sgjnd" or m.startswith("sgjnd.")]:
        del sys.modules[name]
    sys.path.insert(0, tree)
    try:
        from sgjnd.model import load_checkpoint
        from sgjnd.model.pixels import PixelEncoder

        model = load_checkpoint(checkpoint)
        print(tree, type(model.encoder.csa[0].mha).__name__)
        return PixelEncoder(model.encoder, model.spec).eval()
    finally:
        sys.path.remove(tree)


if __name__ == "__main__":
    checkpoint, old_tree, new_tree = sys.argv[1:4]
    torch.set_num_threads(THREADS)
    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (BATCH, 224, 224, 3), dtype=np.uint8))
    encoders = {"old": encoder_from(old_tree, checkpoint), "new": encoder_from(new_tree, checkpoint)}
    seconds: dict[str, list[float]] = {tag: [] for tag in encoders}
    with torch.inference_mode():
        outputs = {tag: encoder(pixels) for tag, encoder in encoders.items()}
        print("max |old - new|", float((outputs["old"] - outputs["new"]).abs().max()))
        for _ in range(REPEATS):
            for tag, encoder in encoders.items():
                start = time.perf_counter()
                encoder(pixels)
                seconds[tag].append(time.perf_counter() - start)
    for tag, values in seconds.items():
        print(tag, f"{1000 * np.median(values) / BATCH:.1f} ms/patch (min {1000 * min(values) / BATCH:.1f})")
