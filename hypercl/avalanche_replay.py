"""Hypernetwork-protected generative replay for any Avalanche strategy: the seed paper's "+R" methods
(HNET+R, LSTM_NET_GROW+R, ...; von Oswald et al. 2020, section 3 "HNET+R") as an Avalanche plugin.

``Naive(model, ..., plugins=[GeneratedReplayPlugin(method="lstm_net_grow")])`` trains an ordinary classifier (the
strategy's own ``model``, e.g. an MLP with a ``MultiHeadClassifier`` or one shared head) on each experience plus
inputs replayed from a VAE whose decoder a hypernetwork generates per experience. The hypernetwork is protected by
the method's strategy (eq. 2 output regulariser for ``hnet`` / ``lstm_net``, eq. 3-4 for the ``_iwr`` methods, GROW
for ``lstm_net_grow``), so the replay model itself does not forget and no data of an earlier experience is stored.
The settings are those of ``hypercl run --setting replay`` on Split MNIST (:mod:`hypercl.replay.runner`).

Per training experience ``t`` (callbacks of Avalanche's ``SupervisedPlugin``):

* ``before_training_exp`` (t > 0): a frozen copy of the classifier (the teacher) and a sampler over the decoders of
  experiences ``0..t-1`` (one hypernetwork call);
* ``before_backward``, every step: ``ceil(R / t)`` inputs decoded under each earlier experience's decoder, labelled
  by the teacher; the strategy's loss becomes ``(1 − w) · L + w · L_replay`` (von Oswald's ``l_rew``, ``w = 0.5``),
  ``L_replay`` the distillation loss at temperature 2 (:func:`hypercl.replay.masked_distillation_loss`) on the units
  of the replayed input: with a multi-task model (Avalanche's ``MultiTaskModule``) the replayed input of experience
  ``j`` goes through experience ``j``'s task label and is distilled on that experience's classes (task-incremental);
  with any other model every replayed input is distilled on the classes of the earlier experiences, the student's
  softmax also covering the current experience's classes (class-incremental, one expanding head; van de Ven &
  Tolias 2019);
* ``after_training_exp``: the VAE learns experience ``t``'s inputs (its training set with the eval transforms) for
  ``replay_iterations`` steps as hypernetwork task ``t``.

Inputs: the VAE models values in [0, 1]. Avalanche's MNIST streams are normalised (mean 0.1307, std 0.3081), so the
plugin maps inputs affinely by the first experience's minimum and maximum to [0, 1] and decoded samples back.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, Optional, Sequence, Union

import torch

try:
    from avalanche.core import SupervisedPlugin
    from avalanche.models.utils import avalanche_forward, is_multi_task_module
except ImportError as _e:  # pragma: no cover - the message is the point
    raise ImportError(f'hypercl.avalanche needs Avalanche ({_e}): pip install "hypercl[avalanche]"') from None

from .checkpoint import FORMAT, VERSION, CheckpointError, atomic_save, load_checkpoint
from .replay import build_replay_model, frozen_copy, masked_distillation_loss, replay_run_config

__all__ = ["GeneratedReplayPlugin", "REPLAY_PLUGIN_METHODS"]

#: the hypernetwork methods that protect the replay model (each is ``<method>+r`` of :mod:`hypercl.replay.runner`)
REPLAY_PLUGIN_METHODS = ("hnet", "hnet_iwr", "lstm_net", "lstm_net_iwr", "lstm_net_grow")
_KIND = "avalanche_generated_replay"


class GeneratedReplayPlugin(SupervisedPlugin):
    """Generative replay from a hypernetwork-protected VAE (see the module docstring).

    Args:
        method: the hypernetwork method of the replay model (:data:`REPLAY_PLUGIN_METHODS`).
        replay_iterations: VAE training steps per experience (default: the Split MNIST replay setting's 2000).
        replay_batch_size: ``R``, replayed inputs per step, split evenly over the earlier experiences (rounded up).
        replay_weight: ``w`` of ``(1 − w) · L + w · L_replay``.
        temperature: distillation temperature.
        vae_hidden, latent_dim: the VAE's hidden layers (encoder and decoder) and latent size (default: the seed
            paper's 400-400 and 100).
        hnet_kwargs: the replay hypernetwork's ``hidden_size`` / ``chunk_size`` (default: the seed paper's).
        seed: seeds the VAE's initialisation, its learner and the replay latents.
        device: where the VAE lives (default: the strategy's device at the first experience).
    """

    def __init__(
        self,
        method: str = "lstm_net_grow",
        *,
        replay_iterations: Optional[int] = None,
        replay_batch_size: Optional[int] = None,
        replay_weight: Optional[float] = None,
        temperature: Optional[float] = None,
        vae_hidden: Optional[Sequence[int]] = None,
        latent_dim: Optional[int] = None,
        hnet_kwargs: Optional[dict] = None,
        seed: int = 0,
        device: Union[str, torch.device, None] = None,
    ) -> None:
        super().__init__()
        if method not in REPLAY_PLUGIN_METHODS:
            raise ValueError(f"unknown replay method {method!r}; valid: {list(REPLAY_PLUGIN_METHODS)}")
        if replay_iterations is not None and int(replay_iterations) <= 0:
            raise ValueError(f"replay_iterations must be a positive number of steps, got {replay_iterations}")
        self.method = method
        unknown = sorted(set(hnet_kwargs or {}) - {"hidden_size", "chunk_size"})
        if unknown:
            raise ValueError(f"hnet_kwargs takes hidden_size and chunk_size, got {unknown}")
        config = replay_run_config(
            "split_mnist",
            f"{method}+r",
            replay_iterations=replay_iterations,
            replay_batch_size=replay_batch_size,
            replay_weight=replay_weight,
            temperature=temperature,
            **(hnet_kwargs or {}),
        )
        assert config.replay is not None  # every "+r" method has a replay model
        vae = config.replay.vae
        if vae_hidden is not None:
            vae = replace(vae, hidden=tuple(int(h) for h in vae_hidden))
        if latent_dim is not None:
            vae = replace(vae, latent_dim=int(latent_dim))
        self.config = config.replace(replay=replace(config.replay, vae=vae))
        assert self.config.replay is not None
        distill = self.config.distill
        self.replay_batch_size = int(distill.replay_batch_size)
        self.replay_weight = float(distill.replay_weight)
        self.temperature = float(distill.temperature)
        self.replay_iterations = int(self.config.replay.training.iterations or 0)
        self.seed = int(seed)
        self.device = None if device is None else torch.device(device)
        self.rng = torch.Generator().manual_seed(self.seed)
        self.vae: Any = None  # the VAELearner, built at the first experience (its input size is known then)
        self.input_shape: Optional[tuple[int, ...]] = None
        self.scale: Optional[tuple[float, float]] = None  # (min, max) of the first experience's inputs
        self.classes: list[list[int]] = []  # per learned experience: its classes (global ids)
        self.task_labels: list[int] = []  # per learned experience: its task label
        self._classes_table: Optional[tuple[tuple, torch.Tensor]] = None  # unit_masks' table, per experience
        self._teacher: Optional[torch.nn.Module] = None
        self._sampler: Any = None

    # ------------------------------------------------------------------ Avalanche callbacks
    def before_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        if not self.classes:
            self._teacher, self._sampler = None, None
            return
        self._teacher = frozen_copy(strategy.model)
        self._sampler = self.vae.sampler(list(range(len(self.classes))))

    def before_backward(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        if self._teacher is None or not strategy.is_training:
            return
        x, owner = self.replay_inputs(strategy.device)
        current = sorted(int(c) for c in strategy.experience.classes_in_this_experience)
        task_aware = is_multi_task_module(strategy.model)
        labels = torch.tensor(self.task_labels, device=x.device)[owner] if task_aware else None
        with torch.no_grad():
            teacher = avalanche_forward(self._teacher, x, labels)
        student = avalanche_forward(strategy.model, x, labels)
        width = min(student.shape[-1], teacher.shape[-1])
        student, teacher = student[:, :width], teacher[:, :width]
        s_mask, t_mask = self.unit_masks(owner, current, width, task_aware)
        replay = masked_distillation_loss(student, teacher, s_mask, t_mask, self.temperature)
        strategy.loss = (1.0 - self.replay_weight) * strategy.loss + self.replay_weight * replay

    def after_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        exp = strategy.experience
        x = self._inputs(exp.dataset.eval())
        if self.vae is None:
            self._build(x, strategy.device)
        self.vae.learn(len(self.classes), self._to_unit(x), iterations=self.replay_iterations)
        self.classes.append(sorted(int(c) for c in exp.classes_in_this_experience))
        labels = sorted({int(t) for t in exp.task_labels})
        self.task_labels.append(labels[0] if len(labels) == 1 else -1)
        self._teacher, self._sampler = None, None

    # ------------------------------------------------------------------ replay
    @torch.no_grad()
    def replay_inputs(self, device: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step's replayed inputs ``(T·n, *input_shape)`` in the stream's value range, ``n = ceil(R / T)`` per
        learned experience, and the experience index of each (``(T·n,)``)."""
        if self._sampler is None:
            self._sampler = self.vae.sampler(list(range(len(self.classes))))
        per_task = math.ceil(self.replay_batch_size / len(self.classes))
        x, owner = self._sampler.sample(per_task, self.rng)
        assert self.input_shape is not None
        x = self._from_unit(x).reshape(len(x), *self.input_shape)
        dev = device if device is not None else x.device
        return x.to(dev), owner.to(dev)

    def unit_masks(
        self, owner: torch.Tensor, current: list[int], width: int, task_aware: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Student and teacher units ``(N, width)`` of the replayed inputs (module docstring)."""
        per_exp = self._class_table(width, owner.device)
        if task_aware:
            mask = per_exp[owner]
            return mask, mask
        teacher = per_exp.any(0)
        student = teacher.clone()
        student[[c for c in current if c < width]] = True
        n = len(owner)
        return student.expand(n, -1), teacher.expand(n, -1)

    def _class_table(self, width: int, device: torch.device) -> torch.Tensor:
        """``(experiences, width)``: which units belong to each learned experience; built once per experience (it
        changes only when an experience is learned), not at every replay step."""
        key = (len(self.classes), width, device)
        if self._classes_table is None or self._classes_table[0] != key:
            table = torch.zeros(len(self.classes), width, dtype=torch.bool)
            for j, classes in enumerate(self.classes):  # once per learned experience
                table[j, [c for c in classes if c < width]] = True
            self._classes_table = (key, table.to(device))
        return self._classes_table[1]

    # ------------------------------------------------------------------ checkpoint
    def state(self) -> dict:
        """Plain data: the replay model, what it learned, and the replay generator's state."""
        if self.vae is None:
            raise RuntimeError("the replay model has not learned an experience yet")
        rep = self.vae.replay_state()
        rep["learner"]["optimizer_state"] = None  # a new optimizer per experience; saved between experiences
        return {
            "format": FORMAT,
            "version": VERSION,
            "kind": _KIND,
            "config": self.config.to_json(),
            "seed": self.seed,
            "input_shape": list(self.input_shape or ()),
            "scale": list(self.scale or ()),
            "classes": self.classes,
            "task_labels": self.task_labels,
            "replay": rep,
            "rng": self.rng.get_state(),
        }

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write :meth:`state` atomically with its digest (hypercl's checkpoint format)."""
        atomic_save(self.state(), path)

    def load(self, path: Union[str, os.PathLike]) -> None:
        """Restore a :meth:`save` of a plugin built with the same method and settings (checked)."""
        st = load_checkpoint(path, map_location="cpu")
        if st.get("kind") != _KIND:
            raise CheckpointError(f"{path} is not a GeneratedReplayPlugin checkpoint")
        if st["config"] != self.config.to_json() or int(st["seed"]) != self.seed:
            raise CheckpointError(f"{path} was written by a plugin with other settings or another seed")
        self.input_shape = tuple(int(d) for d in st["input_shape"])
        lo, hi = st["scale"]
        self._build_model(int(math.prod(self.input_shape)), self.device or torch.device("cpu"))
        self.scale = (float(lo), float(hi))
        self.vae.load_replay_state(st["replay"])
        self.classes = [list(map(int, c)) for c in st["classes"]]
        self.task_labels = [int(t) for t in st["task_labels"]]
        self._classes_table = None
        self.rng.set_state(st["rng"])
        self._teacher, self._sampler = None, None

    # ------------------------------------------------------------------ helpers
    def _build(self, x: torch.Tensor, device: Any) -> None:
        self.input_shape = tuple(x.shape[1:])
        lo, hi = float(x.min()), float(x.max())
        if not hi > lo:
            raise ValueError(f"the first experience's inputs are constant ({lo}); the VAE cannot model them")
        self.scale = (lo, hi)
        self._build_model(int(math.prod(self.input_shape)), self.device or torch.device(device))

    def _build_model(self, input_dim: int, device: torch.device) -> None:
        self.vae = build_replay_model(self.config, SimpleNamespace(input_dim=input_dim), self.seed, device)

    def _to_unit(self, x: torch.Tensor) -> torch.Tensor:
        assert self.scale is not None
        lo, hi = self.scale
        return ((x.reshape(len(x), -1) - lo) / (hi - lo)).clamp(0.0, 1.0)

    def _from_unit(self, x: torch.Tensor) -> torch.Tensor:
        assert self.scale is not None
        lo, hi = self.scale
        return x * (hi - lo) + lo

    @staticmethod
    def _inputs(dataset: Any) -> torch.Tensor:
        loader = torch.utils.data.DataLoader(dataset, batch_size=1000, shuffle=False)
        xs = [batch[0] for batch in loader]
        if not xs:
            raise ValueError("the experience has no training samples")
        if not isinstance(xs[0], torch.Tensor):
            raise TypeError(f"generative replay decodes tensors; the stream's inputs are {type(xs[0]).__name__}")
        return torch.cat(xs).float()
