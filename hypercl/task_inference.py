"""Task inference for CL2/CL3: which learned task a test input belongs to, from the input and the generated weights.

In CL2/CL3 the task is unknown at test time. Every criterion here scores ALL learned tasks for a batch of inputs in one
batched pass over the stacked generated weights (``target.batched``, a ``vmap`` over tasks) and returns a
``(T, B)`` *surprise*: how foreign the input looks to task ``t``'s network; the task with the LOWEST surprise is
picked per sample (:meth:`Criterion.infer`), and that task's own generated weights give the class. A criterion reads
only the inputs of the batch and the generated weights (plus, for :class:`EmbeddingEnsemble`, perturbed copies of the
task embeddings): never labels, never another task's data, never stored data. The hypernetwork is called once per
evaluation for all tasks (and all perturbed embeddings).

Criteria (``evaluate(..., task_inference=NAME)``, ``hypercl run --task-inference NAME``; settings as
``"name:key=value,key=value"``, e.g. ``"ensemble:samples=8,scale=0.5,measure=mi"``):

=====================  ==================================================================================
``entropy`` (default)  predictive entropy over the task's own units (seed paper 4.1; von Oswald et al.)
``energy``             free energy ``-logsumexp`` of the task's own logits (Liu et al. 2020)
``max_logit``          minus the largest own logit (Hendrycks et al. 2022, "MaxLogit")
``entropy_gradient``   SupSup's one-shot entropy gradient w.r.t. per-task mixing coefficients (Wortsman et al. 2020)
``ensemble``           uncertainty over perturbed task embeddings: total entropy or mutual information
=====================  ==================================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Optional, Sequence, Union

import torch
from torch.func import jvp

from .scenarios import confusion_matrix, masked_entropy, scale_logits

__all__ = [
    "Candidates",
    "Criterion",
    "Entropy",
    "Energy",
    "MaxLogit",
    "EntropyGradient",
    "EmbeddingEnsemble",
    "CRITERIA",
    "DEFAULT",
    "get_criterion",
    "criterion_names",
    "make_candidates",
    "confusion_matrix",
    "identification_accuracy",
    "infer_tasks",
    "surprise_scores",
]

Params = Mapping[str, torch.Tensor]

#: the criterion of the seed paper (section 4.1) and the default everywhere
DEFAULT = "entropy"


@dataclass
class Candidates:
    """What a criterion may read besides the inputs: the learned tasks' generated weights, stacked ``(T, ...)`` in the
    order of ``task_ids``, their per-task buffers (stacked, or ``None``), optional extra weight sets ``samples``
    (``(K·T, ...)``, row ``k·T + t`` = sample ``k`` of task ``t``) and optional per-task temperatures ``(T,)``."""

    target: Any  # FunctionalTarget
    task_ids: list[int]
    params: Params
    buffers: Optional[Params] = None
    samples: Optional[Params] = None
    temperatures: Optional[torch.Tensor] = None
    #: whatever else a criterion prepared once per evaluation (e.g. the superposed weights and their tangents)
    extra: dict = field(default_factory=dict)

    @property
    def num_tasks(self) -> int:
        return len(self.task_ids)

    def logits(self, x: Any) -> torch.Tensor:
        """``(T, B, O)``: every task's generated weights on the batch, in ONE ``target.batched`` call."""
        return self.target.batched(self.params, x, buffers=self.buffers, buffers_per_task=self.buffers is not None)

    def sample_logits(self, x: Any) -> torch.Tensor:
        """``(K, T, B, O)``: the extra weight sets on the batch, in ONE ``target.batched`` call."""
        if self.samples is None:
            raise ValueError(
                "these candidates hold no weight samples; the criterion must ask for them (Criterion.embedding_noise)"
            )
        k = next(iter(self.samples.values())).shape[0] // self.num_tasks
        bufs = (
            None if self.buffers is None else {n: b.repeat(k, *([1] * (b.dim() - 1))) for n, b in self.buffers.items()}
        )
        out = self.target.batched(self.samples, x, buffers=bufs, buffers_per_task=bufs is not None)
        out = out.reshape(k, self.num_tasks, *out.shape[1:])
        if self.temperatures is not None:
            out = torch.stack([scale_logits(o, self.temperatures) for o in out])
        return out


