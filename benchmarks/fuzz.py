"""Longer fuzzing of decode -> patch -> predict than CI's quick pass (tests/test_fuzz.py), with fresh examples.

    python benchmarks/fuzz.py --examples 5000
    python benchmarks/fuzz.py --examples 20000 --model onnx-tiny/ --seed 7 --save-failure crash.bin

Uses the property, seeds and mutations of tests/test_fuzz.py, the tiny model on ONNX Runtime (exported into a
temporary folder unless --model names an export), and prints how the examples ended (ok, or which SgjndError). Exits
1 with the shrunk input when any other exception escapes: that is a bug.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the checkout's sgjnd and the test's fuzzing pieces

import test_fuzz  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402


def tiny_model(folder: Path) -> Path:
    """Export the untrained tiny model (seed 0) to ONNX in ``folder``."""
    from sgjnd.export.onnx import onnx_from_checkpoint
    from sgjnd.model import create_model, save_checkpoint

    ckpt = folder / "tiny.pt"
    save_checkpoint(create_model("sgjnd_tiny", seed=0), ckpt, weights="UNTRAINED: seed 0")
    return onnx_from_checkpoint(ckpt, folder / "model").out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=2000, help="examples to run")
    parser.add_argument("--model", type=Path, help="an ONNX export of sgjnd_tiny (default: export one now)")
    parser.add_argument("--seed", type=int, help="hypothesis seed, to repeat a run (default: random)")
    parser.add_argument("--save-failure", type=Path, help="write the bytes of a failing input here")
    args = parser.parse_args(argv)
    if args.examples < 1:
        parser.error("--examples must be at least 1")

    from sgjnd.runtime.backends.registry import open_model
    from sgjnd.runtime.predictor import JNDPredictor

    counts: collections.Counter[str] = collections.Counter()
    by_seed: collections.Counter[str] = collections.Counter()
    last: list[bytes] = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or tiny_model(Path(tmp))
        with open_model("onnxruntime", model_dir, threads=1) as models:
            predictor = JNDPredictor(models, test_fuzz.FUZZ_CONFIG)

            @settings(
                max_examples=args.examples,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(example=test_fuzz.fuzz_inputs())
            def prop(example: tuple[str, bytes]) -> None:
                last[:] = [example[1]]
                by_seed[example[0]] += 1
                counts[test_fuzz.check_one(predictor, example[1])] += 1

            if args.seed is not None:
                prop = __import__("hypothesis").seed(args.seed)(prop)
            start = time.perf_counter()
            try:
                prop()
            except Exception as exc:
                print(f"BUG: {type(exc).__name__}: {exc}", file=sys.stderr)
                if args.save_failure and last:
                    args.save_failure.write_bytes(last[0])
                    print(f"the failing input ({len(last[0])} bytes) is in {args.save_failure}", file=sys.stderr)
                raise
            seconds = time.perf_counter() - start
    total = sum(counts.values())
    print(f"{total} examples in {seconds:.1f} s ({total / seconds:.1f}/s); no exception other than SgjndError")
    for outcome, n in counts.most_common():
        print(f"  {outcome:<20} {n:>7}  {n / total:6.1%}")
    print(f"seeds used: {len(by_seed)} of {len(test_fuzz.seeds())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
