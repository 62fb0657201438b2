"""The CLI's structure (issue 16): subcommands import only the shared ``_args`` module, never each other, and the
library never imports them; a default that the library's config holds comes from that config; a subcommand that
fails to load is reported, never silently left out."""

from __future__ import annotations

import argparse
import ast
import importlib
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from sgjnd import cli
from sgjnd.calibration.pipeline import AUTO_HOLDOUT_MIN_IMAGES, CalibrateConfig
from sgjnd.calibration.quantize import QuantizeConfig
from sgjnd.calibration.reader import ReaderConfig
from sgjnd.compress import CompressConfig
from sgjnd.data.labels import LabelConfig
from sgjnd.engine_spec import BuildConfig
from sgjnd.export.onnx import DEFAULT_MAX_BATCH, MIN_OPSET
from sgjnd.labels.oracle import ORACLES
from sgjnd.labels.proxy import ProxyConfig
from sgjnd.runtime.backends.ort import DEFAULT_PROVIDERS
from sgjnd.runtime.predictor import PredictConfig
from sgjnd.runtime.search import SearchConfig
from sgjnd.serve.config import ServeConfig, ServeLimits

PACKAGE = Path(cli.__file__).resolve().parent
COMMANDS_DIR = PACKAGE / "commands"
SHARED = "sgjnd.commands._args"


# -- (a) who imports whom -------------------------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, name: str | None = None) -> set[str]:
    """Every module a file imports, anywhere in it (lazy imports inside functions included), as absolute names;
    ``from X import y`` counts as both ``X`` and ``X.y`` (y may be a submodule). ``name``: the file's module."""
    name = name or _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _is_commands(module: str) -> bool:
    return module == "sgjnd.commands" or module.startswith("sgjnd.commands.")


def test_the_ast_check_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f():\n    from .predict import run\n    from . import serve\n    import sgjnd.commands.init\n"
    )
    found = imported_modules(probe, "sgjnd.commands.probe")
    assert {"sgjnd.commands.predict", "sgjnd.commands.serve", "sgjnd.commands.init"} <= found


def test_no_command_module_imports_another() -> None:
    offenders = {}
    for path in sorted(COMMANDS_DIR.glob("*.py")):
        own = _module_name(path)
        others = {
            m
            for m in imported_modules(path)
            if _is_commands(m)
            and m not in ("sgjnd.commands", SHARED, f"{SHARED}.__init__", own)
            and not m.startswith(f"{SHARED}.")  # names imported from _args
        }
        if others:
            offenders[path.name] = sorted(others)
    assert offenders == {}, f"command modules import each other (only {SHARED} is shared): {offenders}"


def test_the_library_never_imports_the_commands() -> None:
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(COMMANDS_DIR) or path == PACKAGE / "cli.py":
            continue
        bad = sorted(m for m in imported_modules(path) if _is_commands(m))
        if bad:
            offenders[str(path.relative_to(PACKAGE))] = bad
    assert offenders == {}, f"library modules import sgjnd.commands: {offenders}"


# -- (b) defaults come from the library's configs --------------------------------------------------------------------


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


_SEARCH, _PREDICT, _SERVE, _LIMITS = SearchConfig(), PredictConfig(), ServeConfig("onnxruntime", Path()), ServeLimits()
_PREDICT_DEFAULTS = {
    "search": _SEARCH.strategy,
    "window": _SEARCH.window,
    "threshold": _SEARCH.threshold,
    "min_qf": _SEARCH.qfs[0],
    "max_qf": _SEARCH.qfs[-1],
    "max_patches": _PREDICT.max_patches,
    "stride": _PREDICT.stride,
    "batch_size": _PREDICT.batch_size,
    "max_pixels": _PREDICT.max_pixels,
}


def _job_defaults() -> dict[str, Any]:
    try:
        from sgjnd.jobs.runner import JobConfig
    except ImportError:  # before the jobs package split
        from sgjnd.jobs import JobConfig
    jobs = JobConfig()
    return {"workers": jobs.workers, "prefetch": jobs.prefetch}


