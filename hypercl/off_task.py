"""Off-task uncertainty: a training-time term that teaches each task's network to be unsure on synthetic off-task
inputs made from the current training batch alone, so that entropy task inference (CL3) can tell the tasks apart.

Entropy task inference (the seed paper, section 4.1) picks, per test sample, the task whose network is most certain.
A network trained only on its own classes with cross-entropy has no reason to be uncertain elsewhere, and on Split
MNIST it is as confident on other tasks' digits as on its own (``docs/task_inference.md``). This term adds, to every
training step, ``weight · KL(u ‖ softmax(z_off))`` over the task's output units, where ``u`` is the uniform
distribution and ``z_off`` the task network's logits on a transformed copy of the batch that keeps its local
statistics but destroys its class (outlier exposure, Hendrycks et al. 2019, with the outliers synthesised from the
batch itself instead of taken from another dataset):

* ``pixel_shuffle``: each sample's input features permuted at random (one permutation per sample);
* ``patch_shuffle``: each image cut into ``grid × grid`` patches, the patches permuted at random per sample (strokes
  survive, the digit does not).

No other task's data, no stored data and no test data is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F

__all__ = ["OffTask", "OFF_TASK_KINDS", "parse_off_task", "uniform_kl"]

OFF_TASK_KINDS = ("pixel_shuffle", "patch_shuffle")


def uniform_kl(logits: torch.Tensor) -> torch.Tensor:
    """``mean_n KL(u ‖ softmax(logits_n))`` for ``logits`` ``(N, K)``: ``−mean_k log p_k − log K``, 0 exactly when the
    network is uniform on the sample."""
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError(f"uniform_kl needs logits of shape (N, K >= 2), got {tuple(logits.shape)}")
    k = logits.shape[1]
    return -F.log_softmax(logits, dim=-1).mean(-1).mean() - math.log(k)


@dataclass(frozen=True)
class OffTask:
    """The off-task term (module docstring): ``kind``, its ``weight`` and, for ``patch_shuffle``, the ``grid``."""

    kind: str = "patch_shuffle"
    weight: float = 0.1
    grid: int = 4

    def __post_init__(self) -> None:
        if self.kind not in OFF_TASK_KINDS:
            raise ValueError(f"unknown off-task kind {self.kind!r}; valid: {list(OFF_TASK_KINDS)}")
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (math.isfinite(w) and w > 0):
            raise ValueError(f"the off-task weight must be a finite number > 0, got {w!r}")
        if isinstance(self.grid, bool) or not isinstance(self.grid, int) or self.grid < 2:
            raise ValueError(f"the off-task grid must be an integer of at least 2, got {self.grid!r}")

    def make(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Off-task inputs of the batch ``x`` (``(N, D)`` flat images, or ``(N, C, H, W)``), same shape and dtype;
        the random draws come from ``generator`` (on the CPU; the learner's own)."""
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            raise TypeError("off-task inputs are made from a tensor batch of shape (N, D) or (N, C, H, W)")
        n = x.shape[0]
        if self.kind == "pixel_shuffle":
            flat = x.reshape(n, -1)
            perm = torch.rand(n, flat.shape[1], generator=generator).argsort(dim=1).to(x.device)
            return flat.gather(1, perm).reshape(x.shape)
        img = _as_images(x, self.grid)
        c, h, w = img.shape[1:]
        g = self.grid
        ph, pw = h // g, w // g
        patches = img.reshape(n, c, g, ph, g, pw).permute(0, 2, 4, 1, 3, 5).reshape(n, g * g, c * ph * pw)
        perm = torch.rand(n, g * g, generator=generator).argsort(dim=1).to(x.device)
        shuffled = patches.gather(1, perm.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))
        out = shuffled.reshape(n, g, g, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)
        return out.reshape(x.shape)

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        """``weight · uniform_kl(logits)`` over the task's units (``logits`` ``(N, K)``)."""
        return self.weight * uniform_kl(logits)

    def to_json(self) -> dict[str, Any]:
        """The run configuration's ``off_task`` entry: kind, weight and (``patch_shuffle`` only) grid."""
        out: dict[str, Any] = {"kind": self.kind, "weight": float(self.weight)}
        if self.kind == "patch_shuffle":
            out["grid"] = int(self.grid)
        return out

    def spec(self) -> str:
        """The canonical spec string (``kind:weight=W,grid=G``), as :func:`parse_off_task` reads it."""
        extra = f",grid={self.grid}" if self.kind == "patch_shuffle" else ""
        return f"{self.kind}:weight={self.weight:g}{extra}"


def _as_images(x: torch.Tensor, grid: int) -> torch.Tensor:
    if x.dim() == 4:
        img = x
    elif x.dim() == 2:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise ValueError(
                f"patch_shuffle needs square images: {x.shape[1]} input features are not a square of pixels; "
                "give (N, C, H, W) inputs or use pixel_shuffle"
            )
        img = x.reshape(x.shape[0], 1, side, side)
    else:
        raise ValueError(f"patch_shuffle needs (N, D) or (N, C, H, W) inputs, got shape {tuple(x.shape)}")
    h, w = img.shape[2:]
    if h % grid or w % grid:
        raise ValueError(f"patch_shuffle: the {h}x{w} images do not split into a {grid}x{grid} grid; pick a divisor")
    return img


def parse_off_task(spec: str) -> OffTask:
    """``"patch_shuffle"``, ``"patch_shuffle:weight=0.5,grid=7"`` or ``"pixel_shuffle:weight=0.1"`` → :class:`OffTask`
    (``;`` also separates options). Unknown kinds or options raise one ``ValueError`` naming them."""
    kind, _, rest = spec.strip().partition(":")
    opts: dict[str, float | int] = {}
    for item in rest.replace(";", ",").split(","):
        if not item.strip():
            continue
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in ("weight", "grid"):
            raise ValueError(f"off-task option {item.strip()!r}: valid options are weight=W and grid=G")
        try:
            opts[key] = float(value) if key == "weight" else int(value)
        except ValueError:
            raise ValueError(f"off-task option {key}: {value.strip()!r} is not a number") from None
    return OffTask(kind=kind.strip(), **opts)  # type: ignore[arg-type]
