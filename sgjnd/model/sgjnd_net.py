"""The SG-JND network: a shared ResNet encoder with cross-scale attention, and a patch quality/weight head.

This is the reconstruction of DESIGN.md §1 (method notes §1.2-§1.4). Per patch, the encoder maps normalised pixels
(M, 3, s, s) to a feature vector (M, 4d); the head maps a reference/distorted feature pair to a patch quality
q in (0, 1) and a patch weight w > 0. The image score at one JPEG quality is ``S = Σ w·q / Σ w`` (:func:`aggregate`).

The alternative readings the notes list are kept where they cost a line: which tokens are the attention query
(``query``), how the pair is fused (``fusion``) and the weight activation (``weight_act``). Both graphs export to
ONNX with a dynamic batch: no data-dependent Python control flow, attention by :class:`CrossAttention`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sgjnd.errors import SpecError, UsageError
from sgjnd.model.registry import create_model, is_model, register_model
from sgjnd.model.resnet import RESNET50_BLOCKS, ResNet
from sgjnd.spec import ArtifactInfo, ModelSpec

Fusion = Literal["concat_diff", "concat_absdiff"]
"""Pair fusion: ``[f_ref, f_dis, f_ref - f_dis]`` (SUR-FeatNet) or with ``|f_ref - f_dis|``."""
Query = Literal["semantic", "detail"]
"""Attention roles: F4 tokens query a lower stage (``semantic``, the reference reading) or the reverse (``detail``)."""
WeightAct = Literal["softplus", "relu", "sigmoid"]
"""Activation that makes the patch weight positive; ``WEIGHT_EPS`` is added after it."""

WEIGHT_EPS = 1e-6
"""Added to every patch weight so that Σw never vanishes."""


@dataclass(frozen=True)
class SGJNDConfig:
    """Everything that determines the network's structure. The defaults are the paper form (``sgjnd_r50``).

    Attributes:
        patch_size: side s of the square input patches (the network itself accepts any size >= 32).
        blocks: Bottleneck blocks per ResNet stage.
        width: ResNet stem channels; stages output 4, 8, 16 and 32 times this.
        dim: token width d of the projections and attention layers; features are 4·d wide.
        heads: attention heads; must divide ``dim``.
        ffn_ratio: hidden width of the attention layers' feed-forward block, as a multiple of ``dim``.
        head_hidden: hidden width of the quality and weight MLPs.
        dropout: dropout in the quality and weight MLPs (training only).
        fusion: how a reference/distorted feature pair is fused.
        query: which tokens are the attention query.
        weight_act: activation of the patch weight.
    """

    patch_size: int = 224
    blocks: tuple[int, int, int, int] = RESNET50_BLOCKS
    width: int = 64
    dim: int = 256
    heads: int = 8
    ffn_ratio: int = 4
    head_hidden: int = 512
    dropout: float = 0.0
    fusion: Fusion = "concat_diff"
    query: Query = "semantic"
    weight_act: WeightAct = "softplus"

    def __post_init__(self) -> None:
        blocks = tuple(self.blocks) if isinstance(self.blocks, list | tuple) else ()
        if len(blocks) != 4 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in blocks):
            raise UsageError(f"blocks must be four positive integers, got {self.blocks!r}")
        object.__setattr__(self, "blocks", blocks)  # accept a list (from JSON), store the tuple
        for field_name in ("patch_size", "width", "dim", "heads", "ffn_ratio", "head_hidden"):
            value = getattr(self, field_name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"{field_name} must be a positive integer, got {value!r}")
        if self.patch_size < 32:
            raise UsageError(f"patch_size must be at least 32 (the backbone's stride), got {self.patch_size}")
        if self.dim % self.heads:
            raise UsageError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float) or not 0 <= self.dropout < 1:
            raise UsageError(f"dropout must be in [0, 1), got {self.dropout!r}")
        for field_name, literal in (("fusion", Fusion), ("query", Query), ("weight_act", WeightAct)):
            allowed = get_args(literal)
            if getattr(self, field_name) not in allowed:
                raise UsageError(f"{field_name} must be one of {allowed}, got {getattr(self, field_name)!r}")

    @property
    def feature_dim(self) -> int:
        """Width of the encoder's per-patch feature vector (4·d)."""
        return 4 * self.dim

    def to_arch(self) -> dict[str, Any]:
        """The config as JSON-ready keyword arguments (the spec's ``arch``); ``from_arch`` inverts it."""
        arch = dataclasses.asdict(self)
        arch["blocks"] = list(self.blocks)
        return arch

    @classmethod
    def from_arch(cls, arch: dict[str, Any]) -> SGJNDConfig:
        """Rebuild a config from a spec's ``arch``.

        Raises:
            UsageError: ``arch`` names a field the config does not have, or a value is invalid.
        """
        check_config_keys(arch)
        return cls(**arch)