_CALIBRATE, _QUANTIZE, _READER = CalibrateConfig(), QuantizeConfig(), ReaderConfig()
_COMPRESS, _BUILD, _LABELS, _PROXY = CompressConfig(), BuildConfig(), LabelConfig(), ProxyConfig()

CONFIG_DEFAULTS: dict[str, dict[str, Any]] = {
    "predict": {**_PREDICT_DEFAULTS, **_job_defaults()},
    "compress": {
        **_PREDICT_DEFAULTS,
        **_job_defaults(),
        "margin": _COMPRESS.margin,
        "min_q": _COMPRESS.min_q,
        "max_q": _COMPRESS.max_q,
        "baseline_q": _COMPRESS.baseline_q,
    },
    "evaluate": {**_PREDICT_DEFAULTS, "label": _LABELS.method, "sur_p": _LABELS.p},
    "serve": {
        **_PREDICT_DEFAULTS,
        "max_batch": _SERVE.max_batch,
        "max_delay_ms": _SERVE.max_delay_ms,
        "max_body_bytes": _LIMITS.max_body_bytes,
        "workers": _LIMITS.workers,
        "queue": _LIMITS.queue,
        "timeout": _LIMITS.timeout_s,
        "header_timeout": _LIMITS.header_timeout_s,
        "keep_alive": _LIMITS.keep_alive_s,
        "max_connections": _LIMITS.max_connections,
    },
    # compare keeps its own, cheaper task level (search and max_patches): the rest is predict's.
    "compare": {k: v for k, v in _PREDICT_DEFAULTS.items() if k not in ("search", "max_patches")},
    "export": {"opset": MIN_OPSET, "max_batch": DEFAULT_MAX_BATCH},
    "build": {
        "precision": _BUILD.precision,
        "runtime": _BUILD.runtime,
        "compute_capability": ",".join(_BUILD.compute_capabilities),
        "batch": str(_BUILD.batch),
        "workspace": _BUILD.workspace_gib,
        "opt_level": _BUILD.opt_level,
        "timing_cache": _BUILD.timing_cache,
        "hardware_compatibility": _BUILD.hardware_compatibility,
    },
    "calibrate": {
        "target": _CALIBRATE.target,
        "head": _CALIBRATE.head,
        "report_patches": _CALIBRATE.report_patches,
        "threads": _CALIBRATE.threads,
        "method": _QUANTIZE.method,
        "reduce_range": _QUANTIZE.reduce_range,
        "num_patches": _READER.num_patches,
        "reference_share": _READER.reference_share,
        "patches_per_image": _READER.patches_per_image,
        "min_qf": _READER.qf_min,
        "max_qf": _READER.qf_max,
        "seed": _READER.seed,
    },
    "label": {
        "oracle": _PROXY.oracle,
        "threshold": _PROXY.threshold,
        "min_qf": _PROXY.qfs[0],
        "max_qf": _PROXY.qfs[-1],
        "qf_step": _PROXY.coarse_step,
        "patch_size": _PROXY.patch_size,
        "max_patches": _PROXY.max_patches,
        "subsampling": _PROXY.jpeg.subsampling,
    },
}
"""Per subcommand, each option's destination and the library config's default it must have."""


@pytest.mark.parametrize(
    ("command", "dest"), [(c, d) for c, table in CONFIG_DEFAULTS.items() for d in table], ids=lambda x: str(x)
)
def test_default_comes_from_the_library_config(command: str, dest: str) -> None:
    parser = subparsers()[command]
    assert any(a.dest == dest for a in parser._actions), f"sgjnd {command} has no option for {dest}"
    assert parser.get_default(dest) == CONFIG_DEFAULTS[command][dest]


def test_minimal_command_lines_give_the_library_configs() -> None:
    from sgjnd.commands import build
    from sgjnd.commands._args import job_config_from_args, predict_config_from_args

    parsers = cli.build_parser()
    predict = parsers.parse_args(["predict", "photo.jpg"])
    assert predict_config_from_args(predict) == PredictConfig()
    assert {"workers": job_config_from_args(predict).workers, "prefetch": job_config_from_args(predict).prefetch} == (
        _job_defaults()
    )
    assert build.config_from_args(parsers.parse_args(["build", "models/r50"])) == BuildConfig()


