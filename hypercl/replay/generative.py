"""Replay models: the hypernetwork-protected VAE of HNET+R (and the seed paper's "+R" methods) and the ordinary VAE of
deep generative replay (DGR, Shin et al. 2017).

:class:`VAELearner` is a :class:`~hypercl.ContinualLearner` whose task loss is the VAE's negative ELBO and whose
hypernetwork generates the VAE's DECODER (one task embedding per task); any generator backend and any strategy
(``"hnet"`` eq. 2, ``"iwr"`` eq. 3, ``"grow"`` 3.3) protects it, through the learner's own training loop. The encoder
is an ordinary network, as in von Oswald et al. 2020's reference code (``mnist/replay/train_replay.py``: "a
hypernetwork that produces the weights of the decoder"): it is only needed while the current task is learned, never
to replay, so it needs no protection.

:class:`PlainReplay` is DGR's generator: one ordinary VAE trained on the current task's data plus samples replayed by
its own previous copy, weighted ``1/t`` and ``1 − 1/t`` (van de Ven & Tolias 2019, ``train.py``/``vae_models.py``).

Both hand out a frozen *sampler* for the classifier (:meth:`sampler`): for the hypernetwork every old task's decoder
weights are generated in ONE hypernetwork call and all tasks are decoded in ONE ``vmap`` call
(:meth:`FunctionalTarget.batched`); there is no Python loop over samples or tasks.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..fisher import diagonal_empirical_fisher, normalize_fisher
from ..learner import OPTIMIZERS, ContinualLearner, NonFiniteLossError
from ..models.vae import VAE, vae_loss
from ..target import FunctionalTarget, whole_output, wrap

__all__ = [
    "frozen_copy",
    "SelfPairs",
    "VAELearner",
    "PlainReplay",
    "GeneratedSampler",
    "PlainSampler",
    "decoder_only",
    "wrap_vae_decoder",
    "DECODER_PREFIX",
]

DECODER_PREFIX = "decoder."


def decoder_only(name: str, param: nn.Parameter) -> bool:
    """``include=`` rule of :func:`hypercl.wrap`: generate the VAE's decoder parameters only."""
    return name.startswith(DECODER_PREFIX)


def wrap_vae_decoder(vae: VAE) -> FunctionalTarget:
    """The VAE as a functional target whose GENERATED parameters are the decoder's (the encoder keeps its own).

    ``target(params, x)`` runs ``vae.forward(x)`` → ``(logits, mu, logvar)`` with the generated decoder.
    """
    if not isinstance(vae, VAE):
        raise TypeError(f"expected a hypercl.models.VAE, got {type(vae).__name__}")
    return wrap(vae, include=decoder_only, output=whole_output)


def _index(x: Any, idx: torch.Tensor) -> torch.Tensor:
    return x[idx.to(getattr(x, "device", "cpu"))]


class SelfPairs:
    """Shuffled ``(x, x)`` batches by index over a task's inputs (a tensor or a lazy ``PermutedImages``), one pass
    per iteration: the data form :meth:`ContinualLearner.fit_task` takes as "an iterable of batches", so the VAE's
    target is its input without copying the data set."""

    def __init__(self, x: Any, batch_size: int, generator: torch.Generator) -> None:
        if len(x) == 0:
            raise ValueError("the task has no training samples")
        self.x = x
        self.batch_size = int(batch_size)
        self.generator = generator

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.x), generator=self.generator)
        for i in range(0, len(order), self.batch_size):
            xb = _index(self.x, order[i : i + self.batch_size])
            yield xb, xb


