"""Small synthetic problems shared by the tests."""

import torch
from torch import nn

import hypercl


def tiny_mlp(d_in=10, hidden=16, d_out=2, bn=False):
    layers = [nn.Linear(d_in, hidden)]
    if bn:
        layers.append(nn.BatchNorm1d(hidden))
    layers += [nn.ReLU(), nn.Linear(hidden, d_out)]
    return nn.Sequential(*layers)


def tiny_hnet(model=None, generator="lstm", num_tasks=0, **kw):
    kw.setdefault("chunk_size", 64)
    kw.setdefault("task_emb_dim", 8)
    kw.setdefault("chunk_emb_dim", 8)
    kw.setdefault("hidden_size", 16 if generator in ("lstm", "gru") else (16, 16))
    return hypercl.HyperNetwork(model if model is not None else tiny_mlp(), generator=generator,
                                num_tasks=num_tasks, **kw)


def conflicting_tasks(n=400, d=10, seed=0):
    """Three binary tasks on the SAME input distribution with conflicting rules:
    task 0: sign(w·x), task 1: the opposite labels, task 2: sign(v·x) for another direction v."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g)
    v = torch.randn(d, generator=g)
    tasks = []
    for rule in (w, -w, v):
        xs = [torch.randn(n, d, generator=g) for _ in range(2)]
        ys = [(x @ rule > 0).long() for x in xs]
        tasks.append(((xs[0], ys[0]), (xs[1], ys[1])))
    return tasks  # [(train, test)] * 3


# ------------------------------------------------------------------ real MNIST, found as the library finds it
_MNIST_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte")


def mnist_root():
    """The library's data root (``hypercl.data.paths.resolve_data_root()``: ``$HYPERCL_DATA``, else
    ``~/.cache/hypercl/data``) as a string when its ``MNIST/raw`` holds the four files (``.gz`` or plain), else None."""
    from hypercl.data.paths import resolve_data_root

    raw = resolve_data_root() / "MNIST" / "raw"
    ok = all((raw / f"{s}.gz").is_file() or (raw / s).is_file() for s in _MNIST_STEMS)
    return str(resolve_data_root()) if ok else None


def mnist_skip_reason():
    from hypercl.data.paths import resolve_data_root

    return (f"MNIST is not in {resolve_data_root() / 'MNIST' / 'raw'} (the library's data root: $HYPERCL_DATA, else "
            "~/.cache/hypercl/data): `hypercl run --benchmark split_mnist --quick` downloads it there, or set "
            "HYPERCL_DATA to a folder holding MNIST/raw")
