"""Contracts of the SG-JND network: shapes, output ranges, batch independence, config switches, aggregation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sgjnd.errors import SpecError, UsageError
from sgjnd.model import SGJND, CSALayer, SGJNDConfig, aggregate, create_model, model_from_spec
from sgjnd.model.sgjnd_net import WEIGHT_EPS, CrossAttention
from sgjnd.spec import JpegSettings


@pytest.fixture(scope="module")
def tiny() -> SGJND:
    return create_model("sgjnd_tiny", seed=0)


def pair(m: int, s: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference patches and a noisy copy: a stand-in for JPEG distortion."""
    g = torch.Generator().manual_seed(seed)
    ref = torch.randn(m, 3, s, s, generator=g)
    return ref, ref + 0.5 * torch.randn(m, 3, s, s, generator=g)


def test_encoder_and_head_shapes(tiny: SGJND) -> None:
    ref, dis = pair(5, tiny.spec.patch_size)
    with torch.inference_mode():
        f_ref, f_dis = tiny.encoder(ref), tiny.encoder(dis)
        q, w = tiny.head(f_ref, f_dis)
    assert f_ref.shape == (5, tiny.spec.feature_dim) == (5, 4 * tiny.config.dim)
    assert f_ref.dtype == torch.float32
    assert q.shape == w.shape == (5,)
    assert torch.isfinite(f_ref).all() and torch.isfinite(q).all() and torch.isfinite(w).all()


def test_q_in_unit_interval_w_positive_and_not_constant(tiny: SGJND) -> None:
    ref, dis = pair(16, tiny.spec.patch_size, seed=1)
    with torch.inference_mode():
        q, w = tiny(ref, dis)
    assert ((q > 0) & (q < 1)).all()
    assert (w >= WEIGHT_EPS).all()
    # seeded weights must not give a degenerate model: q and w depend on the input
    assert q.std() > 1e-4 and w.std() > 1e-4


def test_patches_are_independent_of_their_batch(tiny: SGJND) -> None:
    ref, dis = pair(4, tiny.spec.patch_size, seed=2)
    with torch.inference_mode():
        q_batch, w_batch = tiny(ref, dis)
        q_one, w_one = tiny(ref[2:3], dis[2:3])
    torch.testing.assert_close(q_one, q_batch[2:3], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w_one, w_batch[2:3], rtol=1e-5, atol=1e-6)


def test_encoder_accepts_other_patch_sizes(tiny: SGJND) -> None:
    with torch.inference_mode():
        features = tiny.encoder(torch.randn(2, 3, 96, 128))
    assert features.shape == (2, tiny.spec.feature_dim)


@pytest.mark.parametrize(
    "overrides",
    [{"fusion": "concat_absdiff"}, {"query": "detail"}, {"weight_act": "relu"}, {"weight_act": "sigmoid"}],
)
def test_alternative_readings_run(overrides: dict[str, str]) -> None:
    model = create_model("sgjnd_tiny", seed=3, **overrides)
    ref, dis = pair(3, model.spec.patch_size)
    with torch.inference_mode():
        q, w = model(ref, dis)
    assert q.shape == w.shape == (3,)
    assert ((q > 0) & (q < 1)).all() and (w >= WEIGHT_EPS).all()
    assert model.spec.arch[next(iter(overrides))] == next(iter(overrides.values()))


def test_absdiff_fusion_is_symmetric() -> None:
    model = create_model("sgjnd_tiny", seed=4, fusion="concat_absdiff")
    f = torch.randn(3, model.spec.feature_dim)
    g = f + 0.1
    h_fg = torch.cat([f, g, (f - g).abs()], 1)
    with torch.inference_mode():
        q, _ = model.head(f, g)
        expected = torch.sigmoid(model.head.mlp_q(h_fg)).squeeze(1)
    torch.testing.assert_close(q, expected)


def test_csa_layer_keeps_the_query_length() -> None:
    layer = CSALayer(dim=16, heads=4, ffn_ratio=2).eval()
    with torch.inference_mode():
        out = layer(torch.randn(2, 5, 16), torch.randn(2, 16, 3, 11))  # a context map
    assert out.shape == (2, 5, 16)
    # both LayerNorms have unit gain and zero bias at init: each token is normalised
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)