def test_help_strings_quote_the_library_values() -> None:
    commands = subparsers()
    label_help = commands["label"].format_help()
    for oracle in ORACLES.values():
        assert f"{oracle.default_threshold:g}" in label_help
    calibrate_help = " ".join(commands["calibrate"].format_help().split())
    assert f"if it has {AUTO_HOLDOUT_MIN_IMAGES} or more" in calibrate_help
    predict_help = " ".join(commands["predict"].format_help().split())
    assert f"default: {','.join(DEFAULT_PROVIDERS)}" in predict_help


# -- (c) a subcommand that cannot be loaded --------------------------------------------------------------------------


def _break(monkeypatch: pytest.MonkeyPatch, command: str, exc: Exception) -> None:
    real = importlib.import_module

    def import_module(name: str, package: str | None = None) -> types.ModuleType:
        if name == f"sgjnd.commands.{command}":
            raise exc
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", import_module)


EXPECTED = (
    "sgjnd: the 'compress' command could not be loaded: ModuleNotFoundError: No module named 'foo'; reinstall sgjnd"
)


def test_a_command_that_fails_to_import_is_reported_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _break(monkeypatch, "compress", ModuleNotFoundError("No module named 'foo'", name="foo"))
    # Any arguments, options and -h included, reach the stub: it says why, whatever was asked.
    for argv in (["compress"], ["compress", "photo.jpg", "-o", "out", "--json", "--margin", "3"], ["compress", "-h"]):
        assert cli.main(argv) == cli.EXIT_NOT_LOADED == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err.splitlines() == [EXPECTED], err


def test_the_listing_names_the_command_that_could_not_be_loaded(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _break(monkeypatch, "compress", ModuleNotFoundError("No module named 'foo'", name="foo"))
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    listing = " ".join(capsys.readouterr().out.split())
    assert "compress (could not be loaded: ModuleNotFoundError: No module named 'foo'; reinstall sgjnd)" in listing
    assert cli.main([]) == 2  # no command: the listing, which says it too
    assert "could not be loaded" in capsys.readouterr().out


def test_the_other_commands_keep_working(monkeypatch: pytest.MonkeyPatch) -> None:
    _break(monkeypatch, "compress", ModuleNotFoundError("No module named 'foo'", name="foo"))
    parser = cli.build_parser()
    assert set(subparsers()) == set(cli.COMMANDS)  # listed, the broken one included
    args = parser.parse_args(["predict", "photo.jpg", "--workers", "3", "--search", "bisect"])
    from sgjnd.commands import predict

    assert args.run is predict.run and args.workers == 3 and args.search == "bisect"
    args = parser.parse_args(["build", "models/r50", "--precision", "fp16"])
    assert args.precision == "fp16"


def test_a_missing_command_module_is_not_skipped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The case the CLI once skipped silently: the command's own module is missing (here: None in sys.modules)."""
    monkeypatch.setitem(sys.modules, "sgjnd.commands.inspect", None)
    assert "inspect" in subparsers()
    assert cli.main(["inspect", "engine.engine", "--raw"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("sgjnd: the 'inspect' command could not be loaded: ModuleNotFoundError: ")
    assert "sgjnd.commands.inspect" in line and line.endswith("; reinstall sgjnd")


def test_a_command_that_breaks_while_registering_is_replaced_by_the_stub(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A module that imports but whose add_parser raises halfway (a parser half built); '%' in the reason is kept."""
    module = types.ModuleType("sgjnd.commands.export")

    def add_parser(sub: Any) -> None:
        parser = sub.add_parser("export", help="half built")
        parser.add_argument("--needed", required=True)
        raise RuntimeError("100% broken\nsecond line")

    module.add_parser = add_parser
    monkeypatch.setitem(sys.modules, "sgjnd.commands.export", module)
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    listing = " ".join(capsys.readouterr().out.split())
    assert "half built" not in listing
    assert "export (could not be loaded: RuntimeError: 100% broken second line; reinstall sgjnd)" in listing
    assert cli.main(["export", "model.pt"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "sgjnd: the 'export' command could not be loaded: RuntimeError: 100% broken second line; reinstall sgjnd"
    ]