def check_config_keys(kwargs: dict[str, Any]) -> None:
    """Raise UsageError naming every key of ``kwargs`` that is not an :class:`SGJNDConfig` field."""
    known = [f.name for f in dataclasses.fields(SGJNDConfig)]
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise UsageError(f"unknown model option(s) {unknown}: expected some of {known}")


class CrossAttention(nn.Module):
    """Multi-head attention from token-major queries (M, Lq, d) to a channel-major context map (M, d, H, W).

    The same function and parameters as ``nn.MultiheadAttention(dim, heads, batch_first=True)`` (``in_proj_weight``,
    ``in_proj_bias``, ``out_proj``: checkpoints of either load into the other, and a seeded init draws the same
    values), computed so that the exported graph moves no large tensor: the keys and values are 1x1 convolutions of
    the context map, split into heads by reshapes, and only the short query side (the F4 tokens) is
    transposed. ``nn.MultiheadAttention`` transposes its batch-first inputs to sequence-first and every projection
    back into heads; on the first layer (3136 context tokens per patch) those copies cost OpenVINO's INT8 graph
    about as much as the attention's arithmetic (benchmarks/results/2026-12-07-openvino-cpu-attention/).

    Args:
        dim: token width d.
        heads: attention heads; must divide ``dim``.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise UsageError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.embed_dim, self.num_heads = dim, heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        # nn.MultiheadAttention's initialisation, in its order (out_proj's draw first), so seeded models are unchanged
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: Tensor, context: Tensor) -> Tensor:
        """Attend from ``query`` (M, Lq, d) to the H·W positions of ``context`` (M, d, H, W); returns (M, Lq, d)."""
        m, lq, d = query.shape
        heads = self.num_heads
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q = F.linear(query, w_q, b_q) * (d // heads) ** -0.5
        q = q.reshape(m, lq, heads, d // heads).transpose(1, 2)  # (M, H, Lq, d/H)
        k = F.conv2d(context, w_k[..., None, None], b_k).reshape(m, heads, d // heads, -1)  # (M, H, d/H, Lk)
        v = F.conv2d(context, w_v[..., None, None], b_v).reshape(m, heads, d // heads, -1)
        attn = torch.softmax(torch.matmul(q, k), dim=-1)  # (M, H, Lq, Lk)
        # a MatMul reading its second input transposed: ONNX Runtime, OpenVINO and TensorRT fold the Transpose
        out = torch.matmul(attn, v.transpose(-1, -2))  # (M, H, Lq, d/H)
        result: Tensor = self.out_proj(out.transpose(1, 2).reshape(m, lq, d))
        return result


class CSALayer(nn.Module):
    """One cross-scale attention layer: ``x = LN(q + MHA(q, kv, kv))``, then ``LN(x + FFN(x))``.

    Args:
        dim: token width.
        heads: attention heads.
        ffn_ratio: hidden width of the feed-forward block as a multiple of ``dim``.
    """

    def __init__(self, dim: int, heads: int, ffn_ratio: int = 4) -> None:
        super().__init__()
        self.mha = CrossAttention(dim, heads)
        self.ln1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_ratio * dim), nn.GELU(), nn.Linear(ffn_ratio * dim, dim))
        self.ln2 = nn.LayerNorm(dim)

    def forward(self, query: Tensor, context: Tensor) -> Tensor:
        """Attend from ``query`` tokens (M, Lq, d) to a ``context`` map (M, d, H, W); returns (M, Lq, d)."""
        x = self.ln1(query + self.mha(query, context))
        out: Tensor = self.ln2(x + self.ffn(x))
        return out


class SGJNDEncoder(nn.Module):
    """Patches (M, 3, s, s) -> features (M, 4d); shared by reference and distorted patches.

    ResNet stages F1..F4 are projected to width d by 1x1 convolutions and flattened to tokens. One
    :class:`CSALayer` per lower stage fuses it with the F4 tokens. The three fused token sets and the F4 tokens are
    mean-pooled and concatenated.

    Args:
        blocks: Bottleneck blocks per ResNet stage.
        width: ResNet stem channels.
        dim: token width d.
        heads: attention heads.
        ffn_ratio: feed-forward width multiple of the attention layers.
        query: ``semantic``: F4 tokens are the query, the lower stage is key/value; ``detail``: the reverse.
    """

    def __init__(
        self,
        blocks: tuple[int, int, int, int] = RESNET50_BLOCKS,
        width: int = 64,
        dim: int = 256,
        heads: int = 8,
        ffn_ratio: int = 4,
        query: Query = "semantic",
    ) -> None:
        super().__init__()
        self.backbone = ResNet(blocks, width)
        self.proj = nn.ModuleList(nn.Conv2d(c, dim, kernel_size=1) for c in self.backbone.channels)
        self.csa = nn.ModuleList(CSALayer(dim, heads, ffn_ratio) for _ in range(3))
        self.semantic_query = query == "semantic"
        self.dim = dim

    @property
    def feature_dim(self) -> int:
        """Width of the output features (4·d)."""
        return 4 * self.dim

    def forward(self, patches: Tensor) -> Tensor:
        """Features (M, 4d) of normalised patches (M, 3, s, s)."""
        return self.features_from_stages(self.backbone(patches))

    def features_from_stages(self, stages: Sequence[Tensor]) -> Tensor:
        """Features (M, 4d) from the backbone's stage outputs F1..F4 (training reuses cached stage outputs)."""
        # the attention reads its context as the (M, d, H, W) map itself: only the short F4 token set (and, for the
        # ``detail`` query, the lower stage it queries from) is transposed to tokens
        maps = [proj(f) for proj, f in zip(self.proj, stages, strict=True)]
        semantic = maps[3].flatten(2).transpose(1, 2)
        pooled = []
        for csa, lower in zip(self.csa, maps[:3], strict=True):
            fused = csa(semantic, lower) if self.semantic_query else csa(lower.flatten(2).transpose(1, 2), maps[3])
            pooled.append(fused.mean(dim=1))
        # pooled over the map, not over its transposed tokens: the same mean, but OpenVINO 2026.4 computed the token
        # mean after that Transpose wrongly in the QDQ INT8 graphs (features cosine 0.5 to ONNX Runtime's on them)
        pooled.append(maps[3].mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)


