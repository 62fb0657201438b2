"""Helpers of benchmarks/device/gpu_check.sh (device check of sgjnd; not part of the package).

Subcommands (each writes one JSON file and appends its key lines to --summary):
  probe   versions, providers, CPU flags, CUDA, TensorRT                     -> probe.json (merged into probe.txt)
  photos  copy the bundled sample / calibration photos into a folder (sgjnd.samples: needs scikit-image)
  cpu     encoder ms/patch: torch eager FP32, ORT CPU FP32, ORT CPU INT8 (U8S8), interleaved rounds, one process
  gpu     encoder ms/patch on CUDA: sgjnd torch backend (FP32) and raw torch (FP32, strict FP32, FP16/BF16 autocast)
  parity  torch CPU vs torch CUDA on the demo checkpoint: features/q/w on fixed patches, JND QF per sample photo
  e2e     the predictor end to end per 1920x1080 photo, per strategy: torch CUDA with device-resident rounds (exact
          JPEG on the GPU, uint8 input) vs host rounds (OpenCV JPEG; uint8 and float32 input), ORT CUDA where
          onnxruntime-gpu is installed, ORT CPU; stage breakdown, host->device bytes, JND

Every subcommand writes its JSON after each unit of work, so a timeout still leaves partial results.
Run by gpu_check.sh; by hand: python benchmarks/device/gpu_check.py SUBCOMMAND --help.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def _say(summary: Path | None, line: str) -> None:
    print(line, flush=True)
    if summary is not None:
        with open(summary, "a") as fh:
            fh.write(line + "\n")


def _cpu_flags() -> dict[str, Any]:
    flags: set[str] = set()
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8",
              "amx_bf16")
    return {"model": model, "logical_cpus": os.cpu_count(), **{f: f in flags for f in wanted}}


def _vnni_text(cpu: dict[str, Any]) -> str:
    have = [f for f in ("avx512_vnni", "avx_vnni", "amx_int8") if cpu.get(f)]
    return "VNNI: " + ("yes (" + ",".join(have) + ")" if have else "NO (AVX2-only int8 dot products)")


# -- probe -------------------------------------------------------------------------------------------------------
def cmd_probe(args: argparse.Namespace) -> int:
    info: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(), "cpu": _cpu_flags()}
    for name in ("numpy", "cv2", "skimage", "onnx", "onnxruntime", "onnxscript", "onnxslim", "onnxsim", "torch",
                 "tensorrt", "cuda", "pycuda", "matplotlib", "tqdm", "modelopt"):
        try:
            mod = __import__(name)
            info[name] = str(getattr(mod, "__version__", "present"))
        except Exception as exc:  # report whatever goes wrong
            info[name] = f"ABSENT ({type(exc).__name__}: {exc})"
    try:
        import onnxruntime as ort

        info["ort_providers"] = ort.get_available_providers()
        info["ort_device"] = ort.get_device()
    except Exception as exc:
        info["ort_providers"] = f"error {exc}"
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["torch_cuda_build"] = torch.version.cuda
        info["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            info["cuda_device"] = {"name": p.name, "sm": f"{p.major}.{p.minor}",
                                   "mem_gib": round(p.total_memory / 2**30, 1),
                                   "multiprocessors": p.multi_processor_count}
            info["cudnn"] = torch.backends.cudnn.version()
    except Exception as exc:
        info["cuda_available"] = f"error {exc}"
    try:
        from sgjnd.samples import sample_photos

        info["sample_photos"] = [p.name for p in sample_photos()]
    except Exception as exc:
        info["sample_photos"] = f"error {type(exc).__name__}: {exc}"
    _write(args.out, info)
    s = args.summary
    cpu = info["cpu"]
    _say(s, f"probe: {cpu['model']} x{cpu['logical_cpus']} | {_vnni_text(cpu)} | avx512f={cpu['avx512f']}")
    _say(s, f"probe: python {info['python']} torch {info['torch']} (cuda {info.get('torch_cuda_build')}) onnx "
            f"{info['onnx']} ort {info['onnxruntime']} providers={info.get('ort_providers')}")
    _say(s, f"probe: cuda_available={info.get('cuda_available')} device={info.get('cuda_device')} | tensorrt: "
            f"{info['tensorrt']} | onnxslim: {info['onnxslim']}")
    return 0


# -- photos ------------------------------------------------------------------------------------------------------
def cmd_photos(args: argparse.Namespace) -> int:
    try:
        from sgjnd import samples

        paths = samples.calibration_photos() if args.which == "calibration" else samples.sample_photos()
    except Exception as exc:
        print(f"photos: FAILED: no {args.which} photos from sgjnd.samples: {type(exc).__name__}: {exc}")
        return 1
    if not paths:
        print(f"photos: FAILED: sgjnd.samples found no {args.which} photos in scikit-image's data folder")
        return 1
    args.dest.mkdir(parents=True, exist_ok=True)
    for p in paths:
        shutil.copy2(p, args.dest / p.name)
    print(f"photos: {len(paths)} {args.which} photo(s) from scikit-image (sgjnd.samples) -> {args.dest}")
    return 0


# -- CPU timing --------------------------------------------------------------------------------------------------
def _integer_kernels(path: Path, threads: int) -> dict[str, Any]:
    try:
        from sgjnd.calibration.quantize import integer_kernels

        return {"source": "sgjnd.calibration.quantize.integer_kernels", **integer_kernels(path, threads=threads)}
    except Exception as exc:  # fall back to the same logic inline
        import collections
        import tempfile

        import onnx
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            opt = Path(tmp) / "o.onnx"
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            so.optimized_model_filepath = str(opt)
            so.intra_op_num_threads = threads
            ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
            ops = collections.Counter(n.op_type for n in onnx.load(str(opt)).graph.node)
        return {"source": f"inline fallback (sgjnd's failed: {exc})", "ops": dict(ops)}


def cmd_cpu(args: argparse.Namespace) -> int:
    import numpy as np

    from sgjnd.runtime.backends.registry import open_model

    t_start = time.perf_counter()
    budget = args.budget
    if budget is None:
        budget = float(os.environ["STEP_TIMEOUT"]) - 25 if os.environ.get("STEP_TIMEOUT") else 150.0
    deadline = t_start + budget
    s = args.summary
    threads_list = [int(t) for t in args.threads.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    cpu = _cpu_flags()
    result: dict[str, Any] = {
        "what": "sgjnd_r50 encoder ms/patch (median call / batch), UNTRAINED weights (speed only); interleaved rounds "
                "torch eager FP32 | ORT CPU FP32 encoder.onnx | ORT CPU INT8 encoder.int8-ort.onnx (U8S8 QDQ), "
                "one process",
        "cpu": cpu, "model_dir": str(args.model_dir), "checkpoint": str(args.ckpt), "rounds_max": args.rounds,
        "min_rounds": args.min_rounds, "budget_s": budget, "blocks": [], "errors": [],
    }
    try:
        import onnxruntime as ort
        import torch

        result["versions"] = {"torch": torch.__version__, "onnxruntime": ort.__version__}
    except Exception as exc:
        result["errors"].append(f"versions: {exc}")
    int8 = args.model_dir / "encoder.int8-ort.onnx"
    try:
        result["integer_kernels"] = _integer_kernels(int8, threads_list[0]) if int8.is_file() else "no int8-ort graph"
    except Exception as exc:
        result["integer_kernels"] = f"error {type(exc).__name__}: {exc}"
    _say(s, f"cpu: ORT INT8 kernels: {result['integer_kernels']}")
    _write(args.out, result)

    targets = [("torch/fp32", "torch", args.ckpt, "fp32"), ("ort/fp32", "onnxruntime", args.model_dir, "fp32"),
               ("ort/int8-ort", "onnxruntime", args.model_dir, "int8-ort")]
    rng = np.random.default_rng(0)
    for threads in threads_list:
        opened = []
        for name, backend, loc, prec in targets:
            try:
                opts: dict[str, Any] = {"threads": threads}
                if backend == "onnxruntime":
                    opts["providers"] = ("cpu",)
                t0 = time.perf_counter()
                m = open_model(backend, loc, precision=prec, **opts).__enter__()
                opened.append((name, m))
                print(f"cpu: opened {name} threads={threads} in {time.perf_counter() - t0:.1f}s: "
                      f"{m.encoder.description}")
            except Exception as exc:
                msg = f"open {name} threads={threads}: {type(exc).__name__}: {exc}"
                result["errors"].append(msg)
                _say(s, f"cpu: ERROR {msg}")
        for b in batches:
            if time.perf_counter() > deadline:
                _say(s, f"cpu: budget spent, skipping threads={threads} batch={b}")
                continue
            prev = [r for r in result["blocks"] if r["threads"] == threads and r["batch"] < b]
            if prev:  # from a smaller batch: warm-up + min rounds, every target, at that per-patch time
                est = sum(v["median"] for v in prev[-1]["ms_per_patch"].values()) * b * (args.min_rounds + 1) / 1e3
                if time.perf_counter() + est > deadline:
                    _say(s, f"cpu: skipping threads={threads} batch={b}: ~{est:.0f}s needed, "
                            f"{deadline - time.perf_counter():.0f}s of budget left")
                    continue
            x = rng.standard_normal((b, 3, 224, 224)).astype(np.float32)
            times: dict[str, list[float]] = {n: [] for n, _ in opened}
            live = list(opened)
            for name, m in list(live):  # warm-up (first-call allocations, ORT arenas, torch/oneDNN primitives)
                try:
                    m.encoder.infer({"patches": x})
                except Exception as exc:
                    result["errors"].append(f"{name} threads={threads} batch={b}: {type(exc).__name__}: {exc}")
                    _say(s, f"cpu: ERROR {name} threads={threads} batch={b}: {exc}")
                    live.remove((name, m))
            block_start = time.perf_counter()
            rounds = 0
            while live and rounds < args.rounds:
                for name, m in live:
                    time.sleep(0.02)  # untimed: let the other library's spinning worker threads go idle
                    t = time.perf_counter()
                    m.encoder.infer({"patches": x})
                    times[name].append((time.perf_counter() - t) * 1e3 / b)
                rounds += 1
                now = time.perf_counter()
                if now > deadline or (rounds >= args.min_rounds and now - block_start > args.max_seconds):
                    break
            row: dict[str, Any] = {"threads": threads, "batch": b, "rounds": rounds, "ms_per_patch": {}}
            for name, vals in times.items():
                if vals:
                    row["ms_per_patch"][name] = {"median": round(statistics.median(vals), 3),
                                                 "min": round(min(vals), 3), "all": [round(v, 3) for v in vals]}
            med = {n: v["median"] for n, v in row["ms_per_patch"].items()}
            ratios = {}
            if "ort/int8-ort" in med and "ort/fp32" in med:
                ratios["int8_vs_ort_fp32"] = round(med["ort/fp32"] / med["ort/int8-ort"], 3)
            if "ort/int8-ort" in med and "torch/fp32" in med:
                ratios["int8_vs_torch"] = round(med["torch/fp32"] / med["ort/int8-ort"], 3)
            if "ort/fp32" in med and "torch/fp32" in med:
                ratios["ort_fp32_vs_torch"] = round(med["torch/fp32"] / med["ort/fp32"], 3)
            row["speedups"] = ratios
            result["blocks"].append(row)
            _write(args.out, result)
            parts = " | ".join(f"{n} {v:.1f}" for n, v in med.items())
            _say(s, f"cpu: threads={threads:>2} batch={b:>2} ({rounds} rounds) ms/patch: {parts} | speed-up "
                    + ", ".join(f"{k} x{v:.2f}" for k, v in ratios.items()))
        for _, m in opened:
            with contextlib.suppress(Exception):
                m.__exit__(None, None, None)
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    _write(args.out, result)
    return 0 if result["blocks"] else 1


# -- GPU timing --------------------------------------------------------------------------------------------------
def _cuda_or_skip(args: argparse.Namespace, out: dict[str, Any]) -> str | None:
    """The device to use, or None after writing a skip record (no CUDA and no --dry-device)."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    reason = f"torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False)"
    if args.dry_device:
        out["DRY_RUN"] = f"{reason}; code path exercised on {args.dry_device} for a local test, NOT a GPU figure"
        _say(args.summary, f"{args.name}: SKIPPED on GPU: {reason}; DRY RUN of the code on {args.dry_device} follows")
        return args.dry_device
    out["skipped"] = reason
    _write(args.out, out)
    _say(args.summary, f"{args.name}: SKIPPED: {reason}")
    return None


