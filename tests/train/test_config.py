"""Training configs from JSON and TOML: every key checked, relative paths resolved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sgjnd.errors import UsageError
from sgjnd.train.config import TrainConfig, load_config


def test_json_and_toml_give_the_same_config(tmp_path: Path) -> None:
    data = {"data": {"path": "labels.csv", "val_groups": ["a"]},
            "model": {"name": "sgjnd_tiny", "options": {"dim": 16}}, "optim": {"lr_head": 1e-3}, "epochs": 3,
            "output": "runs/x"}
    (tmp_path / "c.json").write_text(json.dumps(data))
    (tmp_path / "c.toml").write_text(
        'epochs = 3\noutput = "runs/x"\n[data]\npath = "labels.csv"\nval_groups = ["a"]\n'
        '[model]\nname = "sgjnd_tiny"\noptions = { dim = 16 }\n[optim]\nlr_head = 1e-3\n')
    a, b = load_config(tmp_path / "c.json"), load_config(tmp_path / "c.toml")
    assert a == b and isinstance(a, TrainConfig)
    assert a.data.path == str(tmp_path / "labels.csv") and a.output == str(tmp_path / "runs/x")
    assert a.optim.lr_backbone == 5e-5 and a.model.options == {"dim": 16} and a.candidate_qfs == tuple(range(1, 101))


@pytest.mark.parametrize(("data", "message"), [
    ({"data": {"path": "x", "pth": 1}}, r"unknown config key\(s\) \['data.pth'\]: expected some of \['path'"),
    ({"data": {"path": "x"}, "optim": {"lr_head": "fast"}}, r"optim.lr_head must be a number, got 'fast'"),
    ({"data": {"path": "x"}, "mode": "regress"}, r"mode must be one of \['binary', 'sur'\], got 'regress'"),
    ({"data": {"path": "x"}, "epochs": 0}, "epochs must be >= 1"),
    ({"data": {"path": "x"}, "sampling": {"qfs": [0, 5]}}, "sampling.qfs must lie in 1..100"),
    ({"model": {"name": "sgjnd_tiny"}}, "the config needs data.path"),
])
def test_bad_configs_name_the_key(tmp_path: Path, data: dict[str, object], message: str) -> None:
    (tmp_path / "c.json").write_text(json.dumps(data))
    with pytest.raises(UsageError, match=message):
        load_config(tmp_path / "c.json")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_config(tmp_path / "none.toml")
    (tmp_path / "c.toml").write_text("epochs = = 3")
    with pytest.raises(UsageError, match="is not valid TOML"):
        load_config(tmp_path / "c.toml")
    (tmp_path / "c.yaml").write_text("epochs: 3")
    with pytest.raises(UsageError, match=r"must end in \.json or \.toml"):
        load_config(tmp_path / "c.yaml")


def test_shipped_configs_load() -> None:
    root = Path(__file__).resolve().parents[2] / "configs"
    files = sorted(root.glob("*.toml")) + sorted(root.glob("*.json"))
    assert files, "configs/ holds no training configs"
    for path in files:
        load_config(path)