def _mlp(in_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, 1))


class SGJNDHead(nn.Module):
    """Feature pairs -> patch quality ``q`` (M,) in (0, 1) and patch weight ``w`` (M,) > 0.

    ``h = [f_ref, f_dis, f_ref - f_dis]`` (or ``|f_ref - f_dis|``) feeds two MLPs; ``q = sigmoid(MLP_q(h))`` is the
    probability that the distorted patch looks identical to the reference, ``w = act(MLP_w(h)) + WEIGHT_EPS``.

    Args:
        feature_dim: width of each feature vector (4·d).
        hidden: hidden width of both MLPs.
        dropout: dropout after the hidden layer (training only).
        fusion: how the pair is fused.
        weight_act: activation of the weight.
    """

    def __init__(
        self,
        feature_dim: int,
        hidden: int = 512,
        dropout: float = 0.0,
        fusion: Fusion = "concat_diff",
        weight_act: WeightAct = "softplus",
    ) -> None:
        super().__init__()
        self.mlp_q = _mlp(3 * feature_dim, hidden, dropout)
        self.mlp_w = _mlp(3 * feature_dim, hidden, dropout)
        self.absdiff = fusion == "concat_absdiff"
        self.weight_act = weight_act

    def forward(self, f_ref: Tensor, f_dis: Tensor) -> tuple[Tensor, Tensor]:
        """``(q, w)``, each (M,), for features ``f_ref`` and ``f_dis`` of shape (M, 4d)."""
        diff = f_ref - f_dis
        if self.absdiff:
            diff = diff.abs()
        h = torch.cat([f_ref, f_dis, diff], dim=1)
        q = torch.sigmoid(self.mlp_q(h)).squeeze(1)
        raw = self.mlp_w(h).squeeze(1)
        if self.weight_act == "softplus":
            w = F.softplus(raw)
        elif self.weight_act == "relu":
            w = F.relu(raw)
        else:
            w = torch.sigmoid(raw)
        return q, w + WEIGHT_EPS


