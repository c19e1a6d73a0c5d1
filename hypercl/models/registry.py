"""Named model builders, so a checkpoint can rebuild its target network from plain data (name + kwargs)."""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

__all__ = ["register_model", "build_model", "model_spec", "MODELS"]

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make a builder available to :func:`build_model` under ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS[name] = fn
        return fn

    return deco


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model and tag it with its spec (``module.hypercl_spec``) for checkpoints."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {sorted(MODELS)}")
    module = MODELS[name](**kwargs)
    setattr(module, "hypercl_spec", {"name": name, "kwargs": dict(kwargs)})  # noqa: B010 - nn.Module typing
    return module


def model_spec(module: nn.Module) -> dict | None:
    """The ``{"name", "kwargs"}`` a registered builder tagged ``module`` with, or ``None``."""
    return getattr(module, "hypercl_spec", None)
