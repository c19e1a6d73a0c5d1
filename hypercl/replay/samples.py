"""A PNG grid of replayed samples: one row per task the replay model learned, decoded from FIXED latents, so a person
can see what the VAE still remembers of every task after the last one."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch

from ..checkpoint import atomic_save_figure

__all__ = ["replay_images", "write_sample_grid"]


@torch.no_grad()
def replay_images(
    replay: Any,
    per_task: int = 10,
    seed: int = 0,
    task_ids: Optional[Sequence[int]] = None,
    permutations: Optional[Sequence[torch.Tensor]] = None,
) -> tuple[torch.Tensor, list[str]]:
    """``(images (R, per_task, side, side), row_labels)`` decoded from ``per_task`` fixed latents (``seed``).

    A task-conditioned replay model (hypernetwork) gives one row per task (all rows decoded in one ``vmap`` call); an
    unconditional one (DGR) one row. ``permutations`` (Permuted MNIST: the benchmark's per-task pixel permutations)
    undo each task's permutation, so the rows show digits.
    """
    sampler = replay.sampler(task_ids)
    z = torch.randn(int(per_task), sampler.latent_dim, generator=torch.Generator().manual_seed(int(seed)))
    x = sampler.decode(z).float().cpu()  # (R, n, D)
    if sampler.conditional:
        labels = [f"task {t + 1}" for t in sampler.task_ids]
        if permutations is not None:
            rows = []
            for row, t in zip(x, sampler.task_ids):
                inverse = torch.argsort(permutations[t].cpu())
                rows.append(row[:, inverse])
            x = torch.stack(rows)
    else:
        labels = [f"tasks 1-{max(replay.learned_tasks) + 1}"]
    side = math.isqrt(x.shape[-1])
    if side * side != x.shape[-1]:
        raise ValueError(f"cannot show inputs of size {x.shape[-1]} as square images")
    return x.reshape(x.shape[0], x.shape[1], side, side), labels


def write_sample_grid(
    replay: Any,
    path: Union[str, os.PathLike],
    per_task: int = 10,
    seed: int = 0,
    task_ids: Optional[Sequence[int]] = None,
    permutations: Optional[Sequence[torch.Tensor]] = None,
    title: Optional[str] = None,
) -> Optional[Path]:
    """Write the grid of :func:`replay_images` as a PNG (matplotlib Agg; temp file + ``os.replace``).

    Returns the path, or ``None`` when matplotlib is not installed (the ``plot`` extra).
    """
    from ..plotting import pyplot

    plt = pyplot()
    if plt is None:
        return None
    images, labels = replay_images(replay, per_task, seed, task_ids, permutations)
    rows, cols, side, _ = images.shape
    mosaic = images.permute(0, 2, 1, 3).reshape(rows * side, cols * side).numpy()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.55 * cols + 1.2), max(1.2, 0.55 * rows + 0.8)))
    ax.imshow(mosaic, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_yticks([side * (i + 0.5) for i in range(rows)])
    ax.set_yticklabels(labels)
    ax.set_xticks([])
    for i in range(1, rows):
        ax.axhline(i * side - 0.5, color="tab:red", linewidth=0.6)
    ax.set_title(title or "replayed samples (fixed latents)", fontsize=9)
    return atomic_save_figure(fig, path, dpi=100)
