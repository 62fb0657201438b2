"""JPEG trials overlapped with inference vs in line, on the demo model, alternating in one process.

    python benchmarks/jpeg_overlap.py [--strategy coarse-to-fine] [--repeats 3] [--max-patches 32]

Prints, per repetition, the wall time over the bundled photos and the predictor's own JPEG-wait and inference times
for `PredictConfig(prefetch_jpeg=True)` and `False` (the figures in benchmarks/results/2026-12-07-jpeg-trials/).
"""

from __future__ import annotations

import argparse
import time

from sgjnd.runtime.backends.registry import open_model
from sgjnd.runtime.demo import demo_model_dir
from sgjnd.runtime.predictor import JNDPredictor, PredictConfig
from sgjnd.runtime.search import STRATEGIES, SearchConfig
from sgjnd.samples import sample_photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", choices=STRATEGIES, default="coarse-to-fine")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-patches", type=int, default=32)
    args = parser.parse_args()
    photos = sample_photos()
    runs: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
    with open_model("onnxruntime", demo_model_dir()) as models:
        predictors = {
            flag: JNDPredictor(
                models,
                PredictConfig(
                    search=SearchConfig(strategy=args.strategy), max_patches=args.max_patches, prefetch_jpeg=flag
                ),
            )
            for flag in (True, False)
        }
        for _ in range(args.repeats):
            for flag, predictor in predictors.items():  # alternating, so drifting load hits both alike
                start, jpeg, inference = time.perf_counter(), 0.0, 0.0
                for photo in photos:
                    timings = predictor.predict(photo).timings_ms
                    jpeg += timings["jpeg"]
                    inference += timings["inference"]
                runs[flag].append((time.perf_counter() - start, jpeg / 1e3, inference / 1e3))
    for flag, rows in runs.items():
        cells = " ".join(f"{t:.2f}s (jpeg wait {j:.2f}s, inference {i:.2f}s)" for t, j, i in rows)
        print(f"{'overlapped' if flag else 'in line   '}: {cells}")


if __name__ == "__main__":
    main()