def _sync(torch: Any, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def cmd_gpu(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    s = args.summary
    out: dict[str, Any] = {"what": "sgjnd_r50 encoder ms/patch on the GPU, UNTRAINED weights (speed only)",
                           "rows": [], "errors": []}
    device = _cuda_or_skip(args, out)
    if device is None:
        return 3
    batches = [int(b) for b in args.batches.split(",")]
    out["device"] = torch.cuda.get_device_name(0) if device == "cuda" else device
    out["torch"] = torch.__version__
    out["default_flags"] = {"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
                            "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                            "float32_matmul_precision": torch.get_float32_matmul_precision(),
                            "cudnn.benchmark": torch.backends.cudnn.benchmark}
    default_tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)

    def set_tf32(cudnn: bool, matmul: bool) -> None:
        torch.backends.cudnn.allow_tf32 = cudnn
        torch.backends.cuda.matmul.allow_tf32 = matmul

    def record(kind: str, variant: str, b: int, ms_calls: list[float], note: str) -> None:
        med = statistics.median(ms_calls)
        row = {"kind": kind, "variant": variant, "batch": b, "calls": len(ms_calls),
               "ms_per_call_median": round(med, 3), "ms_per_call_min": round(min(ms_calls), 3),
               "ms_per_patch": round(med / b, 4),
               "patches_per_s": round(b * len(ms_calls) / (sum(ms_calls) / 1e3), 1), "note": note}
        out["rows"].append(row)
        _write(args.out, out)
        _say(s, f"gpu: {kind:<13} {variant:<22} batch {b:>3}: {row['ms_per_patch']:8.3f} ms/patch "
                f"({med:7.2f} ms/call, {row['patches_per_s']:8.0f} patches/s)")

    # 1. The sgjnd torch backend: numpy in, numpy out; infer() copies H2D, runs, copies D2H (a sync), so the
    #    interval holds the copies and the compute.
    from sgjnd.runtime.backends.registry import open_model

    rng = np.random.default_rng(0)
    for variant, flags in (("fp32 (torch defaults)", default_tf32), ("fp32 strict (no TF32)", (False, False))):
        try:
            set_tf32(*flags)
            with open_model("torch", args.ckpt, device=device) as m:
                for b in batches:
                    x = rng.standard_normal((b, 3, 224, 224)).astype(np.float32)
                    for _ in range(args.warmup):
                        m.encoder.infer({"patches": x})
                    calls = []
                    t_end = time.perf_counter() + args.max_seconds
                    while len(calls) < args.iters and (len(calls) < args.min_iters or time.perf_counter() < t_end):
                        t = time.perf_counter()
                        m.encoder.infer({"patches": x})
                        calls.append((time.perf_counter() - t) * 1e3)
                    record("sgjnd-backend", variant, b, calls,
                           "open_model('torch', ckpt, device='cuda'); infer() incl. H2D+D2H copies; TF32 flags "
                           f"cudnn={flags[0]} matmul={flags[1]}")
        except Exception as exc:
            out["errors"].append(f"backend {variant}: {type(exc).__name__}: {exc}")
            _say(s, f"gpu: ERROR backend {variant}: {type(exc).__name__}: {exc}")
    set_tf32(*default_tf32)

    # 2. Raw torch on the network (sgjnd.model load_checkpoint): input already on the device, CUDA events.
    try:
        from sgjnd.model.checkpoint import load_checkpoint

        net = load_checkpoint(args.ckpt).to(device).eval()
        enc = net.encoder
        variants = [("fp32 (torch defaults)", default_tf32, None), ("fp32 strict (no TF32)", (False, False), None),
                    ("fp16 autocast", default_tf32, torch.float16), ("bf16 autocast", default_tf32, torch.bfloat16)]
        for variant, flags, dtype in variants:
            set_tf32(*flags)
            for b in batches:
                try:
                    x = torch.randn(b, 3, 224, 224, device=device)

                    def step(x: Any = x, dtype: Any = dtype) -> Any:
                        with torch.inference_mode():
                            if dtype is None:
                                return enc(x)
                            with torch.autocast(device_type=device.split(":")[0], dtype=dtype):
                                return enc(x)

                    for _ in range(args.warmup):
                        step()
                    _sync(torch, device)
                    calls = []
                    t_end = time.perf_counter() + args.max_seconds
                    while len(calls) < args.iters and (len(calls) < args.min_iters or time.perf_counter() < t_end):
                        if device.startswith("cuda"):
                            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                            e0.record()
                            step()
                            e1.record()
                            e1.synchronize()
                            calls.append(e0.elapsed_time(e1))
                        else:
                            t = time.perf_counter()
                            step()
                            calls.append((time.perf_counter() - t) * 1e3)
                    record("raw-torch", variant, b, calls,
                           "net.encoder(x) on a device tensor under inference_mode, CUDA events; no copies")
                except Exception as exc:
                    out["errors"].append(f"raw {variant} batch {b}: {type(exc).__name__}: {exc}")
                    _say(s, f"gpu: ERROR raw {variant} batch {b}: {type(exc).__name__}: {exc}")
        set_tf32(*default_tf32)
        if device.startswith("cuda"):
            out["max_memory_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    except Exception as exc:
        out["errors"].append(f"raw torch: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        _say(s, f"gpu: ERROR raw torch: {type(exc).__name__}: {exc}")
    _write(args.out, out)
    return 0 if out["rows"] else 1


# -- parity ------------------------------------------------------------------------------------------------------
def cmd_parity(args: argparse.Namespace) -> int:
    import torch

    from sgjnd.compare.tensors import compare_outputs, tolerances_for
    from sgjnd.runtime.backends.registry import open_model
    from sgjnd.runtime.decode import decode_image
    from sgjnd.runtime.pairs import PairMaker, make_pair_set
    from sgjnd.runtime.predictor import JNDPredictor, PredictConfig
    from sgjnd.runtime.search import SearchConfig

    s = args.summary
    out: dict[str, Any] = {"what": "torch CPU vs torch CUDA, same checkpoint, same PredictConfig",
                           "checkpoint": str(args.ckpt), "errors": []}
    device = _cuda_or_skip(args, out)
    if device is None:
        return 3
    try:
        from sgjnd.samples import sample_photos

        photos = sample_photos()[: args.photos]
    except Exception as exc:
        out["errors"].append(f"sample photos: {type(exc).__name__}: {exc}")
        _write(args.out, out)
        _say(s, f"parity: FAILED: no sample photos from sgjnd.samples: {type(exc).__name__}: {exc}")
        return 1
    config = PredictConfig(search=SearchConfig(strategy=args.search), max_patches=args.max_patches)
    out["predict_config"] = {"search": args.search, "max_patches": args.max_patches,
                             "batch_size": "backend default (16)"}
    out["cuda_flags"] = {"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
                         "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32}
    decoded = [decode_image(p) for p in photos]
    default_tf32 = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    with open_model("torch", args.ckpt, device="cpu") as cpu_m, open_model("torch", args.ckpt, device=device) as gpu_m:
        out["cpu_backend"], out["gpu_backend"] = cpu_m.encoder.description, gpu_m.encoder.description
        out["weights"] = cpu_m.weights
        # 1. Tensors: identical patches (reference + JPEG QF 20/50/80) through both encoders; heads on CPU features.
        try:
            pixel_maker = PairMaker(cpu_m.model.with_encoder_input("uint8"))
            inputs = make_pair_set(pixel_maker, [d.bgr for d in decoded], (20, 50, 80),
                                   max_patches=args.tensor_patches)
            enc_in = {"patches": PairMaker(cpu_m.model).encoder_input(inputs.patches)}  # each as its graph takes it
            gpu_in = {"patches": PairMaker(gpu_m.model).encoder_input(inputs.patches)}
            f_cpu = cpu_m.encoder.infer(enc_in)["features"]
            f_ref, f_dis = f_cpu[inputs.ref_index], f_cpu[inputs.n_ref:]
            h_cpu = cpu_m.head.infer({"f_ref": f_ref, "f_dis": f_dis})
            out["tensor_inputs"] = f"{len(inputs.patches)} patches ({inputs.n_ref} reference + JPEG QF 20/50/80)"
            out["tensors"] = {}
            for variant, flags in (("torch defaults", default_tf32), ("strict fp32 (no TF32)", (False, False))):
                torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags
                f_gpu = gpu_m.encoder.infer(gpu_in)["features"]
                h_gpu = gpu_m.head.infer({"f_ref": f_ref, "f_dis": f_dis})
                tol = tolerances_for("fp32")
                comps = compare_outputs({"features": f_cpu}, {"features": f_gpu}, tol)
                comps += compare_outputs(h_cpu, h_gpu, tol)
                out["tensors"][variant] = [c.to_dict() for c in comps]
                _say(s, f"parity: tensors [{variant}] " + "; ".join(
                    f"{c.name} max|Δ|={c.max_abs:.2e} cos={c.cosine:.7f} {'PASS' if c.passed else 'FAIL'}"
                    for c in comps))
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = default_tf32
            _write(args.out, out)
        except Exception as exc:
            out["errors"].append(f"tensors: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            _say(s, f"parity: ERROR tensors: {type(exc).__name__}: {exc}")
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = default_tf32
        # 2. JND per photo, CPU and GPU predictor (GPU with torch's default flags), written after each photo.
        out["jnd"] = []
        preds = {"cpu": JNDPredictor(cpu_m, config), "gpu": JNDPredictor(gpu_m, config)}
        for path, d in zip(photos, decoded, strict=True):
            row: dict[str, Any] = {"photo": path.name}
            for key, pred in preds.items():
                try:
                    t = time.perf_counter()
                    r = pred.predict(d, source=path.name)
                    every = max(1, len(r.scores) // 12)
                    row[key] = {"jnd_qf": r.jnd_qf, "recommended_qf": r.recommended_qf, "passes": r.encoder_passes,
                                "seconds": round(time.perf_counter() - t, 2),
                                "inference_ms": round(r.timings_ms.get("inference", float("nan")), 1),
                                "scores_at": {q: round(v, 5) for q, v in list(r.scores.items())[::every]}}
                except Exception as exc:
                    row[key] = {"error": f"{type(exc).__name__}: {exc}"}
            if "jnd_qf" in row.get("cpu", {}) and "jnd_qf" in row.get("gpu", {}):
                row["same_jnd"] = row["cpu"]["jnd_qf"] == row["gpu"]["jnd_qf"]
            out["jnd"].append(row)
            _write(args.out, out)
            c, g = row.get("cpu", {}), row.get("gpu", {})
            _say(s, f"parity: {path.name:<22} JND QF cpu={c.get('jnd_qf', c.get('error'))} "
                    f"gpu={g.get('jnd_qf', g.get('error'))} (passes {c.get('passes')}, cpu {c.get('seconds')} s, "
                    f"gpu {g.get('seconds')} s)")
    same = [r.get("same_jnd") for r in out["jnd"]]
    out["all_same_jnd"] = bool(same) and all(same)
    _write(args.out, out)
    _say(s, f"parity: JND QF identical on {sum(bool(x) for x in same)}/{len(same)} photo(s) ({out['weights'][:60]}...)")
    return 0


# -- e2e ---------------------------------------------------------------------------------------------------------
def _photo_1080p(path: Path) -> Any:
    """A sample photo resized to 1920x1080 (INTER_CUBIC): the size the issue's figures are per."""
    import cv2

    from sgjnd.runtime.decode import decode_image

    return cv2.resize(decode_image(path).bgr, (1920, 1080), interpolation=cv2.INTER_CUBIC)


def cmd_e2e(args: argparse.Namespace) -> int:
    import torch

    from sgjnd.runtime.backends.registry import open_model
    from sgjnd.runtime.predictor import JNDPredictor, PredictConfig
    from sgjnd.runtime.search import SearchConfig

    s = args.summary
    out: dict[str, Any] = {"what": "predictor end to end per 1920x1080 photo (sample photos resized, INTER_CUBIC)",
                           "checkpoint": str(args.ckpt), "model_dir": str(args.model_dir), "rows": [], "errors": []}
    device = _cuda_or_skip(args, out)
    if device is None:
        return 3
    from sgjnd.samples import sample_photos

    photos = [(p.name, _photo_1080p(p)) for p in sample_photos()[: args.photos]]
    variants: list[tuple[str, str, Path, dict[str, Any], str]] = [
        # (label, backend, location, options, jpeg)
        ("torch-cuda uint8 device-rounds", "torch", args.ckpt, {"device": device, "encoder_input": "uint8"}, "auto"),
        ("torch-cuda uint8 host-rounds opencv", "torch", args.ckpt, {"device": device, "encoder_input": "uint8"},
         "opencv"),
        ("torch-cuda float32 host-rounds opencv (before)", "torch", args.ckpt,
         {"device": device, "encoder_input": "float32"}, "opencv"),
    ]
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        for precision in ("fp32", "fp16"):
            variants.append((f"ort-cuda {precision} device-rounds", "onnxruntime", args.model_dir,
                             {"providers": ("cuda",), "precision": precision}, "auto"))
            variants.append((f"ort-cuda {precision} host-rounds opencv", "onnxruntime", args.model_dir,
                             {"providers": ("cuda",), "precision": precision}, "opencv"))
    else:
        out["errors"].append("ORT CUDA: not measured: this onnxruntime has no CUDAExecutionProvider "
                             "(pip install onnxruntime-gpu==1.31.1)")
        _say(s, "e2e: ORT CUDA not measured: no CUDAExecutionProvider in this onnxruntime")
    variants.append(("ort-cpu fp32 host-rounds opencv", "onnxruntime", args.model_dir,
                     {"providers": ("cpu",), "threads": os.cpu_count()}, "opencv"))
    strategies = args.strategies.split(",")
    for label, backend, location, options, jpeg in variants:
        for strategy in strategies:
            if label.startswith("ort-cpu") and strategy == "full":
                continue  # minutes per photo on a CPU: the coarse-to-fine row is the CPU figure
            try:
                with open_model(backend, location, **options) as models:
                    config = PredictConfig(search=SearchConfig(strategy=strategy), max_patches=args.max_patches,
                                           jpeg=jpeg)
                    predictor = JNDPredictor(models, config)
                    predictor.predict(_decoded(photos[0][1], "warm-up"))  # first call: kernels, allocator, caches
                    for name, bgr in photos:
                        _sync(torch, device)
                        t = time.perf_counter()
                        r = predictor.predict(_decoded(bgr, name), source=name)
                        _sync(torch, device)
                        row = {"variant": label, "strategy": strategy, "photo": name,
                               "wall_ms": round((time.perf_counter() - t) * 1e3, 1),
                               "device_rounds": predictor.device_rounds is not None,
                               "stages_ms": {k: round(v, 1) for k, v in r.timings_ms.items()},
                               "host_input_bytes": r.host_input_bytes, "encoder_passes": r.encoder_passes,
                               "jnd_qf": r.jnd_qf, "backend": r.backend}
                        out["rows"].append(row)
                        _write(args.out, out)
                        _say(s, f"e2e: {label:<46} {strategy:<14} {name:<22} {row['wall_ms']:>9.1f} ms "
                                f"h2d {r.host_input_bytes / 2**20:8.1f} MiB passes {r.encoder_passes:>5} "
                                f"JND {r.jnd_qf}  jpeg {r.timings_ms['jpeg']:.0f} inf {r.timings_ms['inference']:.0f} "
                                f"rounds on {'device' if row['device_rounds'] else 'host'}")
            except Exception as exc:
                out["errors"].append(f"{label} {strategy}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
                _write(args.out, out)
                _say(s, f"e2e: ERROR {label} {strategy}: {type(exc).__name__}: {str(exc)[:300]}")
    _write(args.out, out)
    return 0


def _decoded(bgr: Any, name: str) -> Any:
    from sgjnd.runtime.decode import DecodedImage

    return DecodedImage(bgr=bgr, source=name, format="array", mode="rgb8")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp: argparse.ArgumentParser, out: bool = True) -> None:
        if out:
            sp.add_argument("--out", type=Path, required=True)
        sp.add_argument("--summary", type=Path, default=None)

    sp = sub.add_parser("probe")
    common(sp)
    sp = sub.add_parser("photos")
    common(sp, out=False)
    sp.add_argument("which", choices=("sample", "calibration"))
    sp.add_argument("dest", type=Path)
    sp = sub.add_parser("cpu")
    common(sp)
    sp.add_argument("--model-dir", type=Path, required=True)
    sp.add_argument("--ckpt", type=Path, required=True)
    sp.add_argument("--threads", default="16,2")
    sp.add_argument("--batches", default="1,16")
    sp.add_argument("--rounds", type=int, default=7)
    sp.add_argument("--min-rounds", type=int, default=3)
    sp.add_argument("--max-seconds", type=float, default=20.0, help="per (threads, batch) block, after min rounds")
    sp.add_argument("--budget", type=float, default=None,
                    help="seconds for the whole command, later blocks skipped (default: $STEP_TIMEOUT - 25, else 150)")
    for name in ("gpu", "parity"):
        sp = sub.add_parser(name)
        common(sp)
        sp.add_argument("--ckpt", type=Path, required=True)
        sp.add_argument("--dry-device", default=os.environ.get("DRY_DEVICE") or None,
                        help="without CUDA, exercise the code on this device (local test only)")
    gp = sub.choices["gpu"]
    gp.add_argument("--batches", default="16,64")
    gp.add_argument("--warmup", type=int, default=3)
    gp.add_argument("--iters", type=int, default=30)
    gp.add_argument("--min-iters", type=int, default=3)
    gp.add_argument("--max-seconds", type=float, default=4.0)
    pp = sub.choices["parity"]
    pp.add_argument("--search", default="full")
    pp.add_argument("--max-patches", type=int, default=32)
    pp.add_argument("--photos", type=int, default=5)
    pp.add_argument("--tensor-patches", type=int, default=4)
    ep = sub.add_parser("e2e")
    common(ep)
    ep.add_argument("--ckpt", type=Path, required=True)
    ep.add_argument("--model-dir", type=Path, required=True)
    ep.add_argument("--strategies", default="coarse-to-fine,full")
    ep.add_argument("--max-patches", type=int, default=32)
    ep.add_argument("--photos", type=int, default=2)
    ep.add_argument("--dry-device", default=os.environ.get("DRY_DEVICE") or None,
                    help="without CUDA, exercise the code on this device (local test only)")
    args = p.parse_args()
    args.name = args.cmd
    commands = {"probe": cmd_probe, "photos": cmd_photos, "cpu": cmd_cpu, "gpu": cmd_gpu, "parity": cmd_parity,
                "e2e": cmd_e2e}
    return commands[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
