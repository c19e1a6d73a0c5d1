"""Any ``nn.Module`` as a functional target network.

:func:`wrap` turns a module into a :class:`FunctionalTarget`: the ordered shapes of the parameters a hypernetwork has
to generate, a flat-vector view of them, and calls of the module with *external* weights through
``torch.func.functional_call`` (one weight set) or ``torch.func.vmap`` over it (many weight sets at once).
The module needs no special base class.

Inputs ``x`` are a tensor, a tuple/list of tensors (positional arguments) or a dict of tensors (keyword arguments:
``input_ids``, ``attention_mask``, ...); the call returns the LOGITS the ``output=`` rule of :func:`wrap` picks
(default: a tensor as it is, else ``.logits`` / ``["logits"]``, else the first tensor of a tuple), so non-tensor
parts of an output (caches) never reach ``vmap``.

Where ``vmap`` cannot run the module (an op without a batching rule — ``nn.LSTM``/``nn.GRU``/``nn.RNN`` —, data-
dependent control flow, random ops in training mode), :meth:`FunctionalTarget.vmap` detects it ONCE per target and
use (``purpose``, train/eval mode), warns once naming the op and the cost, and from then on runs a Python loop over
the mapped dimension that gives the same numbers; everywhere else the vmapped path stays.
"""

from __future__ import annotations

import re
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union, cast

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

from .batches import call_args, pick_logits, whole_output

__all__ = [
    "FunctionalTarget",
    "wrap",
    "whole_output",
    "VmapFallbackWarning",
    "loop_map",
    "kept_modes",
]

Params = Mapping[str, torch.Tensor]
Output = Union[None, str, Callable[[Any], Any]]


class VmapFallbackWarning(RuntimeWarning):
    """``vmap`` could not run the target; a loop over the mapped dimension runs instead (same numbers, slower)."""


def _mapped_size(args: Sequence[Any], in_dims: Sequence[Optional[int]]) -> int:
    for a, d in zip(args, in_dims):
        if d is not None:
            leaves = [leaf for leaf in tree_flatten(a)[0] if isinstance(leaf, torch.Tensor)]
            if leaves:
                return leaves[0].shape[d]
    raise ValueError("loop_map needs at least one mapped argument (an in_dims entry that is not None)")


def loop_map(fn: Callable[..., Any], in_dims: Sequence[Optional[int]], *args: Any) -> Any:
    """What ``vmap(fn, in_dims)(*args)`` computes, as a Python loop over the mapped dimension (``in_dims`` per
    argument: ``0`` or ``None``), outputs stacked along a new leading dimension. The fallback of
    :meth:`FunctionalTarget.vmap`; differentiable."""
    n = _mapped_size(args, in_dims)
    outs = []
    for i in range(n):
        one = [
            tree_map(lambda t: t[i] if isinstance(t, torch.Tensor) else t, a) if d is not None else a
            for a, d in zip(args, in_dims)
        ]
        outs.append(fn(*one))
    flat = [tree_flatten(o) for o in outs]
    spec = flat[0][1]
    return tree_unflatten([torch.stack(list(leaves)) for leaves in zip(*(f[0] for f in flat))], spec)


def _vmap_op(error: BaseException) -> str:
    text = str(error)
    m = re.search(r"aten::[\w.]+", text)
    if m:
        return m.group(0).rstrip(".")
    if "data-dependent control flow" in text or ".item()" in text:
        return "data-dependent control flow (a Python branch or .item() on a tensor)"
    if "random" in text.lower():
        return "a random operation (dropout in training mode)"
    return text.splitlines()[0][:200] if text else type(error).__name__


