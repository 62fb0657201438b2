"""Model registry: a plain dict of builder functions filled by the ``@register_model`` decorator (timm style).

Builders live next to their architecture (:mod:`sgjnd.model.sgjnd_net`) and are registered when :mod:`sgjnd.model`
is imported. A builder takes config overrides as keyword arguments and returns an untrained network.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from sgjnd.errors import UsageError

if TYPE_CHECKING:
    from sgjnd.model.sgjnd_net import SGJND

ModelBuilder = Callable[..., "SGJND"]
_B = TypeVar("_B", bound=Callable[..., "SGJND"])

_MODELS: dict[str, ModelBuilder] = {}


def register_model(builder: _B) -> _B:
    """Register ``builder`` under its function name.

    Raises:
        UsageError: a model of that name is already registered.
    """
    name = builder.__name__
    if name in _MODELS:
        other = _MODELS[name]
        raise UsageError(
            f"model {name!r} is already registered (by {other.__module__}.{other.__qualname__}); "
            f"give the builder in {builder.__module__} another name"
        )
    _MODELS[name] = builder
    return builder


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching the fnmatch ``pattern``, sorted."""
    return sorted(fnmatch.filter(_MODELS, pattern))


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered model."""
    return name in _MODELS


def create_model(name: str, *, seed: int | None = None, **overrides: Any) -> SGJND:
    """Build the registered model ``name`` (untrained), in eval mode.

    Args:
        name: a registered model name (see :func:`list_models`).
        seed: seed of the weight initialisation; the same seed gives bit-identical weights and leaves torch's global
            generator untouched. None draws from (and advances) the global generator.
        overrides: config fields that replace the variant's values (``patch_size=384``, ``fusion=...``).

    Returns:
        The network; its ``spec.arch`` holds every config field, so ``create_model(spec.name, **spec.arch)``
        rebuilds it.

    Raises:
        UsageError: the name is not registered, an override is not a config field, or a value is invalid.
    """
    builder = _MODELS.get(name)
    if builder is None:
        available = ", ".join(list_models()) or "none (import sgjnd.model)"
        raise UsageError(f"unknown model {name!r}: available models are {available}")
    if seed is None:
        model = builder(**overrides)
    else:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise UsageError(f"seed must be a non-negative integer or None, got {seed!r}")
        # fork_rng restores the global generator afterwards, so seeding a model does not disturb the caller's RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = builder(**overrides)
    return model.eval()
