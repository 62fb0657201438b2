"""uint8-input graphs vs float32-input graphs on a CPU, side by side in one process (issue 17, item 1).

    python benchmarks/encoder_input.py [--model sgjnd_r50] [--strategy coarse-to-fine] [--repeats 3] [--threads 2]

Exports one seeded (untrained) checkpoint twice, ``--encoder-input uint8`` and ``float32``, and alternates the two on
ONNX Runtime's CPU provider over the bundled photos: wall time per photo, the predictor's own stage times
(``patches`` includes the reference normalisation on the host for float graphs; ``jpeg`` the wait for the distorted
trials, whose normalisation happens there too), encoder input bytes per photo, and the JND (which must be equal).
Also times the encoder alone at batch 16 on fixed patches, and the host normalisation pass it saves. The figures are
in benchmarks/results/2026-12-07-uint8-input/.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from sgjnd.export.onnx import onnx_from_checkpoint
from sgjnd.model import create_model, save_checkpoint
from sgjnd.runtime.backends.registry import open_model
from sgjnd.runtime.decode import decode_image
from sgjnd.runtime.pairs import PairMaker
from sgjnd.runtime.patches import normalize_patches
from sgjnd.runtime.predictor import JNDPredictor, PredictConfig
from sgjnd.runtime.search import STRATEGIES, SearchConfig
from sgjnd.samples import sample_photos

KINDS = ("uint8", "float32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sgjnd_r50")
    parser.add_argument("--strategy", choices=STRATEGIES, default="coarse-to-fine")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-patches", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sgjnd-encoder-input-"))
    checkpoint = work / f"{args.model}.pt"
    save_checkpoint(create_model(args.model, seed=0), checkpoint, weights=f"UNTRAINED: {args.model} seed 0")
    dirs = {kind: onnx_from_checkpoint(checkpoint, work / kind, encoder_input=kind, simplify=False).out_dir
            for kind in KINDS}  # fmt: skip
    photos = [decode_image(p) for p in sample_photos()]
    config = PredictConfig(search=SearchConfig(strategy=args.strategy), max_patches=args.max_patches)
    opened = {kind: open_model("onnxruntime", dirs[kind], providers=("cpu",), threads=args.threads) for kind in KINDS}
    for models in opened.values():
        models.__enter__()
    try:
        spec = opened["uint8"].model
        maker = PairMaker(spec)
        first = maker.grid(photos[0].bgr, max_patches=16)
        pixels = maker.reference_pixels(first)
        if len(pixels) < 16:
            pixels = np.concatenate([pixels] * (16 // len(pixels) + 1))[:16]
        floats = normalize_patches(pixels, spec)
        encoder_ms: dict[str, list[float]] = {k: [] for k in (*KINDS, "host normalisation")}
        for _ in range(args.repeats * 3):
            for kind in KINDS:
                feed = pixels if kind == "uint8" else floats
                start = time.perf_counter()
                opened[kind].encoder.infer({"patches": feed})
                encoder_ms[kind].append((time.perf_counter() - start) * 1e3 / len(feed))
            start = time.perf_counter()
            normalize_patches(pixels, spec)
            encoder_ms["host normalisation"].append((time.perf_counter() - start) * 1e3 / len(pixels))
        print(f"encoder alone, batch 16, {args.threads} threads, ms per patch (median of {args.repeats * 3}):")
        for kind, values in encoder_ms.items():
            print(f"  {kind:<20} {statistics.median(values):8.3f}")
        ratio = statistics.median(encoder_ms["float32"]) / statistics.median(encoder_ms["uint8"])
        print(f"  float32 graph / uint8 graph: {ratio:.3f}x")

        predictors = {kind: JNDPredictor(opened[kind], config) for kind in KINDS}
        totals: dict[str, list[float]] = {k: [] for k in KINDS}
        stages: dict[str, dict[str, float]] = {k: {} for k in KINDS}
        results: dict[str, list[tuple[int | None, int, int]]] = {k: [] for k in KINDS}
        for repeat in range(args.repeats):
            for kind in KINDS:  # alternating, so drifting load hits both alike
                start = time.perf_counter()
                for photo in photos:
                    r = predictors[kind].predict(photo)
                    for name, ms in r.timings_ms.items():
                        stages[kind][name] = stages[kind].get(name, 0.0) + ms
                    if repeat == 0:
                        results[kind].append((r.jnd_qf, r.encoder_passes, r.host_input_bytes))
                totals[kind].append((time.perf_counter() - start) * 1e3 / len(photos))
        print(f"\npredictor, {args.model}, {args.strategy}, {len(photos)} photos, ms per photo (median of "
              f"{args.repeats}); stages: mean ms per photo")
        for kind in KINDS:
            n = args.repeats * len(photos)
            cells = " ".join(f"{k} {v / n:.1f}" for k, v in stages[kind].items() if k != "total")
            mib = sum(b for _, _, b in results[kind]) / len(photos) / 2**20
            print(f"  {kind:<8} {statistics.median(totals[kind]):9.1f}   input {mib:7.2f} MiB/photo   {cells}")
        per_photo = statistics.median(totals["float32"]) / statistics.median(totals["uint8"])
        print(f"  float32 / uint8 per photo: {per_photo:.3f}x")
        same = [a[0] == b[0] for a, b in zip(results["uint8"], results["float32"], strict=True)]
        print(f"  same JND on {sum(same)}/{len(same)} photos: {[r[0] for r in results['uint8']]}")
    finally:
        for models in opened.values():
            models.__exit__(None, None, None)


if __name__ == "__main__":
    main()
