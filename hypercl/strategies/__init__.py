"""Continual-learning strategies, selectable by name (``"none"``, ``"hnet"``, ``"iwr"``, ``"grow"``) or instance."""

from __future__ import annotations

from typing import Any, Union

from .base import NoRegularizer, Strategy
from .grow import Grow
from .output_regularizers import HNETRegularizer, IWRegularizer, candidate_step

STRATEGIES: dict[str, type[Strategy]] = {
    "none": NoRegularizer,
    "hnet": HNETRegularizer,
    "iwr": IWRegularizer,
    "grow": Grow,
}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Make a strategy class selectable by its ``name`` (used by the baselines)."""
    STRATEGIES[cls.name] = cls
    return cls


def get_strategy(strategy: Union[str, Strategy], **kwargs: Any) -> Strategy:
    """A strategy instance from a name (with constructor ``kwargs``) or an instance (returned as is)."""
    if isinstance(strategy, Strategy):
        return strategy
    if isinstance(strategy, str) and strategy in STRATEGIES:
        return STRATEGIES[strategy](**kwargs)
    raise ValueError(f"unknown strategy {strategy!r}; valid: {sorted(STRATEGIES)} or a Strategy instance")


__all__ = [
    "Strategy",
    "NoRegularizer",
    "HNETRegularizer",
    "IWRegularizer",
    "Grow",
    "candidate_step",
    "STRATEGIES",
    "register_strategy",
    "get_strategy",
]
