"""The JPEG stage measured on its own: one photo's trials for a whole `full` search, made each way the runtime can.

Rows (suite ``jpeg``): ``jpeg/opencv`` (libjpeg through OpenCV, one core, the CPU predictor's path),
``jpeg/exact-numpy`` (the integer array pipeline on the CPU) and ``jpeg/exact-cuda`` (the same pipeline on a CUDA
device through torch, results copied back; SKIPPED with the reason where there is none). Each makes the patches of
every QF of a full search (normalised encoder input included) for the same photo and grid, so the rows compare side
by side in one run; ``trial_ms`` is per patch and QF.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sgjnd.bench.results import Measurement
from sgjnd.runtime.pairs import GriddedImage, PairMaker
from sgjnd.runtime.search import SearchConfig
from sgjnd.spec import ModelSpec


def cuda_unavailable() -> str | None:
    """Why the exact pipeline cannot run on a CUDA device here, or None."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (pip install 'sgjnd[torch]')"
    import torch

    if not torch.cuda.is_available():
        return f"no CUDA device visible to torch {torch.__version__}"
    return None


def measure_jpeg_stage(
    spec: ModelSpec,
    images: Sequence[Path],
    max_patches: int,
    say: Callable[[str], None],
    *,
    qfs: Sequence[int] | None = None,
) -> list[Measurement]:
    """The JPEG rows for the first photo of ``images`` (``max_patches`` patches; ``qfs``: a full search's)."""
    from sgjnd.runtime.decode import decode_image

    if not images:
        return [Measurement(suite="jpeg", target="jpeg/opencv", status="skipped", reason="no photos to measure")]
    qfs = list(qfs if qfs is not None else SearchConfig().qfs)
    photo = images[0]
    bgr = decode_image(photo).bgr
    makers: dict[str, tuple[str, Callable[[], PairMaker], str | None]] = {
        "opencv": ("cpu", lambda: PairMaker(spec), None),
        "exact-numpy": ("cpu", lambda: PairMaker(spec, trials="exact"), None),
        "exact-cuda": ("gpu", lambda: PairMaker(spec, trials="exact", device="cuda"), cuda_unavailable()),
    }
    rows = []
    for name, (device, make, unavailable) in makers.items():
        target = f"jpeg/{name}"
        if unavailable is not None:
            rows.append(Measurement(suite="jpeg", target=target, device=device, status="skipped", reason=unavailable))
            continue
        maker = make()
        image = maker.grid(bgr, max_patches=max_patches)
        say(f"jpeg: {name}, {len(qfs)} QFs x {len(image)} patches of {photo.name}")
        seconds = _time_round(maker, image, qfs)
        trials = len(qfs) * len(image)
        rows.append(
            Measurement(
                suite="jpeg",
                target=target,
                device=device,
                image=photo.name,
                patches=len(image),
                n=trials,
                total_ms=seconds * 1e3,
                trial_ms=seconds * 1e3 / trials,
                note=f"all {len(qfs)} QFs of a full search x {len(image)} patches, normalised encoder input included",
            )
        )
    return rows


def _time_round(maker: PairMaker, image: GriddedImage, qfs: Sequence[int]) -> float:
    """Seconds to make every QF's encoder input, after one warm-up QF (first-call costs: CUDA context, tables)."""
    for _ in maker.distorted_stream(image, qfs[:1]):
        pass
    start = time.perf_counter()
    for _ in maker.distorted_stream(image, qfs):
        pass
    return time.perf_counter() - start
