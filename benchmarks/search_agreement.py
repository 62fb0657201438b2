"""How often the fast QF searches give the JND of the full search, and what each costs (issue 18, item 4).

    python benchmarks/search_agreement.py MODEL IMAGES... [-o OUT] [--backend torch] [--max-patches 32]

Runs the runtime predictor three times on every image, once per strategy (``full``, ``coarse-to-fine``, ``bisect``),
same model, same patches, strategies interleaved per image so that drifting load hits all alike. Prints and writes
(``OUT/agreement.csv``, ``OUT/agreement.md``) the share of images on which each fast strategy returns exactly the full
search's JND (and within 1 and 2 QF), the wall time and encoder passes per image, and their ratios to ``full``.
IMAGES are files or folders (not recursive).
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from sgjnd.labels.proxy import expand_inputs
from sgjnd.runtime.backends.registry import open_model
from sgjnd.runtime.decode import decode_image
from sgjnd.runtime.predictor import JNDPredictor, PredictConfig
from sgjnd.runtime.search import STRATEGIES, SearchConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="checkpoint (.pt, torch backend) or model directory")
    parser.add_argument("images", type=Path, nargs="+", help="image files or folders")
    parser.add_argument("-o", "--output", type=Path, default=Path("search-agreement"))
    parser.add_argument("--backend", default=None, help="default: torch for a checkpoint, onnxruntime for a folder")
    parser.add_argument("--max-patches", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    backend = args.backend or ("torch" if args.model.suffix == ".pt" else "onnxruntime")
    paths = expand_inputs(args.images)
    rows: list[Row] = []
    with open_model(backend, args.model, threads=args.threads) as models:
        predictors = {s: JNDPredictor(models, PredictConfig(search=SearchConfig(strategy=s),
                                                            max_patches=args.max_patches)) for s in STRATEGIES}
        for i, path in enumerate(paths, 1):
            image = decode_image(path)
            row = Row(path.name, image.width, image.height)
            for strategy, predictor in predictors.items():
                start = time.perf_counter()
                result = predictor.predict(image)
                row.runs[strategy] = Run(result.jnd_qf, time.perf_counter() - start, result.encoder_passes)
            rows.append(row)
            print(f"[{i}/{len(paths)}] {path.name} {image.width}x{image.height}: "
                  + ", ".join(f"{s} JND {r.jnd} in {r.seconds:.2f} s" for s, r in row.runs.items()), flush=True)
    args.output.mkdir(parents=True, exist_ok=True)
    with open(args.output / "agreement.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "width", "height", *(f"{s}_{k}" for s in STRATEGIES for k in Run.FIELDS)])
        for row in rows:
            writer.writerow([row.image, row.width, row.height,
                             *(v for s in STRATEGIES for v in row.runs[s].cells())])
    report = summary(rows, f"`{args.model}` on {backend}, {args.max_patches} patches, {args.threads} threads, "
                           f"{platform.processor() or platform.machine()}")
    (args.output / "agreement.md").write_text(report)
    print(report)


@dataclass(frozen=True)
class Run:
    """One strategy on one image: the JND, wall seconds, patches through the encoder."""

    jnd: int | None
    seconds: float
    passes: int
    FIELDS: ClassVar[tuple[str, ...]] = ("jnd", "s", "passes")

    def cells(self) -> tuple[object, ...]:
        return ("" if self.jnd is None else self.jnd, round(self.seconds, 3), self.passes)


@dataclass
class Row:
    """One image and its runs by strategy."""

    image: str
    width: int
    height: int
    runs: dict[str, Run] = field(default_factory=dict)


def summary(rows: list[Row], setting: str) -> str:
    """A markdown table: agreement with ``full`` and cost per strategy."""
    n = len(rows)
    full_s = statistics.mean(r.runs["full"].seconds for r in rows)
    lines = [f"# QF search strategies against `full` on {n} images", "", setting, "",
             "| strategy | same JND as full | within 1 QF | within 2 QF | s per image | vs full | encoder passes |",
             "|---|---|---|---|---|---|---|"]
    for strategy in STRATEGIES:
        gaps = [_gap(r.runs["full"].jnd, r.runs[strategy].jnd) for r in rows]
        seconds = statistics.mean(r.runs[strategy].seconds for r in rows)
        passes = statistics.mean(r.runs[strategy].passes for r in rows)
        share = [sum(g <= k for g in gaps) / n for k in (0, 1, 2)]
        lines.append(f"| `{strategy}` | {share[0]:.1%} ({sum(g == 0 for g in gaps)}/{n}) | {share[1]:.1%} | "
                     f"{share[2]:.1%} | {seconds:.2f} | {seconds / full_s:.2f}x | {passes:.0f} |")
    return "\n".join(lines) + "\n"


def _gap(a: int | None, b: int | None) -> float:
    """|a - b| in QF; a JND of None (every QF invisible) equals only None."""
    if a is None or b is None:
        return 0.0 if a is b else float("inf")
    return abs(a - b)


if __name__ == "__main__":
    main()