class Criterion:
    """A task-inference criterion: :meth:`surprise` gives ``(T, B)``, lower = the input looks like the task's own.

    ``logits`` handed to :meth:`surprise` are the candidates' own logits ``(T, B, O)`` (divided by the per-task
    temperatures where given); ``mask`` ``(T, O)`` marks each task's output units; ``x`` is the batch's inputs.
    """

    name: ClassVar[str] = ""

    def surprise(self, logits: torch.Tensor, mask: torch.Tensor, x: Any, cands: Candidates) -> torch.Tensor:
        raise NotImplementedError

    def infer(self, logits: torch.Tensor, mask: torch.Tensor, x: Any, cands: Candidates) -> torch.Tensor:
        """``(B,)`` row (position in ``cands.task_ids``) of the task with the lowest surprise, per sample."""
        return self.surprise(logits, mask, x, cands).argmin(dim=0)

    def embedding_noise(self, task_emb: torch.Tensor) -> Optional[torch.Tensor]:
        """Perturbed task embeddings ``(K·T, E)`` to generate extra weight sets from (``None``: none needed)."""
        return None

    def prepare(self, hnet: Any, cands: Candidates) -> Optional[Candidates]:
        """Generate what the criterion needs besides the tasks' own weights, in ONE hypernetwork call that also
        yields those weights (a new :class:`Candidates`); ``None``: the tasks' own weights suffice."""
        return None

    def spec(self) -> str:
        """The name with its settings, as :func:`get_criterion` reads it back."""
        fields = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        return self.name + (":" + ",".join(f"{k}={v}" for k, v in fields.items()) if fields else "")


class Entropy(Criterion):
    """Predictive entropy of the softmax over the task's own output units (seed paper section 4.1; von Oswald et al.
    2020, ``mnist/train_splitMNIST.py``:274-294 of github.com/chrhenning/hypercl at e325678). Bit-identical to
    :func:`hypercl.scenarios.infer_task_by_entropy`. Pick it as the cheap default; it needs each task's network to be
    unsure on other tasks' inputs."""

    name = "entropy"

    def surprise(self, logits: torch.Tensor, mask: torch.Tensor, x: Any, cands: Candidates) -> torch.Tensor:
        return masked_entropy(logits, mask)


class Energy(Criterion):
    """Free energy ``E(x) = -logsumexp_k f_k(x)`` over the task's own units (Liu et al. 2020, "Energy-based
    Out-of-distribution Detection", eq. 1 with T = 1): lower energy = in-distribution. Uses the logits' scale, which
    the softmax entropy discards; as cheap as entropy."""

    name = "energy"

    def surprise(self, logits: torch.Tensor, mask: torch.Tensor, x: Any, cands: Candidates) -> torch.Tensor:
        return -logits.masked_fill(~mask.unsqueeze(1), float("-inf")).logsumexp(-1)


class MaxLogit(Criterion):
    """Minus the largest logit over the task's own units (Hendrycks et al. 2022, "Scaling Out-of-Distribution
    Detection for Real-World Settings", MaxLogit): a large top logit = in-distribution. As cheap as entropy."""

    name = "max_logit"

    def surprise(self, logits: torch.Tensor, mask: torch.Tensor, x: Any, cands: Candidates) -> torch.Tensor:
        return -logits.masked_fill(~mask.unsqueeze(1), float("-inf")).amax(-1)


