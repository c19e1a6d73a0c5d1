"""Any ``nn.Module`` as a functional target network.

:func:`wrap` turns a module into a :class:`FunctionalTarget`: the ordered shapes of the parameters a hypernetwork has
to generate, a flat-vector view of them, and calls of the module with *external* weights through
``torch.func.functional_call`` (one weight set) or ``torch.func.vmap`` over it (many weight sets at once).
The module needs no special base class.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn
from torch.func import functional_call, vmap

__all__ = ["FunctionalTarget", "wrap"]

Params = Mapping[str, torch.Tensor]


class FunctionalTarget:
    """A module whose trainable parameters are supplied from outside at call time.

    Attributes:
        module: the wrapped module (its own parameters serve as templates: shapes, dtypes and the initial scale).
        param_shapes: ordered ``dict[str, torch.Size]`` of the generated parameters (tied parameters once).
        num_params: total number of generated scalars ``N``.
    """

    def __init__(self, module: nn.Module, include: Optional[Callable[[str, nn.Parameter], bool]] = None) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"wrap() expects an nn.Module, got {type(module).__name__}")
        include = include or (lambda name, p: p.requires_grad)
        # named_parameters() lists a tied (shared) parameter once, under its first name.
        chosen = [(n, p) for n, p in module.named_parameters() if include(n, p)]
        if not chosen:
            raise ValueError(
                f"{type(module).__name__} has no trainable parameters to generate: a target network needs at "
                "least one parameter with requires_grad=True (or pass include= to choose parameters)"
            )
        self.module = module
        self.param_shapes: "OrderedDict[str, torch.Size]" = OrderedDict((n, p.shape) for n, p in chosen)
        self.param_numels: list[int] = [p.numel() for _, p in chosen]
        self.num_params: int = sum(self.param_numels)
        # Buffer names (e.g. BatchNorm running statistics) the caller may replace per call.
        self.buffer_names: list[str] = [n for n, _ in module.named_buffers()]

    # ------------------------------------------------------------------ layout
    def _check_params(self, params: Params, batch_dims: int) -> None:
        missing = [n for n in self.param_shapes if n not in params]
        extra = [n for n in params if n not in self.param_shapes]
        if missing or extra:
            raise ValueError(
                f"params do not match the target's parameters: missing {missing}, unexpected {extra}; "
                f"expected names {list(self.param_shapes)}"
            )
        for name, shape in self.param_shapes.items():
            got = params[name].shape
            if tuple(got[batch_dims:]) != tuple(shape) or len(got) != len(shape) + batch_dims:
                lead = f"{batch_dims} leading batch dim(s) + " if batch_dims else ""
                raise ValueError(
                    f"parameter {name!r} has shape {tuple(got)}, expected {lead}{tuple(shape)}"
                )

    def flatten(self, params: Params) -> torch.Tensor:
        """Concatenate a params dict into one 1-D vector of length ``num_params`` (the order of ``param_shapes``)."""
        self._check_params(params, batch_dims=0)
        return torch.cat([params[n].reshape(-1) for n in self.param_shapes])

    def unflatten(self, flat: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """Cut a ``(..., num_params)`` vector into the params dict; leading dims are kept (a task or batch dim).

        For a 1-D vector the results are views of ``flat`` (no copy).
        """
        if flat.dim() == 0 or flat.shape[-1] != self.num_params:
            raise ValueError(
                f"flat weight vector has shape {tuple(flat.shape)}, but the target needs a last dimension of "
                f"num_params={self.num_params}"
            )
        lead = flat.shape[:-1]
        pieces = torch.split(flat, self.param_numels, dim=-1)
        return OrderedDict(
            (n, piece.reshape(*lead, *shape)) for (n, shape), piece in zip(self.param_shapes.items(), pieces)
        )

    def named_parameters_dict(self) -> "OrderedDict[str, torch.Tensor]":
        """The wrapped module's own values of the generated parameters (detached)."""
        own = dict(self.module.named_parameters())
        return OrderedDict((n, own[n].detach()) for n in self.param_shapes)

    def init_buffers(self) -> "OrderedDict[str, torch.Tensor]":
        """A fresh copy of the module's buffers (e.g. to keep one set of BatchNorm statistics per task)."""
        return OrderedDict((n, b.detach().clone()) for n, b in self.module.named_buffers())

    # ------------------------------------------------------------------ calls
    def __call__(
        self, params: Params, x: Any, *args: Any, buffers: Optional[Params] = None, **kwargs: Any
    ) -> Any:
        """Run the module on ``x`` with the given weights (``functional_call``).

        ``buffers`` replaces the module's buffers for this call; in training mode BatchNorm updates the passed
        tensors in place, so a caller can keep one buffer set per task.
        """
        self._check_params(params, batch_dims=0)
        tensors = dict(params)
        if buffers is not None:
            tensors.update(buffers)
        return functional_call(self.module, tensors, (x, *args), kwargs)

    def batched(
        self,
        stacked_params: Params,
        x: torch.Tensor,
        *,
        x_per_task: bool = False,
        buffers: Optional[Params] = None,
        buffers_per_task: bool = False,
    ) -> torch.Tensor:
        """Run ``T`` weight sets at once: every tensor of ``stacked_params`` has a leading task dimension ``T``.

        ``x`` is shared by all ``T`` weight sets (``x_per_task=False``, vmap ``in_dims=None``) or has its own leading
        task dimension (``x_per_task=True``). Returns outputs with a leading dimension ``T``. Uses
        ``torch.func.vmap`` over ``functional_call``: one batched call, no loop over tasks.
        """
        self._check_params(stacked_params, batch_dims=1)
        sizes = {v.shape[0] for v in stacked_params.values()}
        if len(sizes) != 1:
            raise ValueError(f"stacked_params have different leading (task) sizes: {sorted(sizes)}")
        if x_per_task and x.shape[0] != next(iter(sizes)):
            raise ValueError(
                f"x_per_task=True needs x with leading dim T={next(iter(sizes))}, got shape {tuple(x.shape)}"
            )
        module = self.module
        buf = dict(buffers) if buffers is not None else {}

        def one(p: Params, b: Params, xx: torch.Tensor) -> torch.Tensor:
            return functional_call(module, {**p, **b}, (xx,))

        return vmap(one, in_dims=(0, 0 if buffers_per_task else None, 0 if x_per_task else None))(
            dict(stacked_params), buf, x
        )

    # ------------------------------------------------------------------ module plumbing
    def train(self, mode: bool = True) -> "FunctionalTarget":
        self.module.train(mode)
        return self

    def eval(self) -> "FunctionalTarget":
        return self.train(False)

    @property
    def training(self) -> bool:
        return self.module.training

    def to(self, *args: Any, **kwargs: Any) -> "FunctionalTarget":
        self.module.to(*args, **kwargs)
        return self

    def __repr__(self) -> str:
        return (
            f"FunctionalTarget({type(self.module).__name__}, {len(self.param_shapes)} tensors, "
            f"num_params={self.num_params}, buffers={len(self.buffer_names)})"
        )


def wrap(model: nn.Module, include: Optional[Callable[[str, nn.Parameter], bool]] = None) -> FunctionalTarget:
    """Turn any ``nn.Module`` into a :class:`FunctionalTarget` whose weights are given at call time.

    By default every trainable parameter (``requires_grad=True``) is generated; ``include(name, param)`` chooses others.
    """
    if isinstance(model, FunctionalTarget):
        return model
    return FunctionalTarget(model, include=include)
