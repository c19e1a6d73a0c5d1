"""Activation modules by name: shared by the target networks (:mod:`hypercl.models`) and the generators."""

from __future__ import annotations

from torch import nn

__all__ = ["ACTIVATIONS", "make_activation"]

ACTIVATIONS = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}


def make_activation(name: str) -> nn.Module:
    """An activation module by name (``relu``, ``elu``, ``tanh``, ``sigmoid``, ``leaky_relu``, ``gelu``)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; valid: {sorted(ACTIVATIONS)}") from None
