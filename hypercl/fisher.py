"""Eq. 4 of the seed paper ("Continual Learning with Dependency Preserving Hypernetworks", section 3.2): the
diagonal empirical Fisher information of the GENERATED target weights,

    FI^t = 1/N_t Σ_i  ∇_{Θ^t_m} L_task(Θ_h, e^t, y_i, x_i) ⊙ ∇_{Θ^t_m} L_task(Θ_h, e^t, y_i, x_i)

(the diagonal of eq. 4's outer product), which weights eq. 3 (IWR). The derivatives are taken with respect to the
target ("main network") weights the hypernetwork generated for task ``t``, not the hypernetwork's own parameters.

Per-sample gradients are ``torch.func.vmap(torch.func.grad(...))`` over each batch; where vmap cannot run the target
(recurrent layers), :meth:`~hypercl.target.FunctionalTarget.vmap` falls back once to a loop over the batch's
samples (one gradient per sample, the same numbers). Inputs may be tensors, tuples or dicts of tensors
(:mod:`hypercl.batches`).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Optional

import torch
from torch.func import grad, vmap

from .batches import batch_len, map_inputs
from .target import kept_modes

__all__ = ["diagonal_empirical_fisher", "normalize_fisher", "task_fisher"]


def diagonal_empirical_fisher(
    target: Callable[..., torch.Tensor],
    params: Mapping[str, torch.Tensor],
    batches: Iterable[tuple[Any, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    buffers: Optional[Mapping[str, torch.Tensor]] = None,
) -> dict[str, torch.Tensor]:
    """Eq. 4, diagonal: ``FI^t = 1/N_t Σ_i (∇_{Θ^t_m} L_task(x_i, y_i))²`` w.r.t. the GENERATED target weights.

    ``target`` is a :class:`~hypercl.FunctionalTarget` (called as ``target(params, x, buffers=...)``; any callable
    with that signature works, without the loop fallback), ``params`` the task's generated weights (detached here),
    ``batches`` ``(x, y)`` pairs (``x`` a tensor, tuple or dict of tensors), ``loss_fn(logits, y)`` the task loss of
    ONE sample batch (mean). Returns a dict shaped like ``params``.
    """
    p = {n: v.detach() for n, v in params.items()}
    buf = dict(buffers) if buffers is not None else None

    def sample_loss(pp: Mapping[str, torch.Tensor], x: Any, y: torch.Tensor) -> torch.Tensor:
        out = target(pp, map_inputs(lambda t: t.unsqueeze(0), x), buffers=buf)
        return loss_fn(out, y.unsqueeze(0))

    g_fn = grad(sample_loss)
    mapper = getattr(target, "vmap", None)
    if mapper is not None:

        def per_sample_grad(pp: dict, x: Any, y: torch.Tensor) -> dict:
            return mapper(
                g_fn,
                (None, 0, 0),
                pp,
                x,
                y,
                purpose="per-sample gradients (Fisher, eq. 4)",
                cost="one gradient per sample instead of one vmapped call per batch",
            )
    else:
        per_sample_grad = vmap(g_fn, in_dims=(None, 0, 0))
    total = {n: torch.zeros_like(v) for n, v in p.items()}
    count = 0
    for x, y in batches:
        g = per_sample_grad(p, x, y)
        for n in total:
            total[n] += g[n].pow(2).sum(0)
        count += batch_len(x)
    if count == 0:
        raise ValueError("diagonal_empirical_fisher needs at least one sample")
    return {n: v / count for n, v in total.items()}


def normalize_fisher(fisher: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Scale a task's flat Fisher vector to mean 1, so eq. 3 with a uniform Fisher equals eq. 2 at the same β.

    An all-zero Fisher (a task whose loss is flat) becomes all ones (falls back to eq. 2) instead of dividing by 0.
    """
    mean = fisher.mean()
    if mean <= eps:
        return torch.ones_like(fisher)
    return fisher / mean


def task_fisher(
    target: Any,
    params: Mapping[str, torch.Tensor],
    batches: Iterable[tuple[Any, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    buffers: Optional[Mapping[str, torch.Tensor]] = None,
    normalize: bool = True,
) -> torch.Tensor:
    """Eq. 4 of one task as a flat ``(N,)`` vector in the target's parameter order, the target in eval mode
    (restored after); scaled to mean 1 when ``normalize`` (IWR), raw otherwise (EWC)."""
    with kept_modes(target):  # every submodule's mode, restored after
        target.eval()
        fisher = diagonal_empirical_fisher(target, params, batches, loss_fn, buffers=buffers)
    flat = target.flatten(fisher)
    return normalize_fisher(flat) if normalize else flat
