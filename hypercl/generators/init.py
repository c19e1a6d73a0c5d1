"""von Oswald et al. 2020's hypernetwork initialisation (the one place of the scheme; the hypernetwork and the GROW
generator use it)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["VON_OSWALD_EMB_STD", "von_oswald_init_"]

#: std of the task and chunk embeddings under ``init="von_oswald"``: ``--std_normal_temb`` and ``--std_normal_emb``
#: default to 1.0 in the original's ``utils/cli_args.py`` (lines 437 and 440, github.com/chrhenning/hypercl at
#: e32567889f772f8de783a437ff0beb2d426bc7b6), added to the MNIST scripts by ``mnist/replay/train_args_replay.py:67``
#: and not overridden by ``mnist/train_args_default.py``.
VON_OSWALD_EMB_STD = 1.0


@torch.no_grad()
def von_oswald_init_(named_params: Any, emb_std: float = VON_OSWALD_EMB_STD) -> None:
    """von Oswald et al.'s hypernetwork initialisation, in place, on ``(name, parameter)`` pairs.

    The original (``mnist/train_utils.py`` lines 255-269 of github.com/chrhenning/hypercl at e325678): every weight
    matrix (``ndim > 1``) gets ``xavier_uniform_``, every bias (``ndim == 1``) zero, then the task embeddings and the
    chunk embeddings are redrawn from ``N(0, std)`` (default std 1, :data:`VON_OSWALD_EMB_STD`). A parameter whose
    name contains ``"embedding"`` is treated as an embedding. ``xavier_uniform_``'s bound
    ``sqrt(6 / (fan_in + fan_out))`` is symmetric in the two fans, so the ``(in, out)`` storage of
    :class:`~hypercl.generators.base.ChunkProjection` gets the same bound as ``nn.Linear``'s ``(out, in)``.
    For the LSTM/GRU generators (no public code) the same rule is our transfer of the scheme: each of
    ``weight_ih``/``weight_hh`` (all gates stacked) is one xavier matrix, all biases zero.
    """
    for name, p in named_params:
        if "embedding" in name:
            nn.init.normal_(p, mean=0.0, std=emb_std)
        elif p.ndim == 1:
            nn.init.zeros_(p)
        else:
            nn.init.xavier_uniform_(p)
