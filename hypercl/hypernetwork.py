"""The hypernetwork: task embeddings + chunk plan + generator → the target's weights.

``f_h(e_t, c, Θ_h) = Θ^t_m`` (seed paper section 3): :class:`HyperNetwork` owns the growable table of task embeddings
``e_t``, the :class:`~hypercl.ChunkPlan` and a generator backend, and returns the weights of the wrapped target for one
or many tasks in ONE generator call.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .chunking import ChunkPlan
from .generators import ChunkedMLPGenerator, Generator, GRUGenerator, LSTMGenerator, MLPGenerator
from .generators.init import VON_OSWALD_EMB_STD, von_oswald_init_
from .target import FunctionalTarget, wrap

__all__ = [
    "HyperNetwork",
    "GENERATORS",
    "INIT_SCHEMES",
    "default_chunk_size",
    "init_scale_map",
    "von_oswald_init_",
    "VON_OSWALD_EMB_STD",
    "build_generator",
]

GENERATORS = {"lstm": LSTMGenerator, "gru": GRUGenerator, "mlp": MLPGenerator, "chunked_mlp": ChunkedMLPGenerator}
DEFAULT_HIDDEN: dict[str, Any] = {"lstm": 64, "gru": 64, "mlp": (10, 10), "chunked_mlp": (10, 10)}

TaskIds = Union[int, Sequence[int], torch.Tensor]

#: ``"target_scale"``: backend defaults (``nn.Linear``-like) + the target's init-scale map (:func:`init_scale_map`);
#: ``"von_oswald"``: von Oswald et al. 2020's own scheme (:func:`von_oswald_init_`), weights emitted unscaled.
INIT_SCHEMES = ("target_scale", "von_oswald")


def task_id_list(task_ids: TaskIds, num_tasks: int) -> list[int]:
    """``task_ids`` (an int, a sequence or a tensor) as a list of ints, each checked against ``num_tasks``."""
    if isinstance(task_ids, torch.Tensor):
        ids = [int(i) for i in task_ids.reshape(-1).tolist()]
    elif isinstance(task_ids, int):
        ids = [task_ids]
    else:
        ids = [int(i) for i in task_ids]
    if not ids:
        raise ValueError("task_ids is empty")
    bad = [i for i in ids if not 0 <= i < num_tasks]
    if bad and num_tasks == 0:
        raise KeyError(
            f"unknown task id(s) {bad}: this model has no tasks yet; learn one with fit_task() or "
            "register it with add_task()"
        )
    if bad:
        raise KeyError(
            f"unknown task id(s) {bad}: this model has {num_tasks} task(s) (ids 0..{num_tasks - 1}); "
            "register new tasks with add_task()"
        )
    return ids


def build_generator(
    kind: str, plan: ChunkPlan, task_emb_dim: int, chunk_emb_dim: int, hidden: Any, **kwargs: Any
) -> Generator:
    """The generator ``kind`` (a key of :data:`GENERATORS`) for ``plan``; ``hidden``: an LSTM/GRU size or MLP
    widths."""
    if kind in ("lstm", "gru"):
        return GENERATORS[kind](plan, task_emb_dim, chunk_emb_dim, hidden_size=int(hidden), **kwargs)
    if kind == "chunked_mlp":
        return ChunkedMLPGenerator(plan, task_emb_dim, chunk_emb_dim, hidden=tuple(hidden), **kwargs)
    return MLPGenerator(plan, task_emb_dim, hidden=tuple(hidden), **kwargs)


def default_chunk_size(
    num_params: int, kind: str, task_emb_dim: int, chunk_emb_dim: int, hidden: Any, **kwargs: Any
) -> int:
    """The chunk size used when ``chunk_size=None``.

    ``mlp``: ``num_params`` (one chunk). Chunked backends: the FEWEST chunks (``1, 2, 4, …``: a short sequence keeps
    the LSTM/GRU fast) for which the generator has no more parameters than the target; if no power of two gets
    there (a tiny target), the candidate with the fewest generator parameters. Parameters are counted on the
    ``meta`` device, so nothing is allocated.
    """
    if kind == "mlp":
        return num_params
    best: Optional[tuple[int, int]] = None
    n = 1
    while True:
        c = math.ceil(num_params / n)
        with torch.device("meta"):
            gen = build_generator(kind, ChunkPlan(num_params, c), task_emb_dim, chunk_emb_dim, hidden, **kwargs)
        count = sum(p.numel() for p in gen.parameters())
        if count <= num_params:
            return c
        if best is None or count < best[0]:
            best = (count, c)
        if c == 1:
            return best[1]
        n *= 2


def init_scale_map(target: FunctionalTarget) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Per-weight ``(offset, gain)`` and the reference std taken from the target module's own initialisation.

    The hypernetwork emits ``Θ = offset + gain ⊙ raw``. For a tensor with a random init, ``offset = 0`` and
    ``gain = std(tensor) / ref_std``; for a constant-initialised tensor (BatchNorm ``weight = 1``, zero biases)
    ``offset`` is that constant and ``gain = 1``. ``ref_std`` is the root-mean-square std of the random tensors.
    With ``raw`` calibrated to std ``ref_std`` at init, generated weights start with the scale (and the BatchNorm
    gains near 1) that the target's standard init would give them.
    """
    stats = []
    for name, p in target.named_parameters_dict().items():
        p = p.float()
        std = p.std().item() if p.numel() > 1 else 0.0
        stats.append((name, p.numel(), p.mean().item(), std if math.isfinite(std) else 0.0))
    random = [(n, s) for _, n, _, s in stats if s > 1e-12]
    ref = math.sqrt(sum(n * s * s for n, s in random) / sum(n for n, _ in random)) if random else 0.05
    offsets, gains = [], []
    for _, n, mean, std in stats:
        if std > 1e-12:
            offsets.append(torch.zeros(n))
            gains.append(torch.full((n,), std / ref))
        else:
            offsets.append(torch.full((n,), mean))
            gains.append(torch.ones(n))
    return torch.cat(offsets), torch.cat(gains), ref


