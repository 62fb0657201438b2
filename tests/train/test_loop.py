"""A few training steps of sgjnd_tiny: finite loss, checkpoints, resume, determinism, cached features."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sgjnd.data import open_dataset
from sgjnd.data.labels import LabelConfig
from sgjnd.errors import UsageError
from sgjnd.model import create_model, load_checkpoint
from sgjnd.train.config import TrainConfig
from sgjnd.train.loop import Sampler, Trainer, build_model, dataset_summary, encode_from_stages, set_train_mode, train

MakeConfig = Callable[..., TrainConfig]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).state_dict()


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def train_labels(proxy_csv: Path) -> list[float]:
    """The JNDs of the three training sources of ``tiny_config`` (rocket excluded, chelsea validates)."""
    import csv

    rows = csv.DictReader(line for line in proxy_csv.read_text().splitlines() if not line.startswith("#"))
    return [float(r["jnd_qf"]) for r in rows if r["kind"] == "image" and r["group"] not in ("rocket", "chelsea")]


def test_train_writes_checkpoints_and_resume_continues_exactly(proxy_csv: Path, tmp_path: Path,
                                                               tiny_config: MakeConfig) -> None:
    def config(out: Path) -> TrainConfig:  # validation after epoch 2 only, to keep the test fast
        base = tiny_config(proxy_csv, out)
        return dataclasses.replace(base, validation=dataclasses.replace(base.validation, every=2))

    full = train(config(tmp_path / "full"), progress=False)
    assert full.epochs_run == 2 and full.best_mae is not None and full.best_epoch in (1, 2)
    for name in ("last.pt", "last.pt.json", "best.pt", "train_state.pt", "metrics.jsonl", "run.json"):
        assert (tmp_path / "full" / name).is_file(), name
    records = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(np.isfinite(r["train_loss"]) for r in records) and "mae_qf" in records[1]["val"]
    sidecar = json.loads((tmp_path / "full" / "best.pt.json").read_text())
    assert "proxy labels from the test oracle" in sidecar["artifact"]["weights"]
    assert "not human data" in sidecar["artifact"]["weights"]
    assert sidecar["artifact"]["details"]["train_sources"] == 3  # and the constant guess `evaluate` scores:
    assert sidecar["artifact"]["details"]["train_label_median_qf"] == pytest.approx(np.median(train_labels(proxy_csv)))
    run = json.loads((tmp_path / "full" / "run.json").read_text())
    assert run["train_sources"] == 3 and run["val_sources"] == 1  # rocket excluded, chelsea validates

    first = train(config(tmp_path / "resumed"), progress=False, max_steps=2)  # stops after epoch 1
    assert first.epochs_run == 1
    resumed = train(config(tmp_path / "resumed"), progress=False)  # picks up after epoch 1
    assert resumed.epochs_run == 2 and [h["epoch"] for h in resumed.history] == [1, 2]
    assert same(weights(full.last), weights(resumed.last))


def test_same_seed_gives_identical_weights(proxy_csv: Path, tmp_path: Path, tiny_config: MakeConfig) -> None:
    base = tiny_config(proxy_csv, tmp_path, epochs=1)
    config = dataclasses.replace(base, data=dataclasses.replace(base.data, val_groups=[]))  # no validation
    a = train(config, tmp_path / "a", progress=False)
    b = train(config, tmp_path / "b", progress=False)
    c = train(dataclasses.replace(config, seed=1), tmp_path / "c", progress=False)
    assert same(weights(a.last), weights(b.last))
    assert not same(weights(a.last), weights(c.last))


def test_loss_decreases_on_a_fixed_batch(proxy_csv: Path, tmp_path: Path, tiny_config: MakeConfig) -> None:
    config = tiny_config(proxy_csv, tmp_path)
    torch.manual_seed(0)
    model = build_model(config)
    data = open_dataset(proxy_csv)
    trainer = Trainer(model, Sampler(data, model, config, LabelConfig()), config, None)
    set_train_mode(model, config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(8):
        loss, scores, _ = trainer.loss(np.random.default_rng(7), [0, 2])  # the same draw every time
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        assert scores.shape == (4,) and torch.all((scores > 0) & (scores < 1))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_cached_frozen_features(proxy_csv: Path, tmp_path: Path, tiny_config: MakeConfig) -> None:
    base = tiny_config(proxy_csv, tmp_path)
    config = dataclasses.replace(base, cache_frozen_features=True,
                                 model=dataclasses.replace(base.model, freeze=["encoder.backbone"]),
                                 sampling=dataclasses.replace(base.sampling, qfs=[20, 40]))
    result = train(config, progress=False)
    cache = result.history[-1]["feature_cache"]
    assert cache["hits"] > 0 and cache["misses"] > 0
    with pytest.raises(UsageError, match="needs the whole backbone frozen"):
        train(dataclasses.replace(base, cache_frozen_features=True), tmp_path / "x", progress=False)
    on_ort = train(dataclasses.replace(config, frozen_backbone="onnxruntime"), tmp_path / "ort", progress=False)
    assert on_ort.history[-1]["feature_cache"]["misses"] == cache["misses"]  # the same draws, other runtime
    assert abs(on_ort.history[-1]["train_loss"] - result.history[-1]["train_loss"]) < 1e-3


@pytest.mark.parametrize("name", ["sgjnd_tiny", "sgjnd_effl0"])
def test_a_frozen_backbone_on_onnx_runtime_gives_torchs_stage_outputs(name: str) -> None:
    from sgjnd.model import create_model
    from sgjnd.train.frozen import FrozenBackbone

    model = create_model(name, seed=0).eval()
    size = model.spec.patch_size
    patches = torch.randn(3, 3, size, size)
    on_torch = FrozenBackbone(model.encoder.backbone, "torch", 1, size)(patches)
    on_ort = FrozenBackbone(model.encoder.backbone, "onnxruntime", 1, size)(patches)
    assert len(on_ort) == len(on_torch) == 4
    for a, b in zip(on_ort, on_torch, strict=True):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    with pytest.raises(UsageError, match="frozen_backbone must be one of torch, onnxruntime"):
        FrozenBackbone(model.encoder.backbone, "tensorrt", 1, size)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["sgjnd_tiny", "sgjnd_effl0"])
def test_encode_from_stages_equals_the_encoder(name: str) -> None:
    model = create_model(name, seed=0, patch_size=64)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(encode_from_stages(model.encoder, model.encoder.backbone(x)), model.encoder(x), atol=1e-5)


def test_sur_mode_and_coded_files(tmp_path: Path, photos: list[Path], proxy_csv: Path,
                                  tiny_config: MakeConfig) -> None:
    """Training reads an MCL-JCI tree's own JPEG files and regresses the SUR."""
    root = tmp_path / "mcl"
    for i, name in enumerate(("ImageJND_SRC01", "ImageJND_SRC02")):
        image = cv2.imread(str(photos[i]), cv2.IMREAD_COLOR)
        assert image is not None
        image = cv2.resize(image[:300, :300], (96, 96), interpolation=cv2.INTER_AREA)
        folder = root / "distorted_image" / name
        folder.mkdir(parents=True)
        for qf in range(1, 101):
            cv2.imwrite(str(folder / f"{name}_{qf:03d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, qf])
    (root / "jnd.csv").write_text("source,subject,jnd1\n" + "".join(
        f"ImageJND_SRC0{s},{k},{j}\n" for s in (1, 2) for k, j in enumerate((22, 30, 35))))
    base = tiny_config(proxy_csv, tmp_path / "run")
    config = dataclasses.replace(base, mode="sur", data=dataclasses.replace(base.data, path=str(root), exclude=[],
                                                                            val_groups=[]))
    result = train(config, max_steps=2, progress=False)
    assert result.epochs_run == 1 and np.isfinite(result.history[0]["train_loss"])
    assert "MCL-JCI (human data)" in json.loads((tmp_path / "run" / "best.pt.json").read_text())["artifact"]["weights"]


def test_bad_backbone_weights(proxy_csv: Path, tmp_path: Path, tiny_config: MakeConfig) -> None:
    base = tiny_config(proxy_csv, tmp_path)
    with pytest.raises(UsageError, match="'imagenet' is only available offline for EfficientNet-Lite0"):
        build_model(dataclasses.replace(base, model=dataclasses.replace(base.model, backbone_weights="imagenet")))
    with pytest.raises(UsageError, match=r"freeze prefix 'encoder\.nothing' matches no parameter"):
        train(dataclasses.replace(base, model=dataclasses.replace(base.model, freeze=["encoder.nothing"])),
              progress=False)


def test_torchvision_layout_backbone_weights(proxy_csv: Path, tmp_path: Path, tiny_config: MakeConfig) -> None:
    source = create_model("sgjnd_tiny", seed=5).encoder.backbone.state_dict()
    state = {**{k: v.clone() for k, v in source.items()}, "fc.weight": torch.zeros(10, 64), "fc.bias": torch.zeros(10)}
    torch.save(state, tmp_path / "resnet.pth")
    base = tiny_config(proxy_csv, tmp_path)
    weights_file = str(tmp_path / "resnet.pth")
    model = build_model(dataclasses.replace(base, model=dataclasses.replace(base.model, backbone_weights=weights_file)))
    assert all(torch.equal(model.encoder.backbone.state_dict()[k], v) for k, v in source.items())


def test_train_command_dry_run(proxy_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from sgjnd.commands import train as train_command

    (tmp_path / "c.toml").write_text(f'[data]\npath = "{proxy_csv}"\nval_groups = ["chelsea"]\n'
                                     '[model]\nname = "sgjnd_tiny"\n')
    parser = argparse.ArgumentParser()
    train_command.add_parser(parser.add_subparsers())
    args = parser.parse_args(["train", str(tmp_path / "c.toml"), "--dry-run", "--epochs", "3"])
    assert args.run(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["epochs"] == 3 and out["split"]["val"] == ["chelsea"] and len(out["split"]["train"]) == 4


def test_validation_only_scores_the_matching_items(proxy_csv: Path, tmp_path: Path, tiny_config: MakeConfig) -> None:
    base = tiny_config(proxy_csv, tmp_path, epochs=1)

    def with_validation(only: str) -> TrainConfig:
        return dataclasses.replace(base, data=dataclasses.replace(base.data, val_groups=["coffee"]),
                                   validation=dataclasses.replace(base.validation, only=only))

    result = train(with_validation("__a$"), tmp_path / "a", progress=False)
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run["val_sources"] == 1 and run["train_sources"] == 2  # coffee__b is neither scored nor trained on
    assert result.best_mae is not None
    split = dataset_summary(with_validation("__a$"))  # the dry run shows the same split
    assert split["val"] == ["coffee__a"] and "coffee__b" not in split["train"]
    with pytest.raises(UsageError, match=r"validation.only '__c\$' matches none of the validation items "
                                         r"\(names like \['coffee__a', 'coffee__b'\]\)"):
        train(with_validation("__c$"), tmp_path / "c", progress=False)
    with pytest.raises(UsageError, match=r"validation.only '\(' is not a regular expression"):
        with_validation("(")


def test_ema_saves_the_averaged_weights_and_resumes_exactly(proxy_csv: Path, tmp_path: Path,
                                                            tiny_config: MakeConfig) -> None:
    base = tiny_config(proxy_csv, tmp_path, epochs=2)
    config = dataclasses.replace(base, data=dataclasses.replace(base.data, val_groups=[]),
                                 optim=dataclasses.replace(base.optim, ema_decay=0.5))
    full = train(config, tmp_path / "full", progress=False)
    state = torch.load(tmp_path / "full" / "train_state.pt", weights_only=True)
    raw, saved = state["model"], weights(full.last)
    trained = [k for k in raw if raw[k].is_floating_point() and not torch.equal(raw[k], state["ema"]["module." + k])]
    assert trained, "the average should differ from the raw weights after four steps"
    # the checkpoint holds the average (FP32 here), not the raw weights
    assert all(torch.equal(saved[k], state["ema"]["module." + k]) for k in saved)
    assert int(state["ema"]["n_averaged"]) == 4  # one update per step: 2 epochs x 2 steps

    no_ema = train(dataclasses.replace(config, optim=base.optim), tmp_path / "plain", progress=False)
    plain = torch.load(tmp_path / "plain" / "train_state.pt", weights_only=True)["model"]
    assert all(torch.equal(raw[k], plain[k]) for k in raw)  # averaging never changes the training itself
    assert not same(saved, weights(no_ema.last))

    train(config, tmp_path / "resumed", progress=False, max_steps=2)  # stops after epoch 1
    resumed = train(config, tmp_path / "resumed", progress=False)
    assert same(saved, weights(resumed.last))


def test_ema_decay_must_lie_between_zero_and_one(proxy_csv: Path, tmp_path: Path, tiny_config: MakeConfig) -> None:
    base = tiny_config(proxy_csv, tmp_path)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(UsageError, match=r"optim.ema_decay must lie in \(0, 1\)"):
            dataclasses.replace(base, optim=dataclasses.replace(base.optim, ema_decay=bad))
