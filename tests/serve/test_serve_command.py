"""`sgjnd serve` arguments -> ServeConfig, and the config's JSON hand-over to worker processes."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from sgjnd.commands import serve as serve_command
from sgjnd.errors import UsageError
from sgjnd.serve.config import ServeConfig
from sgjnd.serve.server import is_loopback


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve_command.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_model_argument_token_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(serve_command.TOKEN_ENV, "from-env")
    args = parse("models/tiny", "--backend", "onnxruntime", "--max-batch", "8", "--min-qf", "70")
    config = serve_command.serve_config_from_args(args)
    assert (config.location, config.backend, config.max_batch, config.token) == (
        Path("models/tiny"),
        "onnxruntime",
        8,
        "from-env",
    )
    assert config.predict.search.qfs[0] == 70 and "providers" not in config.backend_options  # ONNX Runtime's default
    config = serve_command.serve_config_from_args(parse("m", "--backend", "onnxruntime", "--providers", "cuda,cpu"))
    assert config.backend_options["providers"] == ("cuda", "cpu")
    assert args.host == "127.0.0.1"
    assert serve_command.serve_config_from_args(parse("ckpt.pt", "--backend", "torch", "--token", "t")).token == "t"


def test_bad_arguments_are_usage_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(serve_command.TOKEN_ENV, raising=False)
    with pytest.raises(UsageError, match="--providers does not apply to the torch backend"):
        serve_command.serve_config_from_args(parse("m.pt", "--backend", "torch", "--providers", "cuda"))
    with pytest.raises(UsageError, match="not both"):
        serve_command.serve_config_from_args(parse("a", "--model", "b", "--backend", "onnxruntime"))
    with pytest.raises(UsageError, match="max batch"):
        serve_command.serve_config_from_args(parse("a", "--backend", "onnxruntime", "--max-batch", "0"))
    with pytest.raises(UsageError, match="workers"):
        serve_command.serve_config_from_args(parse("a", "--backend", "onnxruntime", "--workers", "0"))
    with pytest.raises(UsageError, match="whitespace"):
        serve_command.serve_config_from_args(parse("a", "--backend", "onnxruntime", "--token", "a b"))


def test_config_json_round_trip() -> None:
    config = serve_command.serve_config_from_args(parse("m", "--backend", "onnxruntime", "--max-patches", "3"))
    assert ServeConfig.from_json(config.to_json()) == config


def test_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.org")