class FunctionalTarget:
    """A module whose trainable parameters are supplied from outside at call time.

    Attributes:
        module: the wrapped module (its own parameters serve as templates: shapes, dtypes and the initial scale).
        param_shapes: ordered ``dict[str, torch.Size]`` of the generated parameters (tied parameters once).
        num_params: total number of generated scalars ``N``.
    """

    def __init__(
        self, module: nn.Module, include: Optional[Callable[[str, nn.Parameter], bool]] = None, output: Output = None
    ) -> None:
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
        self.param_shapes: OrderedDict[str, torch.Size] = OrderedDict((n, p.shape) for n, p in chosen)
        self.param_numels: list[int] = [p.numel() for _, p in chosen]
        self.num_params: int = sum(self.param_numels)
        # Buffer names (e.g. BatchNorm running statistics) the caller may replace per call.
        self.buffer_names: list[str] = [n for n, _ in module.named_buffers()]
        if not (output is None or isinstance(output, str) or callable(output)):
            raise TypeError(f"output= must be None, an attribute/key name or a callable, got {type(output).__name__}")
        #: how the logits are picked from the module's output (see :func:`wrap`)
        self.output: Output = output
        #: ``(purpose, training) -> True`` (vmap works) / ``False`` (loop fallback), learned on first use
        self.vmap_ok: dict[tuple[str, bool], bool] = {}
        #: ``(purpose, training) -> the op that made vmap fail``
        self.vmap_fallback_reason: dict[tuple[str, bool], str] = {}

    # ------------------------------------------------------------------ layout
    def check_params(self, params: Params, batch_dims: int) -> None:
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
                raise ValueError(f"parameter {name!r} has shape {tuple(got)}, expected {lead}{tuple(shape)}")

    def flatten(self, params: Params) -> torch.Tensor:
        """Concatenate a params dict into one 1-D vector of length ``num_params`` (the order of ``param_shapes``)."""
        self.check_params(params, batch_dims=0)
        return torch.cat([params[n].reshape(-1) for n in self.param_shapes])

    def unflatten(self, flat: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
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

    def named_parameters_dict(self) -> OrderedDict[str, torch.Tensor]:
        """The wrapped module's own values of the generated parameters (detached)."""
        own = dict(self.module.named_parameters())
        return OrderedDict((n, own[n].detach()) for n in self.param_shapes)

    def frozen_parameters(self) -> OrderedDict[str, torch.Tensor]:
        """The module's parameters the hypernetwork does NOT generate (frozen layers, parameters ``include`` left
        out), detached: they decide the outputs as much as the generated ones, so checkpoints keep them."""
        return OrderedDict((n, p.detach()) for n, p in self.module.named_parameters() if n not in self.param_shapes)

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the generated parameters (the hypernetwork and the inputs follow it)."""
        own = dict(self.module.named_parameters())
        return own[next(iter(self.param_shapes))].dtype

    def init_buffers(self) -> OrderedDict[str, torch.Tensor]:
        """A fresh copy of the module's buffers (e.g. to keep one set of BatchNorm statistics per task)."""
        return OrderedDict((n, b.detach().clone()) for n, b in self.module.named_buffers())

    # ------------------------------------------------------------------ calls
    def __call__(self, params: Params, x: Any, *args: Any, buffers: Optional[Params] = None, **kwargs: Any) -> Any:
        """Run the module on ``x`` with the given weights (``functional_call``).

        ``buffers`` replaces the module's buffers for this call; in training mode BatchNorm updates the passed
        tensors in place, so a caller can keep one buffer set per task.
        """
        self.check_params(params, batch_dims=0)
        tensors = dict(params)
        if buffers is not None:
            tensors.update(buffers)
        return self.apply(tensors, x, *args, **kwargs)

    def apply(self, tensors: Params, x: Any, *args: Any, **kwargs: Any) -> Any:
        """``functional_call`` of the module with ``tensors`` (parameters and buffers) on ``x`` (tensor, tuple/list
        = positional, dict = keyword arguments; ``args``/``kwargs`` appended), and the logits picked (no checks)."""
        pos, kw = call_args(x)
        if args or kwargs:
            pos, kw = (*pos, *args), {**kw, **kwargs}
        out = functional_call(self.module, cast(dict, tensors), pos, kw)
        return pick_logits(out, self.output, type(self.module).__name__)

    def vmap(
        self,
        fn: Callable[..., Any],
        in_dims: Sequence[Optional[int]],
        *args: Any,
        purpose: str = "weights",
        cost: str = "one call per weight set",
    ) -> Any:
        """``torch.func.vmap(fn, in_dims)(*args)`` for a ``fn`` that calls this target; where vmap cannot run the
        module, a loop over the mapped dimension (:func:`loop_map`) with the same numbers.

        The first call per (``purpose``, train/eval mode) tries vmap; if it fails and the loop succeeds, the loop
        is used from then on and one :class:`VmapFallbackWarning` names the op and ``cost``. An error the loop
        raises as well is the caller's (raised as is).
        """
        key = (purpose, self.module.training)
        ok = self.vmap_ok.get(key)
        if ok:
            return vmap(fn, in_dims=tuple(in_dims))(*args)
        if ok is False:
            return loop_map(fn, in_dims, *args)
        try:
            out = vmap(fn, in_dims=tuple(in_dims))(*args)
        except Exception as e:
            if any(k in str(e).lower() for k in ("inplace", "in place", "in-place")):
                raise  # e.g. BatchNorm updating ONE shared buffer set from T weight sets: needs per-task buffers
            out = loop_map(fn, in_dims, *args)
            op = _vmap_op(e)
            self.vmap_ok[key] = False
            self.vmap_fallback_reason[key] = op
            warnings.warn(
                f"{type(self.module).__name__}: torch.func.vmap cannot run this target ({op}); {purpose} now run as "
                f"a Python loop ({cost}), with the same results but slower. Everything else stays vmapped.",
                VmapFallbackWarning,
                stacklevel=3,
            )
            return out
        self.vmap_ok[key] = True
        return out

    def batched(
        self,
        stacked_params: Params,
        x: Any,
        *,
        x_per_task: bool = False,
        buffers: Optional[Params] = None,
        buffers_per_task: bool = False,
    ) -> torch.Tensor:
        """Run ``T`` weight sets at once: every tensor of ``stacked_params`` has a leading task dimension ``T``.

        ``x`` is shared by all ``T`` weight sets (``x_per_task=False``, vmap ``in_dims=None``) or has its own leading
        task dimension (``x_per_task=True``; every tensor of a tuple/dict ``x``). Returns the logits with a leading
        dimension ``T``. Uses ``torch.func.vmap`` over ``functional_call``: one batched call, no loop over tasks —
        unless vmap cannot run the module (recurrent layers), then a loop over the ``T`` weight sets
        (:meth:`vmap`).
        """
        self.check_params(stacked_params, batch_dims=1)
        sizes = {v.shape[0] for v in stacked_params.values()}
        if len(sizes) != 1:
            raise ValueError(f"stacked_params have different leading (task) sizes: {sorted(sizes)}")
        if x_per_task:
            lead = {leaf.shape[0] for leaf in tree_flatten(x)[0] if isinstance(leaf, torch.Tensor)}
            if lead != sizes:
                raise ValueError(
                    f"x_per_task=True needs x with leading dim T={next(iter(sizes))}, got leading sizes {sorted(lead)}"
                )
        buf = dict(buffers) if buffers is not None else {}

        def one(p: Params, b: Params, xx: Any) -> Any:
            return self.apply({**p, **b}, xx)

        return self.vmap(
            one,
            (0, 0 if buffers_per_task else None, 0 if x_per_task else None),
            dict(stacked_params),
            buf,
            x,
            purpose="weight sets (target.batched)",
            cost="one forward per weight set: T forwards instead of one",
        )

    # ------------------------------------------------------------------ module plumbing
    def train(self, mode: bool = True) -> FunctionalTarget:
        self.module.train(mode)
        return self

    def eval(self) -> FunctionalTarget:
        return self.train(False)

    @property
    def training(self) -> bool:
        return self.module.training

    def to(self, *args: Any, **kwargs: Any) -> FunctionalTarget:
        self.module.to(*args, **kwargs)
        return self

    def __repr__(self) -> str:
        return (
            f"FunctionalTarget({type(self.module).__name__}, {len(self.param_shapes)} tensors, "
            f"num_params={self.num_params}, buffers={len(self.buffer_names)})"
        )


def wrap(
    model: Union[nn.Module, FunctionalTarget],
    include: Optional[Callable[[str, nn.Parameter], bool]] = None,
    output: Output = None,
) -> FunctionalTarget:
    """Turn any ``nn.Module`` into a :class:`FunctionalTarget` whose weights are given at call time.

    By default every trainable parameter (``requires_grad=True``) is generated; ``include(name, param)`` chooses others.
    ``output`` picks the logits from the module's output: a callable (``output=lambda out: out[0]``), an attribute or
    key name (``output="logits"``), :func:`whole_output` (the output as it is), or ``None``: a tensor as it is, else
    ``.logits`` / ``["logits"]``, else the first tensor of a tuple.
    """
    if isinstance(model, FunctionalTarget):
        return model
    return FunctionalTarget(model, include=include, output=output)


@contextmanager
def kept_modes(*modules: Union[nn.Module, FunctionalTarget]) -> Iterator[None]:
    """Every submodule's train/eval mode as it is on entry (a :class:`FunctionalTarget`: its module's), put back on
    exit, each submodule its own (not ``.train()``'s one for all): a frozen backbone the user keeps in eval mode stays
    there, whatever the block switches."""
    trees = [m.module if isinstance(m, FunctionalTarget) else m for m in modules]
    modes = [(m, m.training) for tree in trees for m in tree.modules()]
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
