"""Training from scratch: one fresh, independently initialised weight vector per task (the upper-bound-style baseline
of the seed paper's Table 3 and of von Oswald et al. 2020).

:class:`IndependentWeights` is a weight source for :class:`~hypercl.ContinualLearner`, like
:class:`~hypercl.DirectWeights`, but task-conditioned: task ``t`` has its own flat weight vector ``θ_t``, so CL1
evaluation uses each task's own weights (and per-task BatchNorm statistics, which the learner keeps anyway). Nothing
is shared, so there is neither forgetting nor transfer. Training task ``t`` trains only ``θ_t``: the learner freezes
every finished task's vector (it calls ``task_embeddings[t].requires_grad_(False)`` after each task, and builds each
task's optimizer over the parameters that still require gradients).

Each new vector is drawn from the module's OWN initialisation, seeded by ``(seed, task)``:

* a module built by a registered builder (``hypercl.models``, e.g. ``resnet32``) is rebuilt from its spec under a
  seeded RNG, which reproduces its initialisation exactly (including custom inits such as the He init of the CIFAR
  ResNets);
* any other module is deep-copied and every submodule with a ``reset_parameters()`` method is re-initialised
  (``nn.Linear``, ``nn.Conv2d``, ``nn.BatchNorm*``, ``nn.LSTM``, ...), also under a seeded RNG.

Importing this module registers the kind ``"independent"`` with :func:`hypercl.learner.register_weight_source`, so
:meth:`ContinualLearner.load` can rebuild it (import ``hypercl.independent`` before loading such a checkpoint).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Sequence, Union

import torch
from torch import nn

from .hypernetwork import task_id_list
from .learner import register_weight_source
from .models.registry import build_model, model_spec
from .target import FunctionalTarget, wrap

__all__ = ["IndependentWeights", "fresh_init"]


def fresh_init(target: FunctionalTarget, seed: int) -> torch.Tensor:
    """A flat ``(N,)`` weight vector from the target module's own initialisation, drawn under ``seed``.

    Registered models are rebuilt from their spec; other modules are deep-copied and ``reset_parameters()`` is
    called on every submodule that has it. The global RNG state is left unchanged.
    """
    module = target.module
    spec = model_spec(module)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        if spec is not None:
            fresh = build_model(spec["name"], **spec["kwargs"])
        else:
            fresh = copy.deepcopy(module).cpu()
            for m in fresh.modules():
                reset = getattr(m, "reset_parameters", None)
                if callable(reset):
                    reset()
    own = dict(fresh.named_parameters())
    missing = [n for n in target.param_shapes if n not in own]
    if missing:
        raise ValueError(f"the re-initialised module lacks parameters {missing}")
    return torch.cat([own[n].detach().reshape(-1) for n in target.param_shapes]).to(torch.float32)


class IndependentWeights(nn.Module):
    """One independently initialised, independently trained flat weight vector per task ("training from scratch").

    Args:
        target: a :class:`FunctionalTarget` or any ``nn.Module`` (wrapped on the fly); its architecture is used for
            every task, its own initialisation scheme draws each task's fresh vector.
        seed: task ``t``'s vector is drawn under the seed ``seed * 1_000_003 + t`` (same seed → same vectors).

    ``num_params`` counts all task vectors (``num_tasks × N``); ``compression_ratio`` is therefore ``num_tasks``.
    """

    task_conditioned = True
    kind = "independent"
    #: the learner accepts any module with this flag and the HyperNetwork-like interface
    is_weight_source = True

    _anchor: torch.Tensor  # a size-0 buffer: the device and dtype of new task weights

    def __init__(self, target: Union[FunctionalTarget, nn.Module], seed: int = 0) -> None:
        super().__init__()
        self._target = wrap(target)
        self.seed = int(seed)
        self.task_weights = nn.ParameterList()
        # device/dtype anchor: the learner infers the device from parameters or buffers, and add_task needs it
        ref = next(iter(self._target.module.parameters()))
        self.register_buffer("_anchor", torch.zeros(0, device=ref.device, dtype=ref.dtype), persistent=False)
        self.config = {"kind": self.kind, "seed": self.seed}

    # ------------------------------------------------------------------ tasks
    @property
    def target(self) -> FunctionalTarget:
        return self._target

    @property
    def task_embeddings(self) -> nn.ParameterList:
        """The per-task weight vectors (the name the learner uses to freeze a finished task's own parameters)."""
        return self.task_weights

    @property
    def num_tasks(self) -> int:
        return len(self.task_weights)

    def task_seed(self, task_id: int) -> int:
        return self.seed * 1_000_003 + int(task_id)

    def add_task(self) -> int:
        """Register a new task with a fresh vector from the module's own init (seeded); returns its id."""
        t = self.num_tasks
        w = fresh_init(self._target, self.task_seed(t)).to(device=self._anchor.device, dtype=self._anchor.dtype)
        self.task_weights.append(nn.Parameter(w))
        return t

    def _ids(self, task_ids: Union[int, Sequence[int], torch.Tensor]) -> list[int]:
        return task_id_list(task_ids, self.num_tasks)

    # ------------------------------------------------------------------ weights
    def generate_flat(self, task_ids: Union[int, Sequence[int], torch.Tensor]) -> torch.Tensor:
        """The tasks' weight vectors stacked as ``(B, N)``."""
        return torch.stack([self.task_weights[i] for i in self._ids(task_ids)])

    def generate(self, task_ids: Union[int, Sequence[int], torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        return self._target.unflatten(self.generate_flat(task_ids))

    def forward(self, task_id: int) -> OrderedDict[str, torch.Tensor]:
        return self._target.unflatten(self.task_weights[self._ids(task_id)[0]])

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.task_weights)

    @property
    def compression_ratio(self) -> float:
        return self.num_params / self._target.num_params

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self._target.module._apply(fn)
        return self

    # ------------------------------------------------------------------ checkpoints
    def state_extra(self) -> dict:
        return {"num_tasks": self.num_tasks, "seed": self.seed}

    def load_state_extra(self, state: dict) -> None:
        """Recreate the task slots (placeholders, filled by ``load_state_dict`` right after) and the seed."""
        self.seed = int(state.get("seed", self.seed))
        self.config = {"kind": self.kind, "seed": self.seed}
        n = int(state.get("num_tasks", 0))
        size = self._target.num_params
        self.task_weights = nn.ParameterList(
            nn.Parameter(torch.zeros(size, device=self._anchor.device, dtype=self._anchor.dtype)) for _ in range(n)
        )

    def extra_repr(self) -> str:
        return f"target_params={self._target.num_params}, tasks={self.num_tasks}, seed={self.seed}"


register_weight_source(IndependentWeights.kind, IndependentWeights)