class HyperNetwork(nn.Module):
    """A hypernetwork ``f_h(e_t, c, Θ_h)`` for a wrapped target (seed paper section 3, eq. 1).

    Args:
        target: a :class:`FunctionalTarget` or any ``nn.Module`` (wrapped on the fly).
        generator: ``"lstm"`` (LSTM_NET), ``"gru"``, ``"mlp"`` (full), ``"chunked_mlp"`` (HNET) or a
            :class:`~hypercl.generators.Generator` instance built for a matching plan.
        chunk_size: chunk length ``C``; ``None`` picks :func:`default_chunk_size`.
        task_emb_dim, chunk_emb_dim: sizes of ``e_t`` and ``c_j``.
        hidden_size: recurrent hidden size (int, default 64) or MLP hidden layers (tuple, default ``(10, 10)``).
        num_tasks: register this many tasks up front (more with :meth:`add_task`).
        init_scaling: calibrate the generated weights to the target's own init scale (see :func:`init_scale_map`);
            used by ``init="target_scale"`` only.
        init: ``"target_scale"`` (default: backend defaults + the target's init-scale map) or ``"von_oswald"``
            (von Oswald et al. 2020's scheme, :func:`von_oswald_init_`: xavier weights, zero biases, ``N(0, 1)``
            embeddings, generated weights = raw generator outputs, no rescaling).
        **generator_kwargs: passed to the backend (``activation`` for MLPs, ``num_layers``/``out_bias`` for RNNs).

    ``hnet.config`` holds these arguments as plain data (``None`` for a Generator instance), so a checkpoint can
    rebuild the hypernetwork.
    """

    task_conditioned = True
    #: the learner accepts any module with this flag and the HyperNetwork-like interface
    is_weight_source = True

    generator: Generator
    weight_offset: torch.Tensor
    weight_gain: torch.Tensor

    def __init__(
        self,
        target: Union[FunctionalTarget, nn.Module],
        generator: Union[str, Generator] = "lstm",
        chunk_size: Optional[int] = None,
        task_emb_dim: int = 96,
        chunk_emb_dim: int = 96,
        hidden_size: Any = None,
        num_tasks: Optional[int] = None,
        init_scaling: bool = True,
        init: str = "target_scale",
        **generator_kwargs: Any,
    ) -> None:
        super().__init__()
        if init not in INIT_SCHEMES:
            raise ValueError(f"unknown init {init!r}; valid: {list(INIT_SCHEMES)}")
        self.init = init
        self._target = wrap(target)
        n = self._target.num_params
        self.task_emb_dim = int(task_emb_dim)
        self.chunk_emb_dim = int(chunk_emb_dim)
        if isinstance(generator, Generator):
            if generator.plan.num_params != n:
                raise ValueError(f"the generator's plan is for {generator.plan.num_params} weights, the target has {n}")
            if generator.task_emb_dim != self.task_emb_dim:
                raise ValueError(
                    f"the generator expects task embeddings of size {generator.task_emb_dim}, "
                    f"task_emb_dim is {self.task_emb_dim}"
                )
            self.generator_kind = type(generator).__name__
            self.generator = generator
            self.config: Optional[dict] = None
        elif isinstance(generator, str) and generator in GENERATORS:
            hidden = DEFAULT_HIDDEN[generator] if hidden_size is None else hidden_size
            if generator in ("mlp", "chunked_mlp") and isinstance(hidden, int):
                hidden = (hidden, hidden)
            if chunk_size is None:
                chunk_size = default_chunk_size(n, generator, task_emb_dim, chunk_emb_dim, hidden, **generator_kwargs)
            plan = ChunkPlan(n, chunk_size)
            self.generator_kind = generator
            self.generator = build_generator(generator, plan, task_emb_dim, chunk_emb_dim, hidden, **generator_kwargs)
            self.config = {
                "generator": generator,
                "chunk_size": int(chunk_size),
                "task_emb_dim": self.task_emb_dim,
                "chunk_emb_dim": self.chunk_emb_dim,
                "hidden_size": hidden if isinstance(hidden, int) else [int(h) for h in hidden],
                "init_scaling": bool(init_scaling),
                "init": init,
                **generator_kwargs,
            }
        else:
            raise ValueError(f"unknown generator {generator!r}; valid: {sorted(GENERATORS)} or a Generator instance")
        self.plan = self.generator.plan
        self.task_embeddings = nn.ParameterList()
        offset, gain, ref = init_scale_map(self._target)
        if init == "von_oswald":  # the original emits the generator's outputs as the weights: Θ = raw
            offset, gain = torch.zeros_like(offset), torch.ones_like(gain)
            von_oswald_init_(self.generator.named_parameters())
        self.generator.init_scheme = init  # GROW's fresh per-task weights follow the same scheme
        self.register_buffer("weight_offset", offset)
        self.register_buffer("weight_gain", gain)
        dtype = self._target.dtype
        if dtype.is_floating_point and dtype != gain.dtype:  # a float64 target gets a float64 hypernetwork
            self.to(dtype)
        self.init_scaling = bool(init_scaling) and init == "target_scale"
        for _ in range(int(num_tasks or 0)):
            self.add_task()
        if self.init_scaling:
            self._calibrate(ref)

    # ------------------------------------------------------------------ tasks
    @property
    def target(self) -> FunctionalTarget:
        """The wrapped target network (not a submodule: its own parameters are not hypernetwork parameters)."""
        return self._target

    @property
    def builtin_init(self) -> Optional[str]:
        """The init scheme of a built-in generator (its ``config``'s; ``None`` for a given Generator instance, whose
        own scheme holds)."""
        return self.config.get("init") if self.config is not None else None

    @property
    def num_tasks(self) -> int:
        return len(self.task_embeddings)

    def add_task(self) -> int:
        """Register a new task (a fresh ``N(0, 1)`` embedding, under either init; GROW weights if growth is on);
        returns its id."""
        ref = self.weight_gain
        self.task_embeddings.append(nn.Parameter(torch.randn(self.task_emb_dim, device=ref.device, dtype=ref.dtype)))
        task_id = self.num_tasks - 1
        self.generator.on_add_task(task_id)
        return task_id

    def _ids(self, task_ids: TaskIds) -> list[int]:
        return task_id_list(task_ids, self.num_tasks)

    # ------------------------------------------------------------------ generation
    def task_embedding_matrix(self, task_ids: TaskIds) -> torch.Tensor:
        """The embeddings of ``task_ids`` stacked as ``(B, E)``."""
        return torch.stack([self.task_embeddings[i] for i in self._ids(task_ids)])

    def generate_raw(self, task_ids: TaskIds, task_emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The generator's raw output for the tasks, ``(B, n_chunks · chunk_size)`` (padding included), in ONE call.

        The target weights are ``Θ = offset + gain ⊙ raw[:, :N]`` (:meth:`generate_flat`); the regularisers of
        eq. 2/3 work on ``raw`` directly (:meth:`to_raw_space`), which saves the map and the padding's backward.
        ``task_emb`` overrides the stored embeddings (same number of rows as ``task_ids``).
        """
        ids = self._ids(task_ids)
        emb = self.task_embedding_matrix(ids) if task_emb is None else task_emb
        return self.generator(emb, ids).reshape(len(ids), self.plan.padded_size)

    def raw_to_flat(self, raw: torch.Tensor) -> torch.Tensor:
        """``Θ = offset + gain ⊙ raw`` without the padding: ``(B, padded)`` raw outputs → ``(B, N)`` weights."""
        return torch.addcmul(self.weight_offset, self.weight_gain, raw[..., : self.plan.num_params])

    def generate_flat(self, task_ids: TaskIds, task_emb: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Generated weights of the tasks as flat vectors ``(B, N)``, in ONE generator call.

        ``task_emb`` overrides the stored embeddings (same number of rows as ``task_ids``).
        """
        return self.raw_to_flat(self.generate_raw(task_ids, task_emb))

    @torch.no_grad()
    def to_raw_space(
        self, targets: torch.Tensor, weight: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets ``(B, N)`` of eq. 2/3 and their per-weight importance, moved to the generator's raw space.

        Since ``Θ = offset + gain ⊙ raw``, ``w (Θ* − Θ)² = (w ⊙ gain²) (raw* − raw)²`` with
        ``raw* = (Θ* − offset) / gain`` (``gain > 0`` always, :func:`init_scale_map`). Returns ``(raw*, w ⊙ gain²)``
        padded to ``(B, n_chunks · chunk_size)`` with weight 0 on the padding, so a penalty on :meth:`generate_raw`'s
        output equals the penalty on the generated weights. With ``weight`` None (eq. 2) the weight is the same for
        every task and is returned ONCE, ``(1, n_chunks · chunk_size)``, broadcast over the ``B`` tasks.
        """
        pad = self.plan.padding
        raw_targets = F.pad((targets - self.weight_offset) / self.weight_gain, (0, pad))
        sq_gain = self.weight_gain.square()
        w = sq_gain.unsqueeze(0) if weight is None else weight * sq_gain
        return raw_targets, F.pad(w, (0, pad))

    def generate(self, task_ids: TaskIds) -> OrderedDict[str, torch.Tensor]:
        """Generated weights of several tasks as a stacked params dict (leading task dim), one generator call."""
        return self._target.unflatten(self.generate_flat(task_ids))

    def forward(self, task_id: int) -> OrderedDict[str, torch.Tensor]:
        """The target's params dict for one task."""
        return self._target.unflatten(self.generate_flat([task_id])[0])

    @torch.no_grad()
    def _calibrate(self, ref_std: float) -> None:
        """Rescale the generator's output layer so raw outputs have std ``ref_std`` at init (probe embeddings)."""
        probe = torch.randn(4, self.task_emb_dim, device=self.weight_gain.device, dtype=self.weight_gain.dtype)
        ids = [0] * 4 if self.num_tasks else None
        if getattr(self.generator, "growing", False) and ids is None:
            return
        raw = self.generator(probe, ids)
        std = raw.std().item()
        if std > 0 and math.isfinite(std):
            self.generator.rescale_output_(ref_std / std)

    # ------------------------------------------------------------------ counts
    @property
    def num_params(self) -> int:
        """Trainable scalars of the hypernetwork: generator (as used now) plus all task embeddings."""
        return sum(p.numel() for p in self.parameters())

    @property
    def compression_ratio(self) -> float:
        """``num_params / target.num_params`` (below 1: the hypernetwork is smaller than its target)."""
        return self.num_params / self._target.num_params

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> HyperNetwork:
        super()._apply(fn, *args, **kwargs)
        self._target.module._apply(fn)  # keep the target's buffers on the same device/dtype
        return self

    def extra_repr(self) -> str:
        return (
            f"generator={self.generator_kind}, target_params={self._target.num_params}, "
            f"chunks={self.plan.n_chunks}x{self.plan.chunk_size}, tasks={self.num_tasks}"
        )
