"""The model registry: names, errors, seeded initialisation and rebuilding a model from its spec."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from sgjnd.errors import UsageError
from sgjnd.model import SGJND, create_model, is_model, list_models, register_model, registry
from sgjnd.model.resnet import count_parameters


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_variants_are_listed() -> None:
    assert {"sgjnd_r50", "sgjnd_tiny"} <= set(list_models())
    assert list_models("*tiny") == ["sgjnd_tiny"]
    assert list_models("nothing*") == []
    assert is_model("sgjnd_r50") and not is_model("sgjnd_r18")


def test_unknown_name_lists_the_available_models() -> None:
    with pytest.raises(UsageError, match=r"unknown model 'sgjnd_r18': available models are .*sgjnd_r50.*sgjnd_tiny"):
        create_model("sgjnd_r18")


def test_duplicate_registration_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))

    def sgjnd_tiny() -> SGJND:  # same name as a registered variant
        raise AssertionError("never built")

    with pytest.raises(UsageError, match="'sgjnd_tiny' is already registered"):
        register_model(sgjnd_tiny)

    def sgjnd_test_extra(**overrides: Any) -> SGJND:
        return create_model("sgjnd_tiny", **overrides)

    assert register_model(sgjnd_test_extra) is sgjnd_test_extra
    assert "sgjnd_test_extra" in list_models()
    with pytest.raises(UsageError, match="already registered"):
        register_model(sgjnd_test_extra)


def test_unknown_override_and_bad_seed_are_refused() -> None:
    with pytest.raises(UsageError, match=r"unknown model option\(s\) \['depth'\]: expected some of \[.*'dim'"):
        create_model("sgjnd_tiny", depth=3)
    with pytest.raises(UsageError, match="seed must be a non-negative integer"):
        create_model("sgjnd_tiny", seed=-1)
    with pytest.raises(UsageError, match="seed must be a non-negative integer"):
        create_model("sgjnd_tiny", seed=1.5)  # type: ignore[arg-type]


def test_same_seed_gives_identical_weights_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = create_model("sgjnd_tiny", seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = create_model("sgjnd_tiny", seed=7)
    c = create_model("sgjnd_tiny", seed=8)
    assert same_weights(a, b)
    assert not same_weights(a, c)


def test_models_come_in_eval_mode() -> None:
    model = create_model("sgjnd_tiny")
    assert not model.training
    assert not any(m.training for m in model.modules())


def test_spec_rebuilds_the_same_model() -> None:
    model = create_model("sgjnd_tiny", seed=5, patch_size=96, fusion="concat_absdiff")
    spec = model.spec
    assert spec.name == "sgjnd_tiny"
    assert spec.patch_size == 96 and spec.arch["patch_size"] == 96
    assert spec.feature_dim == 4 * spec.arch["dim"]
    again = create_model(spec.name, seed=5, **spec.arch)
    assert again.spec == spec
    assert same_weights(model, again)


def test_tiny_is_small_and_has_every_part() -> None:
    tiny = create_model("sgjnd_tiny")
    assert len(tiny.encoder.csa) == 3 and len(tiny.encoder.proj) == 4
    assert [len(getattr(tiny.encoder.backbone, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]
    assert count_parameters(tiny) < 500_000


@pytest.mark.slow
def test_sgjnd_r50_is_the_paper_form() -> None:
    model = create_model("sgjnd_r50", seed=0)
    assert model.spec.patch_size == 224 and model.spec.feature_dim == 1024
    assert model.config.blocks == (3, 4, 6, 3) and model.config.heads == 8 and model.config.ffn_ratio == 4
    assert count_parameters(model.encoder.backbone) == 23_508_032  # torchvision resnet50 without fc
    assert 28_000_000 < count_parameters(model) < 31_000_000
    with torch.inference_mode():
        features = model.encoder(torch.randn(2, 3, 224, 224))
    assert features.shape == (2, 1024) and torch.isfinite(features).all()
    # the tiny variant has the same structure: its keys are a subset of the paper form's (fewer blocks per stage)
    tiny_keys = set(create_model("sgjnd_tiny").state_dict())
    r50_keys = set(model.state_dict())
    assert tiny_keys <= r50_keys
    assert {k for k in r50_keys if not k.startswith("encoder.backbone.layer")} <= tiny_keys