class SGJND(nn.Module):
    """The SG-JND predictor: ``.encoder`` and ``.head``, plus ``.spec`` describing it.

    Args:
        config: the network's structure.
        name: the registry name recorded in the spec.

    Attributes:
        config: the structure this network was built from.
        spec: the model spec; its ``arch`` rebuilds the network (``create_model(spec.name, **spec.arch)``).
        checkpoint_info: provenance of the checkpoint the weights came from (set by save/load), else None.
    """

    def __init__(self, config: SGJNDConfig, *, name: str = "sgjnd_custom") -> None:
        super().__init__()
        self.config = config
        self.encoder = SGJNDEncoder(
            config.blocks, config.width, config.dim, config.heads, config.ffn_ratio, config.query
        )
        self.head = SGJNDHead(config.feature_dim, config.head_hidden, config.dropout, config.fusion, config.weight_act)
        self.spec = ModelSpec(
            name=name, patch_size=config.patch_size, feature_dim=config.feature_dim, arch=config.to_arch()
        )
        self.checkpoint_info: ArtifactInfo | None = None

    def forward(self, ref_patches: Tensor, dis_patches: Tensor) -> tuple[Tensor, Tensor]:
        """Patch quality and weight ``(q, w)``, each (M,), for co-located patch pairs (M, 3, s, s)."""
        return self.head(self.encoder(ref_patches), self.encoder(dis_patches))


def model_from_spec(spec: ModelSpec) -> SGJND:
    """Build the (untrained) network a spec describes, in eval mode; its ``spec`` is ``spec`` itself.

    A registered name is built by ``create_model(spec.name, **spec.arch)`` (so variants with their own config, such
    as other backbones, rebuild too); any other name as a plain :class:`SGJND` from ``arch``. The initialisation
    is seeded, so building does not advance torch's global generator.

    Raises:
        SpecError: the spec's ``arch`` is invalid or disagrees with its patch size or feature width.
    """
    try:
        if is_model(spec.name):
            model = create_model(spec.name, seed=0, **spec.arch)
        else:
            model = SGJND(SGJNDConfig.from_arch(dict(spec.arch)), name=spec.name)
    except (UsageError, TypeError) as exc:
        raise SpecError(f"model spec {spec.name!r} has an invalid arch: {exc}") from exc
    if model.spec.patch_size != spec.patch_size or model.spec.feature_dim != spec.feature_dim:
        raise SpecError(
            f"model spec {spec.name!r} is inconsistent: patch_size {spec.patch_size} / feature_dim {spec.feature_dim}"
            f" but its arch gives {model.spec.patch_size} / {model.spec.feature_dim}"
        )
    model.spec = spec  # keep the recorded preprocessing (mean/std, JPEG settings), not this version's defaults
    return model.eval()


def aggregate(q: Tensor, w: Tensor, n_images: int, n_patches: int) -> Tensor:
    """Image scores ``S = Σ w·q / Σ w`` over each image's patches.

    Args:
        q: patch qualities (n_images · n_patches,), image-major.
        w: patch weights, same shape.
        n_images: number of images (or image/QF pairs).
        n_patches: patches per image.

    Returns:
        Scores of shape (n_images,).

    Raises:
        UsageError: ``q`` or ``w`` does not have n_images · n_patches elements in one dimension.
    """
    expected = (n_images * n_patches,)
    if n_images < 1 or n_patches < 1 or tuple(q.shape) != expected or tuple(w.shape) != expected:
        raise UsageError(
            f"aggregate expects q and w of shape {expected} for {n_images} image(s) x {n_patches} patch(es), "
            f"got {tuple(q.shape)} and {tuple(w.shape)}"
        )
    q2 = q.reshape(n_images, n_patches)
    w2 = w.reshape(n_images, n_patches)
    return (w2 * q2).sum(dim=1) / w2.sum(dim=1)


# -- registered variants -----------------------------------------------------------------------------------------


def _build(name: str, variant: dict[str, Any], overrides: dict[str, Any]) -> SGJND:
    check_config_keys(overrides)
    return SGJND(SGJNDConfig(**{**variant, **overrides}), name=name)


@register_model
def sgjnd_r50(**overrides: Any) -> SGJND:
    """The paper form: ResNet-50 backbone, s = 224, d = 256, 8 heads, FFN ratio 4 (about 30 M parameters)."""
    return _build("sgjnd_r50", {}, overrides)


@register_model
def sgjnd_tiny(**overrides: Any) -> SGJND:
    """The same structure scaled down for tests: one block per stage, stem width 8, d = 32, 2 heads, s = 64."""
    return _build(
        "sgjnd_tiny",
        {"patch_size": 64, "blocks": (1, 1, 1, 1), "width": 8, "dim": 32, "heads": 2, "head_hidden": 32},
        overrides,
    )
