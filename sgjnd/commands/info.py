"""`sgjnd info`: versions, CPU features, available backends and devices."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "info",
        help="show versions, CPU features, backends and devices",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from sgjnd import __version__
    from sgjnd.environment import environment

    env = environment()
    env["sgjnd"] = __version__
    if args.json:
        print(json.dumps(env, indent=2))
        return 0
    cpu = env["cpu"]
    print(f"sgjnd {__version__} on Python {env['python']} ({env['platform']})")
    print(
        f"CPU: {cpu['model']}, {cpu['cores']} cores, flags: {', '.join(cpu['flags']) or 'none of interest'}"
        f"{'' if cpu['vnni'] else ' (no VNNI: INT8 gives little speed-up on ONNX Runtime CPU)'}"
    )
    print(
        f"CPU matrix engines: INT8 dot products (VNNI) {'yes' if cpu['vnni'] else 'no'}, BF16 (AVX-512-BF16/AMX) "
        f"{'yes' if cpu['bf16'] else 'no'}, AMX {'yes' if cpu['amx'] else 'no'}"
    )
    ov = env["openvino_cpu"]
    if "capabilities" in ov:
        bf16 = "BF16" in ov["capabilities"]
        print(f"OpenVINO {ov['version']} CPU capabilities: {', '.join(ov['capabilities'])} (openvino precisions here: "
              f"fp32, int8-ort, int8{', bf16' if bf16 else '; no bf16: the CPU lacks AVX-512-BF16 and AMX'})")
    else:
        print(f"OpenVINO CPU: {ov['reason']}")
    print("libraries:")
    for name, version in env["libraries"].items():
        print(f"  {name:<24} {version or '-'}")
    print("backends:")
    for name, status in env["backends"].items():
        print(f"  {name:<24} {status}")
    if env["onnxruntime_providers"]:
        print(f"ONNX Runtime providers: {', '.join(env['onnxruntime_providers'])}")
    return 0