@dataclass
class EntropyGradient(Criterion):
    """SupSup's one-shot task inference (Wortsman et al. 2020, "Supermasks in Superposition", section 3.3), for
    generated weights: a superposed network with mixing coefficients ``α_t = 1/T`` classifies the input over the units
    of ALL learned tasks; the surprise of task ``t`` is ``∂H(p(y|x, α))/∂α_t`` per sample, and the task whose
    coefficient decreases the entropy most is picked (argmin).

    Henning et al. 2021 do this with a hypernetwork (github.com/chrhenning/posterior_replay_cl at e60ed78:
    ``probabilistic/prob_mnist/train_args.py``:1690-1704 defines ``--supsup_task_inference``; ``probabilistic/
    train_vi.py``:506-571 takes, per sample, the gradient of the entropy w.r.t. uniform ``alphas`` and its argmin;
    the superposition is over task EMBEDDINGS, ``e(α) = Σ_t α_t e_t``, ``probabilistic/prob_mnist/train_utils.py``
    :559-569 and :639-641, and the softmax spans all allowed outputs, :680-682). ``mix="embeddings"`` is theirs:
    ``W(α) = h(Σ_t α_t e_t)``; ``mix="weights"`` superposes the generated weights, ``W(α) = Σ_t α_t W_t`` (and the
    per-task buffers), which works for any weight source, GROW's per-task generator weights included; ``"auto"``:
    embeddings where the hypernetwork has task embeddings and no per-task generator weights, else weights.
    One step (their ``--supsup_grad_steps`` default 1).

    No loop over tasks and no per-sample backward: with ``mix="embeddings"`` the superposed weights ``W(ᾱ)`` and their
    ``T`` tangents ``∂W/∂α_t = J_h(ē) e_t`` come from one forward-mode (``jvp``) pass through the hypernetwork,
    vmapped over the ``T`` directions, in the same call that generates the tasks' own weights (once per
    evaluation); per batch, the ``T`` directional derivatives of the entropy are one ``jvp`` through the target,
    vmapped over the ``T`` tangents (about 3·T forwards; entropy: T). Temperatures do not apply (one mixed network).
    """

    mix: str = "auto"
    name: ClassVar[str] = "entropy_gradient"
    MIXES: ClassVar[tuple[str, ...]] = ("auto", "embeddings", "weights")

    def __post_init__(self) -> None:
        if self.mix not in self.MIXES:
            raise ValueError(f"entropy_gradient: unknown mix {self.mix!r}; valid: {list(self.MIXES)}")

    @staticmethod
    def _mixes_embeddings(hnet: Any) -> bool:
        return (
            hasattr(hnet, "task_embedding_matrix")
            and hasattr(hnet, "generate_flat")
            and not getattr(getattr(hnet, "generator", None), "growing", False)
        )

    def prepare(self, hnet: Any, cands: Candidates) -> Optional[Candidates]:
        emb_mix = self._mixes_embeddings(hnet)
        if self.mix == "embeddings" and not emb_mix:
            raise ValueError(
                "entropy_gradient:mix=embeddings needs a hypernetwork with task embeddings and no "
                f"per-task generator weights (GROW); {type(hnet).__name__} here: use mix=weights"
            )
        if self.mix == "weights" or not emb_mix:
            return None
        ids, t = cands.task_ids, cands.num_tasks
        emb = hnet.task_embedding_matrix(ids)  # (T, E)
        alpha = torch.full((t,), 1.0 / t, dtype=emb.dtype, device=emb.device)
        rows = torch.cat([emb, (alpha @ emb).unsqueeze(0)])  # the tasks' own embeddings + the superposed one

        def gen(e: torch.Tensor) -> torch.Tensor:
            return hnet.generate_flat([*ids, ids[0]], task_emb=e)

        tangents = torch.zeros(t, t + 1, emb.shape[1], dtype=emb.dtype, device=emb.device)
        tangents[:, t] = emb  # ∂e(α)/∂α_t = e_t; the tasks' own rows do not move

        def one(tangent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            res = jvp(gen, (rows,), (tangent,))
            return res[0], res[1]

        out_dims: Any = (None, 0)  # torch's annotation omits None entries, which vmap accepts
        flat, dflat = torch.func.vmap(one, out_dims=out_dims)(tangents)
        target = cands.target
        return Candidates(
            target,
            ids,
            target.unflatten(flat[:t]),
            cands.buffers,
            None,
            cands.temperatures,
            {"mixed": target.unflatten(flat[t]), "tangents": target.unflatten(dflat[:, t])},
        )

    def surprise(self, logits: torch.Tensor, mask: torch.Tensor, x: Any, cands: Candidates) -> torch.Tensor:
        union = mask.any(0, keepdim=True)  # (1, O): every learned task's units
        target = cands.target
        bufs = dict(cands.buffers or {})
        fixed = {n: b[0] for n, b in bufs.items() if not b.is_floating_point()}
        floats = {n: b for n, b in bufs.items() if b.is_floating_point()}
        if "mixed" in cands.extra:  # superposed embeddings: W(ᾱ) and its tangents from the hypernetwork
            point = {**cands.extra["mixed"], **{n: b.mean(0) for n, b in floats.items()}}
            tangents = {**cands.extra["tangents"], **{n: torch.zeros_like(b) for n, b in floats.items()}}
        else:  # superposed weights: W(ᾱ) = mean_t W_t, ∂W/∂α_t = W_t
            stacked = {**cands.params, **floats}
            point = {n: w.mean(0) for n, w in stacked.items()}
            tangents = stacked

        def entropy_at(p: dict) -> torch.Tensor:
            out = target.apply({**p, **fixed}, x)
            return masked_entropy(out.unsqueeze(0), union)[0]  # (B,)

        def directional(tangent: dict) -> torch.Tensor:
            return jvp(entropy_at, (point,), (tangent,))[1]

        return target.vmap(
            directional, (0,), tangents, purpose="entropy-gradient tangents", cost="one forward-mode pass per task"
        )


@dataclass
class EmbeddingEnsemble(Criterion):
    """Predictive uncertainty over several weight sets per task: ``samples`` perturbed task embeddings
    ``e_t + scale · std(e_t) · ε`` (ε ~ N(0, I), drawn from a generator seeded by ``seed``, the same every call) give
    ``samples`` extra weight sets per task, generated in the same hypernetwork call as the tasks' own weights; with the
    unperturbed set they form an ensemble of ``samples + 1`` members per task. ``measure="entropy"``: the entropy of
    the ensemble's mean prediction over the task's own units (total uncertainty); ``"mi"``: the mutual information
    ``H(mean p) − mean H(p)`` (disagreement between members, the epistemic part; Houlsby et al. 2011 "BALD", as an
    out-of-distribution score: Malinin & Gales 2018; Henning et al. 2021 use agreement over weight samples from a
    posterior, posterior_replay_cl ``probabilistic/prob_mnist/README.rst``:71-75 "CL3-agree"). The perturbed embeddings
    stand in for a posterior over task embeddings; ``scale`` and ``samples`` are chosen on validation data. Costs
    ``samples + 1`` times entropy. Needs a hypernetwork with task embeddings.
    """

    samples: int = 8
    scale: float = 0.5
    measure: str = "entropy"
    seed: int = 0
    name: ClassVar[str] = "ensemble"
    MEASURES: ClassVar[tuple[str, ...]] = ("entropy", "mi")

    def __post_init__(self) -> None:
        self.samples, self.scale, self.seed = int(self.samples), float(self.scale), int(self.seed)
        if self.samples < 1:
            raise ValueError(f"ensemble: samples must be at least 1, got {self.samples}")
        if not (self.scale >= 0 and math.isfinite(self.scale)):
            raise ValueError(f"ensemble: scale must be finite and >= 0, got {self.scale}")
        if self.measure not in self.MEASURES:
            raise ValueError(f"ensemble: unknown measure {self.measure!r}; valid: {list(self.MEASURES)}")

    def embedding_noise(self, task_emb: torch.Tensor) -> Optional[torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed)
        eps = torch.randn(self.samples, *task_emb.shape, generator=gen, dtype=task_emb.dtype).to(task_emb.device)
        std = task_emb.std(dim=-1, keepdim=True) if task_emb.shape[-1] > 1 else task_emb.abs()
        return (task_emb + self.scale * std * eps).reshape(-1, task_emb.shape[-1])

    def surprise(self, logits: torch.Tensor, mask: torch.Tensor, x: Any, cands: Candidates) -> torch.Tensor:
        members = torch.cat([logits.unsqueeze(0), cands.sample_logits(x)])  # (K+1, T, B, O)
        m = mask[None, :, None, :]
        logp = torch.log_softmax(members.masked_fill(~m, float("-inf")), dim=-1)
        p = logp.exp()
        mean_p = p.mean(0)  # (T, B, O)
        total = -(mean_p * torch.log(mean_p.clamp_min(1e-30)).masked_fill(~mask.unsqueeze(1), 0.0)).sum(-1)
        if self.measure == "entropy":
            return total
        expected = -(p * logp.masked_fill(~m, 0.0)).sum(-1).mean(0)
        return total - expected


CRITERIA: dict[str, type[Criterion]] = {
    c.name: c for c in (Entropy, Energy, MaxLogit, EntropyGradient, EmbeddingEnsemble)
}


def criterion_names() -> list[str]:
    return list(CRITERIA)


def _value(text: str) -> Union[int, float, str]:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def get_criterion(spec: Union[str, Criterion, None]) -> Criterion:
    """A criterion from ``None`` (the default, entropy), an instance, or ``"name"`` / ``"name:key=value,..."``."""
    if isinstance(spec, Criterion):
        return spec
    spec = DEFAULT if spec is None else str(spec).strip()
    name, _, rest = spec.partition(":")
    if name not in CRITERIA:
        raise ValueError(
            f"unknown task inference {name!r}; valid: {criterion_names()} (settings as name:key=value,key=value)"
        )
    kwargs: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, val = item.partition("=")
        if not eq:
            raise ValueError(f"task inference setting {item!r} of {spec!r} is not key=value")
        kwargs[key.strip()] = _value(val.strip())
    try:
        return CRITERIA[name](**kwargs)
    except TypeError:
        raise ValueError(
            f"task inference {name!r} takes no settings {sorted(kwargs)}; "
            f"its settings: {sorted(getattr(CRITERIA[name], '__dataclass_fields__', {}))}"
        ) from None


def make_candidates(
    hnet: Any,
    target: Any,
    task_ids: Sequence[int],
    criterion: Criterion,
    buffers: Optional[Params] = None,
    temperatures: Optional[torch.Tensor] = None,
) -> Candidates:
    """The learned tasks' weights (and the criterion's extra weight sets) from ONE hypernetwork call."""
    ids = list(task_ids)
    noise = None
    if type(criterion).embedding_noise is not Criterion.embedding_noise:
        if not (hasattr(hnet, "task_embedding_matrix") and hasattr(hnet, "generate_flat")):
            raise ValueError(
                f"task inference {criterion.name!r} perturbs task embeddings and needs a HyperNetwork; "
                f"this learner's weights come from {type(hnet).__name__}: pick another criterion"
            )
        emb = hnet.task_embedding_matrix(ids)
        noise = criterion.embedding_noise(emb)
    if noise is None:
        base = Candidates(target, ids, {}, buffers, None, temperatures)
        prepared = criterion.prepare(hnet, base)
        if prepared is not None:
            return prepared
        base.params = hnet.generate(ids)
        return base
    flat = hnet.generate_flat(ids * (1 + noise.shape[0] // len(ids)), task_emb=torch.cat([emb, noise]))
    return Candidates(
        target, ids, target.unflatten(flat[: len(ids)]), buffers, target.unflatten(flat[len(ids) :]), temperatures
    )


def identification_accuracy(confusion: Any) -> list[Optional[float]]:
    """Per true task: the fraction of its samples whose task was inferred correctly (``None``: no samples)."""
    c = torch.as_tensor(confusion, dtype=torch.float64)
    n = c.sum(1)
    return [None if n[i] == 0 else float(c[i, i] / n[i]) for i in range(len(c))]


def _inputs(x: Any) -> Any:
    return x.x_test if hasattr(x, "x_test") else x


@torch.no_grad()
def surprise_scores(
    learner: Any, x: Any, task_inference: Union[str, Criterion, None] = None, batch_size: Optional[int] = None
) -> torch.Tensor:
    """``(T, N)``: the criterion's surprise of every learned task (rows in ``learner.learned_tasks`` order) on every
    input of ``x`` (a tensor, a tuple/dict of them, or a test set with ``x_test``, of which only ``x_test`` is read);
    lower = the input looks like that task's own. Reads only the inputs and the generated weights."""
    from .batches import batch_len, inputs_to, slice_inputs

    x = _inputs(x)
    crit = get_criterion(task_inference)
    learned = list(learner.learned_tasks)
    if not learned:
        raise RuntimeError("no task has been learned yet")
    was = learner.hnet.training, learner.target.training
    learner.hnet.eval()
    learner.target.eval()
    try:
        bufs = None
        if getattr(learner, "task_buffers", None):
            names = list(learner.task_buffers[learned[0]])
            bufs = {n: torch.stack([learner.task_buffers[t][n] for t in learned]) for n in names}
        cands = make_candidates(learner.hnet, learner.target, learned, crit, bufs)
        n = batch_len(x)
        bs = int(batch_size) if batch_size else int(getattr(learner, "eval_batch_size", 1000))
        out, mask = [], None
        for i in range(0, n, bs):
            xb = inputs_to(slice_inputs(x, i, min(i + bs, n)), learner.device)
            logits = cands.logits(xb)
            if mask is None:
                mask = learner.heads.unit_mask(learned, logits.shape[-1], logits.device)
            out.append(crit.surprise(logits, mask, xb, cands))
        return torch.cat(out, dim=1)
    finally:
        learner.hnet.train(was[0])
        learner.target.train(was[1])


def infer_tasks(
    learner: Any, x: Any, task_inference: Union[str, Criterion, None] = None, batch_size: Optional[int] = None
) -> torch.Tensor:
    """The inferred task id of every input in ``x`` (as :func:`surprise_scores` takes it), among the learner's learned
    tasks: the lowest surprise per sample."""
    rows = surprise_scores(learner, x, task_inference, batch_size).argmin(dim=0)
    return torch.tensor(list(learner.learned_tasks), device=rows.device)[rows]