def test_cross_attention_is_multihead_attention_with_a_channel_major_context() -> None:
    # the same seeded parameters as nn.MultiheadAttention (so seeded models and old checkpoints are unchanged) and
    # the same function, reading the context as a map (M, d, H, W)
    torch.manual_seed(7)
    reference = nn.MultiheadAttention(24, 3, batch_first=True).eval()
    torch.manual_seed(7)
    ours = CrossAttention(24, 3).eval()
    assert ours.state_dict().keys() == reference.state_dict().keys()
    for name, value in reference.state_dict().items():
        assert torch.equal(ours.state_dict()[name], value), name
    with torch.no_grad():  # trained-looking values: nonzero biases, another draw
        for p in reference.parameters():
            p.add_(0.3 * torch.randn_like(p))
    ours.load_state_dict(reference.state_dict())
    query, context = torch.randn(3, 7, 24), torch.randn(3, 24, 5, 10)
    tokens = context.flatten(2).transpose(1, 2)  # (3, 50, 24), row-major positions
    with torch.inference_mode():
        expected, _ = reference(query, tokens, tokens, need_weights=False)
        got = ours(query, context)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("query", ["semantic", "detail"])
def test_encoder_features_are_the_multihead_attention_reading(query: str) -> None:
    # the encoder's map-as-context plumbing gives what token-major nn.MultiheadAttention layers give, for both roles
    model = create_model("sgjnd_tiny", seed=0, query=query).eval()
    encoder = model.encoder
    stages = [torch.randn(2, c, 8 // 2**min(i, 2), 8 // 2**min(i, 2)) for i, c in enumerate(encoder.backbone.channels)]

    def reference_layer(layer: CSALayer, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        mha = nn.MultiheadAttention(layer.mha.embed_dim, layer.mha.num_heads, batch_first=True).eval()
        mha.load_state_dict(layer.mha.state_dict())
        x = layer.ln1(q + mha(q, kv, kv, need_weights=False)[0])
        return layer.ln2(x + layer.ffn(x))

    with torch.inference_mode():
        tokens = [proj(f).flatten(2).transpose(1, 2) for proj, f in zip(encoder.proj, stages, strict=True)]
        pooled = []
        for layer, lower in zip(encoder.csa, tokens[:3], strict=True):
            fused = reference_layer(layer, tokens[3], lower) if query == "semantic" else \
                reference_layer(layer, lower, tokens[3])
            pooled.append(fused.mean(1))
        expected = torch.cat([*pooled, tokens[3].mean(1)], 1)
        got = encoder.features_from_stages(stages)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_aggregate_is_the_weighted_mean() -> None:
    q = torch.tensor([0.2, 0.8, 0.5, 0.5, 1.0, 0.0])
    w = torch.tensor([1.0, 3.0, 1.0, 1.0, 1.0, 1.0])
    torch.testing.assert_close(aggregate(q, w, n_images=2, n_patches=3), torch.tensor([3.1 / 5, 0.5]))


def test_aggregate_refuses_wrong_shapes() -> None:
    with pytest.raises(UsageError, match=r"shape \(6,\) for 2 image\(s\) x 3 patch\(es\), got \(5,\)"):
        aggregate(torch.ones(5), torch.ones(5), 2, 3)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"dim": 30, "heads": 4}, "divisible by heads"),
        ({"blocks": (1, 1, 1)}, "four positive integers"),
        ({"blocks": 4}, "four positive integers"),
        ({"patch_size": 16}, "at least 32"),
        ({"fusion": "sum"}, "fusion must be one of"),
        ({"query": "both"}, "query must be one of"),
        ({"weight_act": "exp"}, "weight_act must be one of"),
        ({"dropout": 1.0}, "dropout"),
        ({"width": 0}, "width must be a positive integer"),
    ],
)
def test_invalid_config_is_refused(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        SGJNDConfig(**overrides)  # type: ignore[arg-type]


def test_arch_round_trips_through_json_types() -> None:
    config = SGJNDConfig(patch_size=96, blocks=(1, 2, 1, 1), width=4, dim=16, heads=2, head_hidden=8)
    arch = config.to_arch()
    assert arch["blocks"] == [1, 2, 1, 1]
    assert SGJNDConfig.from_arch(arch) == config
    with pytest.raises(UsageError, match=r"unknown model option\(s\) \['depth'\]"):
        SGJNDConfig.from_arch({**arch, "depth": 3})


def test_model_from_spec_keeps_the_recorded_preprocessing(tiny: SGJND) -> None:
    import dataclasses

    spec = dataclasses.replace(tiny.spec, jpeg=JpegSettings(subsampling="444"), mean=(0.5, 0.5, 0.5))
    rebuilt = model_from_spec(spec)
    assert rebuilt.spec == spec
    assert not rebuilt.training
    custom = model_from_spec(dataclasses.replace(spec, name="my_variant"))  # unregistered: a plain SGJND from arch
    assert type(custom) is SGJND and custom.spec.name == "my_variant"
    with pytest.raises(SpecError, match="inconsistent"):
        model_from_spec(dataclasses.replace(spec, feature_dim=12))
    with pytest.raises(SpecError, match="invalid arch"):
        model_from_spec(dataclasses.replace(spec, arch={**spec.arch, "heads": 5}))