def _recon_loss(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The decoder-dependent part of :func:`vae_loss` (the KL term does not depend on the decoder's weights)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").mean(-1).mean()


# ---------------------------------------------------------------------------------------------------------- samplers
class GeneratedSampler:
    """Frozen decoders of several tasks: weights generated once (one hypernetwork call), decoding by ``vmap``.

    ``sample(n_per_task)`` returns ``(x, owner)``: ``x`` is ``(T·n, D)`` pixel means in [0, 1], ``n`` samples decoded
    under each task's decoder (task-major order), ``owner`` the row of each sample's task in ``task_ids``.
    """

    conditional = True

    def __init__(
        self,
        decoder_target: FunctionalTarget,
        stacked: OrderedDict[str, torch.Tensor],
        task_ids: Sequence[int],
        latent_dim: int,
    ) -> None:
        self.decoder_target = decoder_target
        self.stacked = stacked
        self.task_ids = [int(t) for t in task_ids]
        self.latent_dim = int(latent_dim)
        self.device = next(iter(stacked.values())).device

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel means ``(T, n, D)``: the SAME latents ``z`` ``(n, latent)`` decoded under every task's decoder."""
        return torch.sigmoid(self.decoder_target.batched(self.stacked, z.to(self.device)))

    @torch.no_grad()
    def sample(self, n_per_task: int, generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
        t = len(self.task_ids)
        z = torch.randn(t, int(n_per_task), self.latent_dim, generator=generator).to(self.device)
        x = torch.sigmoid(self.decoder_target.batched(self.stacked, z, x_per_task=True))
        owner = torch.arange(t, device=self.device).repeat_interleave(int(n_per_task))
        return x.reshape(t * int(n_per_task), -1), owner


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` in eval mode with every parameter frozen (a teacher or a sampler's decoder)."""
    copied = copy.deepcopy(module).eval()
    for p in copied.parameters():
        p.requires_grad_(False)
    return copied


class PlainSampler:
    """A frozen copy of an ordinary decoder (DGR): ``sample(n)`` → ``(x (n, D), None)`` (no task identity)."""

    conditional = False
    task_ids: Optional[list[int]] = None

    def __init__(self, decoder: nn.Module, latent_dim: int) -> None:
        self.decoder = frozen_copy(decoder)
        self.latent_dim = int(latent_dim)
        self.device = next(self.decoder.parameters()).device

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel means ``(1, n, D)`` of the latents ``z`` ``(n, latent)`` (one row: the VAE has no task condition)."""
        return torch.sigmoid(self.decoder(z.to(self.device))).unsqueeze(0)

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, None]:
        z = torch.randn(int(n), self.latent_dim, generator=generator).to(self.device)
        return torch.sigmoid(self.decoder(z)), None


# ------------------------------------------------------------------------------------------------ hypernetwork VAE
class VAELearner(ContinualLearner):
    """A :class:`~hypercl.ContinualLearner` for a VAE whose decoder a hypernetwork generates per task.

    Build the hypernetwork around :func:`wrap_vae_decoder` ``(vae)``; every other argument is
    :class:`ContinualLearner`'s (``strategy="hnet" | "iwr" | "grow"`` with its ``strategy_kwargs``, optimizer,
    learning rate, ...). The optimizer of a task covers the hypernetwork's trainable parameters (the current task
    embedding included) AND the encoder's. The task loss is :func:`~hypercl.models.vae.vae_loss`; the data of a task
    is its inputs only (:meth:`learn`). For IWR, :meth:`task_fisher` is eq. 4 of the reconstruction loss with
    respect to the generated decoder weights (``z`` drawn from ``q(z | x)`` as in training).
    """

    kind = "hnet"
    class_labels = False  # the "labels" of a VAE's data are its inputs

    def __init__(self, hnet: nn.Module, *args: Any, **kwargs: Any) -> None:
        super().__init__(hnet, *args, **kwargs)
        module = self.target.module
        if not isinstance(module, VAE):
            raise TypeError(f"VAELearner needs a hypernetwork around a hypercl.models.VAE, got {type(module).__name__}")
        names = list(self.target.param_shapes)
        if not all(n.startswith(DECODER_PREFIX) for n in names):
            raise ValueError(
                "the hypernetwork must generate the VAE's decoder only: build it around "
                "hypercl.replay.wrap_vae_decoder(vae)"
            )
        self.vae: VAE = module
        self.decoder_target = wrap(module.decoder)
        if [DECODER_PREFIX + n for n in self.decoder_target.param_shapes] != names:
            raise ValueError("the generated parameters are not exactly the decoder's parameters")

    # ------------------------------------------------------------------ training
    def make_task_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.hnet.parameters() if p.requires_grad] + list(self.vae.encoder.parameters())
        return OPTIMIZERS[self.optimizer_name](params, lr=self.lr, **self.optimizer_kwargs)

    def task_loss(self, task_id: int, out: Any, y: torch.Tensor) -> torch.Tensor:
        """Negative ELBO per pixel of the batch; ``out = (logits, mu, logvar)``, ``y`` the inputs themselves."""
        logits, mu, logvar = out
        return vae_loss(logits, mu, logvar, y)

    def learn(
        self,
        task_id: int,
        x: Any,
        iterations: int,
        batch_size: Optional[int] = None,
        callback: Optional[Callable[[int, torch.Tensor], None]] = None,
    ) -> dict:
        """Learn task ``task_id``'s inputs ``x`` (tensor or ``PermutedImages``) for ``iterations`` steps."""
        data = SelfPairs(x, int(batch_size or self.batch_size), self.rng)
        return self.fit_task(task_id, data, iterations=int(iterations), num_classes=1, callback=callback)

    # ------------------------------------------------------------------ weights and samples
    @staticmethod
    def strip(params: OrderedDict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        """``decoder.<name>`` → ``<name>`` (the decoder's own parameter names)."""
        return OrderedDict((n[len(DECODER_PREFIX) :], v) for n, v in params.items())

    @torch.no_grad()
    def decoder_weights(self, task_ids: Sequence[int]) -> OrderedDict[str, torch.Tensor]:
        """The tasks' generated decoder weights, stacked ``(T, ...)``: ONE hypernetwork call (eval mode)."""
        was = self.hnet.training
        self.hnet.eval()
        try:
            return self.strip(self.hnet.generate(list(task_ids)))
        finally:
            self.hnet.train(was)

    def sampler(self, task_ids: Optional[Sequence[int]] = None) -> GeneratedSampler:
        """A frozen sampler over ``task_ids`` (default: every learned task)."""
        ids = list(self.learned_tasks if task_ids is None else task_ids)
        if not ids:
            raise RuntimeError("the replay model has not learned a task yet")
        return GeneratedSampler(self.decoder_target, self.decoder_weights(ids), ids, self.vae.latent_dim)

    # ------------------------------------------------------------------ IWR (eq. 4 for the decoder)
    def task_fisher(
        self, task_id: int, data: Any, num_samples: Optional[int] = None, batch_size: int = 64, normalize: bool = True
    ) -> torch.Tensor:
        """Diagonal empirical Fisher (eq. 4) of the reconstruction loss w.r.t. the decoder weights generated for
        ``task_id``, flat ``(N,)`` in the hypernetwork's output order; ``z ~ q(z | x)`` (reparameterised, encoder in
        eval mode); a random subset of ``num_samples`` inputs (all when ``None``)."""
        x = data.x if isinstance(data, SelfPairs) else data
        n_all = len(x)
        n = n_all if num_samples is None else min(n_all, int(num_samples))
        idx = torch.randperm(n_all, generator=self.rng)[:n]
        with torch.no_grad():
            params = self.strip(self.hnet(task_id))
        was = self.vae.training
        self.vae.eval()

        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for i in idx.split(int(batch_size)):
                xb = _index(x, i).to(self.device)
                with torch.no_grad():
                    mu, logvar = self.vae.encode(xb)
                    eps = torch.randn(mu.shape, generator=self.rng).to(self.device, mu.dtype)
                    z = mu + eps * torch.exp(0.5 * logvar)
                yield z, xb

        try:
            fisher = diagonal_empirical_fisher(self.decoder_target, params, batches(), _recon_loss)
        finally:
            self.vae.train(was)
        flat = self.decoder_target.flatten(fisher)
        return normalize_fisher(flat) if normalize else flat

    # ------------------------------------------------------------------ sizes / state
    @property
    def generated_params(self) -> int:
        """Scalars the hypernetwork generates per task (the decoder)."""
        return self.target.num_params

    @property
    def trainable_params(self) -> int:
        """Hypernetwork (all task embeddings included) plus encoder."""
        return self.hnet.num_params + sum(p.numel() for p in self.vae.encoder.parameters())

    def replay_state(self) -> dict:
        """Plain-data state: :meth:`ContinualLearner.state` plus the encoder's weights."""
        return {"kind": self.kind, "learner": self.state(), "encoder": self.vae.encoder.state_dict()}

    def load_replay_state(self, state: dict) -> None:
        from ..learner_checkpoint import restore_learner

        restore_learner(self, state["learner"])
        self.vae.encoder.load_state_dict(state["encoder"])


# ----------------------------------------------------------------------------------------------------- DGR's VAE
class PlainReplay:
    """DGR's generator (Shin et al. 2017, as in van de Ven & Tolias 2019): ONE ordinary VAE for all tasks.

    Task ``t`` (1-based) trains it on ``rnt · L(current batch) + (1 − rnt) · L(replayed batch)``, ``rnt = 1/t``, where
    the replayed batch (as many samples as the current one) is drawn from a frozen copy of the VAE as it was before
    the task (van de Ven & Tolias' ``train.py``: ``rnt = 1./task``; ``vae_models.py``: ``train_a_batch``). A fresh
    optimizer per task (as :class:`~hypercl.ContinualLearner`).
    """

    kind = "plain"

    def __init__(
        self,
        vae: VAE,
        lr: float = 1e-3,
        optimizer: str = "adam",
        batch_size: int = 128,
        device: Union[str, torch.device] = "cpu",
        seed: int = 0,
        progress: bool = False,
        check_every: int = 50,
    ) -> None:
        if not isinstance(vae, VAE):
            raise TypeError(f"PlainReplay needs a hypercl.models.VAE, got {type(vae).__name__}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; valid: {sorted(OPTIMIZERS)}")
        self.device = torch.device(device)
        self.vae: VAE = vae.to(self.device)
        self.lr = float(lr)
        self.optimizer_name = optimizer
        self.batch_size = int(batch_size)
        self.rng = torch.Generator().manual_seed(int(seed))
        self.progress = bool(progress)
        self.check_every = max(1, int(check_every))
        self.learned_tasks: list[int] = []
        self.train_log: dict[int, dict] = {}

    def learn(
        self,
        task_id: int,
        x: Any,
        iterations: int,
        batch_size: Optional[int] = None,
        callback: Optional[Callable[[int, torch.Tensor], None]] = None,
    ) -> dict:
        if task_id in self.learned_tasks:
            raise ValueError(f"task {task_id} was already learned")
        steps = int(iterations)
        if steps <= 0:
            raise ValueError(f"the number of steps must be positive, got {steps}")
        bs = int(batch_size or self.batch_size)
        previous = self.sampler() if self.learned_tasks else None
        rnt = 1.0 / (len(self.learned_tasks) + 1)
        opt = OPTIMIZERS[self.optimizer_name](self.vae.parameters(), lr=self.lr)
        self.vae.train()
        data = SelfPairs(x, bs, self.rng)

        def endless() -> Iterator[torch.Tensor]:
            while True:
                for xb, _ in data:
                    yield xb.to(self.device, non_blocking=True)

        batches = endless()
        losses = torch.zeros(self.check_every, device=self.device)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, desc=f"replay VAE task {task_id}", leave=False)
        window_mean = float("nan")
        for it in range(steps):
            xb = next(batches)
            opt.zero_grad(set_to_none=True)
            logits, mu, logvar = self.vae(xb)
            loss = vae_loss(logits, mu, logvar, xb)
            if previous is not None:
                xr, _ = previous.sample(len(xb), self.rng)
                r_logits, r_mu, r_logvar = self.vae(xr)
                loss = rnt * loss + (1 - rnt) * vae_loss(r_logits, r_mu, r_logvar, xr)
            loss.backward()
            opt.step()
            losses[it % self.check_every] = loss.detach()
            if callback is not None:
                callback(it, loss.detach())
            if (it + 1) % self.check_every == 0 or it + 1 == steps:
                window = losses[: (it % self.check_every) + 1]
                if not bool(torch.isfinite(window).all()):
                    raise NonFiniteLossError(
                        f"non-finite VAE loss at task {task_id}, iteration <= {it}: lower the learning rate"
                    )
                window_mean = float(window.mean())
                if bar is not None:
                    bar.update(len(window))
        if bar is not None:
            bar.close()
        self.learned_tasks.append(task_id)
        log = {"task": task_id, "steps": steps, "final_loss": window_mean}
        self.train_log[task_id] = log
        return log

    def sampler(self, task_ids: Optional[Sequence[int]] = None) -> PlainSampler:
        if not self.learned_tasks:
            raise RuntimeError("the replay model has not learned a task yet")
        return PlainSampler(self.vae.decoder, self.vae.latent_dim)

    @property
    def generated_params(self) -> int:
        return sum(p.numel() for p in self.vae.decoder.parameters())

    @property
    def trainable_params(self) -> int:
        return sum(p.numel() for p in self.vae.parameters())

    def replay_state(self) -> dict:
        return {
            "kind": self.kind,
            "vae": self.vae.state_dict(),
            "learned_tasks": list(self.learned_tasks),
            "train_log": dict(self.train_log),
            "rng": self.rng.get_state(),
        }

    def load_replay_state(self, state: dict) -> None:
        self.vae.load_state_dict(state["vae"])
        self.learned_tasks = [int(t) for t in state["learned_tasks"]]
        self.train_log = {int(k): v for k, v in state["train_log"].items()}
        self.rng.set_state(state["rng"])
