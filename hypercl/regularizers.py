"""The seed paper's equations as plain functions of tensors (no state): eq. 2 and eq. 3 here, eq. 4 (the diagonal
Fisher) in :mod:`hypercl.fisher` (re-exported here).

Each strategy in :mod:`hypercl.strategies` calls these; the tests check them against direct computations.
"""

from __future__ import annotations

from typing import Optional

import torch

from .fisher import diagonal_empirical_fisher, normalize_fisher

__all__ = [
    "squared_distance",
    "hnet_output_regularizer",
    "importance_weighted_regularizer",
    "diagonal_empirical_fisher",
    "normalize_fisher",
]


def _check_pair(current: torch.Tensor, targets: torch.Tensor) -> None:
    if current.shape != targets.shape or current.dim() != 2:
        raise ValueError(
            f"expected current and target weights of the same shape (T-1, N), got {tuple(current.shape)} "
            f"and {tuple(targets.shape)}"
        )


class _SquaredDistance(torch.autograd.Function):
    """``Σ w ⊙ (targets − current)²`` with a hand-written backward: three passes over the ``(T−1, N)`` tensors per
    step (difference, weighting, gradient) instead of the seven that autograd's sub/pow/mul/sum chain makes, and one
    saved temporary. Gradient only for ``current`` (targets and weights are constants). Works under ``vmap``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(current: torch.Tensor, targets: torch.Tensor, weight: Optional[torch.Tensor]):
        diff = targets - current
        weighted = diff if weight is None else weight * diff
        return torch.linalg.vecdot(weighted, diff).sum(), weighted

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(output[1])
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx, grad_value: torch.Tensor, _grad_weighted: Optional[torch.Tensor]):
        (weighted,) = ctx.saved_tensors
        return weighted * (-2.0 * grad_value), None, None


def squared_distance(
    current: torch.Tensor, targets: torch.Tensor, weight: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """``Σ_t Σ_i w_ti (targets_ti − current_ti)²`` (``w`` = 1 when ``weight`` is None), differentiable in
    ``current``."""
    return _SquaredDistance.apply(current, targets, weight)[0]


def hnet_output_regularizer(
    current: torch.Tensor, targets: torch.Tensor, beta: float, scale_sq: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Eq. 2: ``β/(T−1) Σ_{t<T} ||f_h(e_t, c, Θ*_h) − f_h(e_t, c, Θ_h + ΔΘ_h)||²``.

    Args:
        current: ``(T−1, N)`` weights the hypernetwork generates now for the old tasks (with the lookahead step
            ``ΔΘ_h`` already applied when it is used).
        targets: ``(T−1, N)`` weights generated for the same tasks before learning task ``T`` (``Θ*_h``), detached.
        beta: the regularisation strength ``β``.
        scale_sq: for eq. 2 evaluated on the generator's RAW outputs ``r`` (``Θ = offset + gain ⊙ r``): ``gain²``
            (``(T−1, N)``, or ``(1, N)`` shared by all old tasks, see :meth:`~hypercl.HyperNetwork.to_raw_space`);
            the value is then the same norm of the weights. ``None``: ``current``/``targets`` are the weights
            themselves.
    """
    _check_pair(current, targets)
    if scale_sq is not None and scale_sq.shape not in (current.shape, (1, *current.shape[1:])):
        raise ValueError(
            f"scale_sq has shape {tuple(scale_sq.shape)}, expected {tuple(current.shape)} or {(1, *current.shape[1:])}"
        )
    return beta / current.shape[0] * squared_distance(current, targets.detach(), scale_sq)


def importance_weighted_regularizer(
    current: torch.Tensor, targets: torch.Tensor, fisher: torch.Tensor, beta: float
) -> torch.Tensor:
    """Eq. 3 (IWR): ``β/(T−1) Σ_{t<T} Σ_i FI^t_i (f_hi(e_t, c, Θ*_h) − f_hi(e_t, c, Θ_h + ΔΘ_h))²``.

    ``fisher`` is ``(T−1, N)``: the diagonal Fisher information of eq. 4 of every old task's generated weights.
    With ``fisher`` all ones this is exactly eq. 2. On the generator's raw outputs pass ``FI ⊙ gain²`` (see
    :meth:`~hypercl.HyperNetwork.to_raw_space`).
    """
    _check_pair(current, targets)
    if fisher.shape != current.shape:
        raise ValueError(f"fisher has shape {tuple(fisher.shape)}, expected {tuple(current.shape)}")
    return beta / current.shape[0] * squared_distance(current, targets.detach(), fisher.detach())
