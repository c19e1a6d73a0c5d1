"""The seed paper's equations as plain functions of tensors (no state): eq. 2, eq. 3 and eq. 4 (diagonal).

Each strategy in :mod:`hypercl.strategies` calls these; the tests check them against direct computations.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Optional

import torch
from torch.func import grad, vmap

__all__ = ["hnet_output_regularizer", "importance_weighted_regularizer", "diagonal_empirical_fisher", "normalize_fisher"]


def _check_pair(current: torch.Tensor, targets: torch.Tensor) -> None:
    if current.shape != targets.shape or current.dim() != 2:
        raise ValueError(
            f"expected current and target weights of the same shape (T-1, N), got {tuple(current.shape)} "
            f"and {tuple(targets.shape)}"
        )


def hnet_output_regularizer(current: torch.Tensor, targets: torch.Tensor, beta: float) -> torch.Tensor:
    """Eq. 2: ``β/(T−1) Σ_{t<T} ||f_h(e_t, c, Θ*_h) − f_h(e_t, c, Θ_h + ΔΘ_h)||²``.

    Args:
        current: ``(T−1, N)`` weights the hypernetwork generates now for the old tasks (with the lookahead step
            ``ΔΘ_h`` already applied when it is used).
        targets: ``(T−1, N)`` weights generated for the same tasks before learning task ``T`` (``Θ*_h``), detached.
        beta: the regularisation strength ``β``.
    """
    _check_pair(current, targets)
    return beta / current.shape[0] * (targets - current).pow(2).sum()


def importance_weighted_regularizer(
    current: torch.Tensor, targets: torch.Tensor, fisher: torch.Tensor, beta: float
) -> torch.Tensor:
    """Eq. 3 (IWR): ``β/(T−1) Σ_{t<T} Σ_i FI^t_i (f_hi(e_t, c, Θ*_h) − f_hi(e_t, c, Θ_h + ΔΘ_h))²``.

    ``fisher`` is ``(T−1, N)``: the diagonal Fisher information of eq. 4 of every old task's generated weights.
    With ``fisher`` all ones this is exactly eq. 2.
    """
    _check_pair(current, targets)
    if fisher.shape != current.shape:
        raise ValueError(f"fisher has shape {tuple(fisher.shape)}, expected {tuple(current.shape)}")
    return beta / current.shape[0] * (fisher * (targets - current).pow(2)).sum()


def diagonal_empirical_fisher(
    target: Callable[..., torch.Tensor],
    params: Mapping[str, torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    buffers: Optional[Mapping[str, torch.Tensor]] = None,
) -> dict[str, torch.Tensor]:
    """Eq. 4, diagonal: ``FI^t = 1/N_t Σ_i (∇_{Θ^t_m} L_task(x_i, y_i))²`` w.r.t. the GENERATED target weights.

    Per-sample gradients come from ``torch.func.vmap(torch.func.grad(...))`` over each batch (no loop over samples).
    ``target`` is a :class:`~hypercl.FunctionalTarget` (called as ``target(params, x, buffers=...)``), ``params`` the
    task's generated weights (detached here), ``loss_fn(logits, y)`` the task loss of ONE sample batch (mean).
    Returns a dict shaped like ``params``.
    """
    p = {n: v.detach() for n, v in params.items()}
    buf = dict(buffers) if buffers is not None else None

    def sample_loss(pp: Mapping[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = target(pp, x.unsqueeze(0), buffers=buf)
        return loss_fn(out, y.unsqueeze(0))

    per_sample_grad = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    total = {n: torch.zeros_like(v) for n, v in p.items()}
    count = 0
    for x, y in batches:
        g = per_sample_grad(p, x, y)
        for n in total:
            total[n] += g[n].pow(2).sum(0)
        count += x.shape[0]
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
