"""Many seeds in one process: the hypernetworks of S seeds trained as ONE ensemble (``hypercl run --parallel-seeds``).

Each seed is an ordinary :class:`~hypercl.ContinualLearner`, built exactly as a sequential run builds it (same seed,
same initialisation, same batch order from its own generator). While a task is learned, the members' parameters are
stacked along a leading seed dimension (the ``torch.func.stack_module_state`` pattern) and every step is computed
for all seeds at once:

* chunked-MLP / full-MLP generators: ``torch.func.vmap`` over ``functional_call`` of the hypernetwork;
* LSTM / GRU generators (``nn.LSTM`` has no batching rule): one fused ``torch.lstm`` / ``torch.gru`` call whose
  hidden state holds all seeds side by side, with a block-diagonal hidden-to-hidden matrix (seed ``s`` only sees its
  own hidden units) and each seed's input projection applied beforehand in one ``einsum`` (as GROW does per task);
* the target network and the eq. 2/3 penalties: ``vmap`` over seeds.

The loss is the SUM of the seeds' losses, so each seed's slice of the gradient is its own gradient; Adam is
elementwise, so one fused Adam over the stacked tensors takes each seed's own step. Between tasks the stacked values
are written back to the members, whose strategies then run their per-task hooks (targets of eq. 2, the Fisher of
eq. 4, GROW's freezing) exactly as in a sequential run. Results equal the sequential runs' up to floating-point
summation order (tested).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from torch.func import functional_call, vmap

from .batches import stack_inputs
from .generators import RecurrentGenerator
from .generators.mlp import chunk_inputs
from .generators.recurrent import GATES
from .hypernetwork import HyperNetwork
from .learner import ContinualLearner, NonFiniteLossError, make_optimizer
from .regularizers import hnet_output_regularizer, importance_weighted_regularizer
from .strategies import Grow, HNETRegularizer, IWRegularizer, NoRegularizer, candidate_step
from .strategies.output_regularizers import RawGeneration

__all__ = ["SeedEnsemble", "ensemble_recurrence"]


def ensemble_recurrence(
    pre: torch.Tensor, weight_hh: torch.Tensor, bias_hh: torch.Tensor, cell: str, train: bool = True
) -> torch.Tensor:
    """The recurrences of S independent single-layer LSTMs/GRUs in ONE fused call.

    Args:
        pre: ``(S, B, L, G·H)`` input pre-activations of every seed (``x W_ihᵀ + b_ih``), gates in PyTorch's order.
        weight_hh: ``(S, G·H, H)``; bias_hh: ``(S, G·H)``; cell: ``"lstm"`` (G = 4) or ``"gru"`` (G = 3).

    The S hidden states are laid side by side in one hidden state of size ``S·H``; the hidden-to-hidden matrix is
    block-diagonal per gate, so seed ``s``'s units only see seed ``s``'s units, and the input weight is the identity
    (``x·I + 0`` is exact). Returns the hidden states ``(S, B, L, H)``.
    """
    s, b, length, gh = pre.shape
    g = GATES[cell]
    h = gh // g
    big_in = pre.reshape(s, b, length, g, h).permute(1, 2, 3, 0, 4).reshape(b, length, g * s * h)
    eye = torch.eye(s, device=pre.device, dtype=pre.dtype)
    w_hh = torch.einsum("sgij,st->gsitj", weight_hh.reshape(s, g, h, h), eye).reshape(g * s * h, s * h)
    b_hh = bias_hh.reshape(s, g, h).transpose(0, 1).reshape(g * s * h)
    w_ih = torch.eye(g * s * h, device=pre.device, dtype=pre.dtype)
    b_ih = torch.zeros(g * s * h, device=pre.device, dtype=pre.dtype)
    h0 = pre.new_zeros(1, b, s * h)
    if cell == "lstm":
        out, _, _ = torch.lstm(big_in, (h0, h0), [w_ih, w_hh, b_ih, b_hh], True, 1, 0.0, train, False, True)
    else:
        out, _ = torch.gru(big_in, h0, [w_ih, w_hh, b_ih, b_hh], True, 1, 0.0, train, False, True)
    return out.reshape(b, length, s, h).permute(2, 0, 1, 3)


class SeedEnsemble:
    """Train the hypernetworks of several learners (same configuration, different seeds) as one ensemble.

    Build it with :meth:`build` (which records each seed's global RNG state right after building its learner, so
    new task embeddings are drawn exactly as in a sequential run), then call :meth:`fit_task` and evaluate the
    members (``ensemble.members[i].evaluate(...)``) as you would a single learner.

    Supported: hypernetwork learners (chunked MLP, MLP, LSTM, GRU; strategies ``none``, ``hnet`` with or without
    lookahead, ``iwr``, ``grow``) on targets without buffers and without a train-time transform.
    """

    def __init__(self, members: Sequence[ContinualLearner], rng_states: Optional[Sequence[torch.Tensor]] = None):
        members = list(members)
        if len(members) < 1:
            raise ValueError("a SeedEnsemble needs at least one learner")
        first = members[0]
        for m in members:
            if not isinstance(m.hnet, HyperNetwork):
                raise ValueError(
                    f"--parallel-seeds trains hypernetworks; got a {type(m.hnet).__name__} "
                    "(run the baselines without --parallel-seeds)"
                )
            if not isinstance(m.strategy, (NoRegularizer, HNETRegularizer, Grow)):
                raise ValueError(f"strategy {m.strategy.name!r} is not supported by SeedEnsemble")
            if isinstance(m.strategy, HNETRegularizer) and (
                m.strategy.reg_tasks_per_step is not None or m.strategy.target_mode != "stored"
            ):
                raise ValueError(
                    "SeedEnsemble regularises all old tasks with stored targets; run seeds with "
                    "reg_tasks_per_step or targets='online' one after another (without --parallel-seeds)"
                )
            if m.target.buffer_names:
                raise ValueError(
                    "SeedEnsemble does not support targets with buffers (BatchNorm) yet; "
                    "run the seeds one after another"
                )
            if m.train_transform is not None:
                raise ValueError("SeedEnsemble does not support a train_transform; run the seeds one after another")
            if (
                m.hnet.config != first.hnet.config
                or type(m.strategy) is not type(first.strategy)
                or m.strategy.config() != first.strategy.config()
                or m.device != first.device
                or (m.optimizer_name, m.lr, m.optimizer_kwargs, m.batch_size)
                != (first.optimizer_name, first.lr, first.optimizer_kwargs, first.batch_size)
            ):
                raise ValueError("the learners of a SeedEnsemble must share configuration, strategy and device")
        gen = first.hnet.generator
        if isinstance(gen, RecurrentGenerator) and gen.num_layers != 1:
            raise ValueError("SeedEnsemble supports single-layer recurrent generators")
        self.members = members
        self.device = first.device
        self._rng_states = list(rng_states) if rng_states is not None else [torch.get_rng_state() for _ in members]

    @classmethod
    def build(cls, make_learner: Callable[[int], ContinualLearner], seeds: Sequence[int]) -> SeedEnsemble:
        """``make_learner(seed)`` for every seed (it must seed torch itself, as ``build_learner`` does)."""
        members, states = [], []
        for seed in seeds:
            members.append(make_learner(seed))
            states.append(torch.get_rng_state())
        return cls(members, states)

    @contextmanager
    def member_rng(self, i: int) -> Iterator[None]:
        """Run code that draws from torch's global RNG (new task embeddings, Fisher subsets) in seed ``i``'s own
        stream, as its sequential run would."""
        outer = torch.get_rng_state()
        torch.set_rng_state(self._rng_states[i])
        try:
            yield
        finally:
            self._rng_states[i] = torch.get_rng_state()
            torch.set_rng_state(outer)

    # ------------------------------------------------------------------ stacked state
    def _stack(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[str]]:
        named = [dict(m.hnet.named_parameters()) for m in self.members]
        trainable = [n for n, p in named[0].items() if p.requires_grad]
        params = {n: torch.stack([d[n].detach() for d in named]).requires_grad_(n in trainable) for n in named[0]}
        bufs = [dict(m.hnet.named_buffers()) for m in self.members]
        buffers = {n: torch.stack([d[n] for d in bufs]) for n in bufs[0]}
        return params, buffers, trainable

    @torch.no_grad()
    def _unstack(self, params: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, trainable: list[str]) -> None:
        state = optimizer.state_dict()
        for i, m in enumerate(self.members):
            named = dict(m.hnet.named_parameters())
            for n, p in params.items():
                named[n].copy_(p[i])
            m.optimizer = m.make_task_optimizer()
            per = {
                k: {key: (v[i] if v.dim() > 0 else v).clone() if torch.is_tensor(v) else v for key, v in st.items()}
                for k, st in state["state"].items()
            }
            m.optimizer.load_state_dict({"state": per, "param_groups": state["param_groups"]})

    # ------------------------------------------------------------------ the ensemble forward
    def generate_raw(
        self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], task_ids: list[int]
    ) -> torch.Tensor:
        """Raw generator outputs of every seed for ``task_ids``: ``(S, B, padded)`` in one call."""
        hnet = self.members[0].hnet
        gen = hnet.generator
        if not isinstance(gen, RecurrentGenerator):
            module = RawGeneration(hnet)

            def one(p: dict, b: dict) -> torch.Tensor:
                state = {f"hnet.{n}": v for n, v in p.items()}
                state.update({f"hnet.{n}": v for n, v in b.items()})
                return functional_call(module, state, (task_ids,))

            return vmap(one)(params, buffers)
        p = params
        emb = torch.stack([p[f"task_embeddings.{i}"] for i in task_ids], 1)  # (S, B, E)
        ce = p["generator.chunk_embeddings"]  # (S, L, Dc)
        s, b, length = emb.shape[0], emb.shape[1], ce.shape[1]
        x = vmap(chunk_inputs)(emb, ce)  # (S, B, L, E + Dc)
        if gen.growing:
            w_ih = torch.stack([p[f"generator.task_weight_ih.{i}"] for i in task_ids], 1)  # (S, B, GH, D)
            b_ih = torch.stack([p[f"generator.task_bias_ih.{i}"] for i in task_ids], 1)
            pre = torch.einsum("sbld,sbgd->sblg", x, w_ih) + b_ih.unsqueeze(2)
            w_hh, b_hh = p["generator.shared_weight_hh"], p["generator.shared_bias_hh"]
        else:
            pre = torch.einsum("sbld,sgd->sblg", x, p["generator.rnn.weight_ih_l0"])
            pre = pre + p["generator.rnn.bias_ih_l0"][:, None, None]
            w_hh, b_hh = p["generator.rnn.weight_hh_l0"], p["generator.rnn.bias_hh_l0"]
        h = ensemble_recurrence(pre, w_hh, b_hh, gen.cell, train=gen.training)  # (S, B, L, H)
        if gen.growing:
            w_out = torch.stack([p[f"generator.task_weight_out.{i}"] for i in task_ids], 1)  # (S, B, H, C)
            y = torch.einsum("sblh,sbhc->sblc", h, w_out)
            if gen.out_bias:
                y = y + torch.stack([p[f"generator.task_bias_out.{i}"] for i in task_ids], 1).unsqueeze(2)
        else:
            y = torch.einsum("sblh,shc->sblc", h, p["generator.out.weight"])
            if gen.out_bias:
                y = y + p["generator.out.bias"][:, None, None]
        return y.reshape(s, b, length * y.shape[-1])

    def _flat(self, raw: torch.Tensor, buffers: dict[str, torch.Tensor]) -> torch.Tensor:
        n = self.members[0].target.num_params
        return torch.addcmul(buffers["weight_offset"].unsqueeze(1), buffers["weight_gain"].unsqueeze(1), raw[..., :n])

    def _task_losses(self, params: dict, buffers: dict, task_id: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        first = self.members[0]
        target = first.target
        flat = self._flat(self.generate_raw(params, buffers, [task_id]), buffers)[:, 0]  # (S, N)

        def one(w: torch.Tensor, xb: Any, yb: torch.Tensor) -> torch.Tensor:
            return first.task_loss(task_id, target(target.unflatten(w), xb), yb)

        # (S,); a loop over the seeds where vmap cannot run the target (recurrent layers)
        return target.vmap(
            one, (0, 0, 0), flat, x, y, purpose="seeds (--parallel-seeds)", cost="one target forward per seed"
        )

    def _penalties(self, params: dict, buffers: dict, optimizer: torch.optim.Optimizer) -> Optional[torch.Tensor]:
        st = self.members[0].strategy
        if not isinstance(st, HNETRegularizer) or not st.old_ids or st.beta == 0:
            return None
        if st.lookahead:
            steps = candidate_step(optimizer)
            params = {n: (p + steps[p]) if p in steps else p for n, p in params.items()}
        current = self.generate_raw(params, buffers, list(st.old_ids))  # (S, T-1, padded)
        if self._reg_targets is None:
            raise RuntimeError("the ensemble's regulariser targets are stacked by begin_task(); begin the task first")
        targets, weights = self._reg_targets
        if isinstance(st, IWRegularizer):
            fn = lambda c, t, w: importance_weighted_regularizer(c, t, w, st.beta)  # noqa: E731
        else:
            fn = lambda c, t, w: hnet_output_regularizer(c, t, st.beta, w)  # noqa: E731
        return vmap(fn)(current, targets, weights)  # (S,)

    # ------------------------------------------------------------------ training
    def begin_task(self, task_id: int, num_classes: int) -> None:
        """Register ``task_id`` in every seed, run the strategies' ``before_task`` hooks, stack the parameters and
        build one optimizer over the stacked trainable tensors (what :meth:`fit_task` does before its steps)."""
        first = self.members[0]
        for i, m in enumerate(self.members):
            with self.member_rng(i):
                m.register_task(task_id, num_classes)
                m.strategy.before_task(m, task_id)
                m.hnet.train()
                m.target.train()
        self._params, self._buffers, self._trainable = self._stack()
        self._optimizer = make_optimizer(
            first.optimizer_name, [self._params[n] for n in self._trainable], first.lr, first.optimizer_kwargs
        )
        st = first.strategy
        self._reg_targets = None  # the seeds' eq. 2/3 targets and weights in raw space, stacked ONCE per task
        if isinstance(st, HNETRegularizer) and st.old_ids and st.beta != 0:
            spaces = [m.strategy.raw_space(m) for m in self.members]
            self._reg_targets = (torch.stack([sp[0] for sp in spaces]), torch.stack([sp[1] for sp in spaces]))
        self._task = task_id

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One step of every seed on its own batch (``x``: ``(S, B, ...)`` — every tensor of a tuple/dict ``x`` —,
        ``y``: ``(S, B)``); returns the seeds'
        total losses ``(S,)`` as a detached device tensor (no host synchronisation)."""
        params, buffers, optimizer = self._params, self._buffers, self._optimizer
        optimizer.zero_grad(set_to_none=True)
        task = self._task_losses(params, buffers, self._task, x, y)
        if getattr(self.members[0].strategy, "uses_lookahead", False):
            task.sum().backward()
            reg = self._penalties(params, buffers, optimizer)
            if reg is not None:
                reg.sum().backward()
        else:
            reg = self._penalties(params, buffers, optimizer)
            (task + reg if reg is not None else task).sum().backward()
        optimizer.step()
        return task.detach() + (reg.detach() if reg is not None else 0.0)

    def end_task(self, data: Any, steps: int, final_losses: Sequence[float]) -> list[dict]:
        """Write the stacked values back to the seeds and run their ``after_task`` hooks; returns the logs."""
        task_id = self._task
        self._unstack(self._params, self._optimizer, self._trainable)
        logs = []
        for i, m in enumerate(self.members):
            with self.member_rng(i):
                m.hnet.task_embeddings[task_id].requires_grad_(False)
                m.strategy.after_task(m, task_id, data)
            m.learned_tasks.append(task_id)
            log = {"task": task_id, "steps": steps, "final_loss": final_losses[i], "parallel_seeds": len(self.members)}
            m.train_log[task_id] = log
            logs.append(log)
        del self._params, self._buffers, self._optimizer, self._trainable, self._reg_targets
        return logs

    def fit_task(
        self,
        task_id: int,
        data: Any,
        iterations: Optional[int] = None,
        epochs: Optional[int] = None,
        num_classes: Optional[int] = None,
        progress: bool = False,
    ) -> list[dict]:
        """Learn one task in every seed (``data``: one task for all seeds, as :meth:`ContinualLearner.fit_task`
        takes it). Returns each seed's training log."""
        first = self.members[0]
        if (iterations is None) == (epochs is None):
            raise ValueError("give exactly one of iterations= or epochs=")
        bs = first.batch_size
        steps = int(iterations) if iterations is not None else int(epochs or 0) * first.steps_per_epoch(data, bs)
        if steps <= 0:
            raise ValueError(f"the number of steps must be positive, got {steps}")
        k = first.infer_num_classes(data, num_classes, task_id)
        first.data_source(data, task_id).check(k)
        self.begin_task(task_id, k)
        batches = [m.task_batches(data, bs, task_id=task_id) for m in self.members]
        check = first.check_every
        losses = torch.zeros(check, len(self.members), device=self.device)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, desc=f"task {task_id} x{len(self.members)} seeds", leave=False)
        window_mean = [float("nan")] * len(self.members)
        for it in range(steps):
            pairs = [next(b) for b in batches]
            losses[it % check] = self.train_step(
                stack_inputs([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
            )
            if (it + 1) % check == 0 or it + 1 == steps:
                window = losses[: (it % check) + 1]
                finite = torch.isfinite(window)
                if not bool(finite.all()):  # one host sync per window
                    bad = (~finite).nonzero()
                    row = int(bad[0, 0])
                    seeds = sorted({self.members[j].seed for j in bad[bad[:, 0] == row, 1].tolist()})
                    note = (
                        ""
                        if len(seeds) == 1
                        else " (the recurrent generator's shared fused call lets one "
                        "diverging seed spoil every seed's loss: rerun without --parallel-seeds to find it)"
                    )
                    raise NonFiniteLossError(
                        f"non-finite loss in seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} at "
                        f"task {task_id}, iteration {it - (it % check) + row}{note}: lower the learning rate or "
                        "beta; the last saved checkpoint is unchanged"
                    )
                window_mean = window.mean(0).tolist()
                if bar is not None:
                    bar.update(len(window))
                    bar.set_postfix(loss=f"{sum(window_mean) / len(window_mean):.4f}")
        if bar is not None:
            bar.close()
        return self.end_task(data, steps, window_mean)

    def evaluate(
        self, tasks_data: Any, scenarios: Optional[Sequence[str]] = None, record: bool = True, temperatures: Any = None
    ) -> list[dict]:
        """Every seed's :meth:`ContinualLearner.evaluate`, in its own RNG stream."""
        out = []
        for i, m in enumerate(self.members):
            with self.member_rng(i):
                out.append(m.evaluate(tasks_data, scenarios, record, temperatures))
        return out
