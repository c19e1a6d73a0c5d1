"""Evaluation of a continual learner: test accuracy of every learned task in the CL1/CL2/CL3 scenarios, and the
accuracy matrix with its summaries (final average, during, backward transfer)."""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

from .batches import TaskSource
from .learner_fields import LearnerFields
from .scenarios import check_scenario, evaluate_task, row_temperatures
from .target import kept_modes
from .task_inference import confusion_matrix, get_criterion, make_candidates

__all__ = ["Evaluation", "accuracy_summary"]


class Evaluation(LearnerFields):
    """Mixin of :class:`~hypercl.ContinualLearner`: :meth:`evaluate` and :meth:`results`.

    Needs the learner's ``hnet``, ``target``, ``device``, ``heads``, ``task_conditioned``, ``task_buffers``,
    ``learned_tasks``, ``eval_batch_size``, ``scenario``, ``history`` and ``_source``.
    """

    def _task_test_sets(self, tasks_data: Any) -> dict[int, TaskSource]:
        if isinstance(tasks_data, Mapping):
            items = {int(k): v for k, v in tasks_data.items()}
        elif hasattr(tasks_data, "tasks"):
            items = dict(enumerate(tasks_data.tasks))
        else:
            items = dict(enumerate(tasks_data))
        return {t: self.data_source(d, t, "test") for t, d in items.items() if t in self.learned_tasks}

    def task_weights(self, task_ids: Sequence[int]) -> tuple[dict, Optional[dict]]:
        """The weights of ``task_ids`` generated in one call, stacked ``(T, ...)``, and their per-task buffers
        stacked the same way (``None`` without buffers); for a plain network the one weight set, ``T = 1``."""
        ids = list(task_ids)
        if not self.task_conditioned:
            single = self.hnet(ids[-1])
            return {n: w.unsqueeze(0) for n, w in single.items()}, None
        stacked = self.hnet.generate(ids)
        if not self.task_buffers:
            return stacked, None
        names = list(self.task_buffers[ids[0]])
        return stacked, {n: torch.stack([self.task_buffers[t][n] for t in ids]) for n in names}

    def batched_logits(self, weights: tuple[dict, Optional[dict]], x: Any) -> torch.Tensor:
        """``(T, B, O)``: each weight set of :meth:`task_weights` applied to the batch ``x`` in one ``vmap`` call."""
        stacked, bufs = weights
        return self.target.batched(stacked, x, buffers=bufs, buffers_per_task=bufs is not None)

    @torch.no_grad()
    def evaluate(
        self,
        tasks_data: Any,
        scenarios: Optional[Sequence[str]] = None,
        record: bool = True,
        temperatures: Any = None,
        task_inference: Any = None,
    ) -> dict[str, dict]:
        """Test accuracy of every LEARNED task, in each scenario (default: the learner's ``scenario``).

        ``tasks_data``: a benchmark (``.tasks``), a list indexed by task id, or a dict ``{task_id: data}``; each task
        as :meth:`fit_task` takes it: ``(X, Y)`` (local labels), an object with ``x_test``/``y_test``, or an iterable
        of ``(x, y)`` batches (a DataLoader). For a hypernetwork all learned tasks' weights are generated in one call
        and applied to each test batch in one ``vmap`` call (a loop over the tasks where vmap cannot run the target);
        CL2/CL3 infer the task per sample by entropy, and the task-inference accuracy is reported.
        ``temperatures`` (per task id: a sequence, tensor or ``{task: T}``): each candidate task's logits are divided
        by its ``T_t`` before the softmax of the entropy and of the prediction (``None``: unchanged). With ``record``
        the row is appended to the accuracy matrix (as "after learning the last learned task").
        ``task_inference``: the CL2/CL3 criterion, a name of :mod:`hypercl.task_inference` (``"entropy"`` by default,
        ``"energy"``, ``"max_logit"``, ``"entropy_gradient"``, ``"ensemble:samples=8,scale=0.5"``, ...) or a
        :class:`~hypercl.task_inference.Criterion`; the hypernetwork is called once for all tasks. For CL2/CL3 of a
        hypernetwork each scenario's result also holds ``inferred`` (``{task: [inferred task id per test sample]}``),
        ``confusion`` (``{"tasks": learned ids, "counts": true task × inferred task}``) and ``task_inference_method``.
        """
        scen = [check_scenario(s) for s in (scenarios or [self.scenario])]
        if not self.learned_tasks:
            raise RuntimeError("no task has been learned yet")
        sets = self._task_test_sets(tasks_data)
        learned = list(self.learned_tasks)
        temps = row_temperatures(temperatures, learned, self.device)
        criterion = get_criterion(task_inference)
        infers = self.task_conditioned and any(s != "cl1" for s in scen)
        infer: Optional[Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]] = None
        inferred: dict[int, list] = {}
        logits_of: Callable[[Any], torch.Tensor]
        with kept_modes(self.target, self.hnet):  # every submodule's mode, restored after the evaluation
            self.target.eval()
            self.hnet.eval()
            if self.task_conditioned:
                bufs = None
                if self.task_buffers:
                    names = list(self.task_buffers[learned[0]])
                    bufs = {n: torch.stack([self.task_buffers[t][n] for t in learned]) for n in names}
                cands = make_candidates(
                    self.hnet, self.target, learned, criterion if infers else get_criterion(None), bufs, temps
                )
                logits_of = cands.logits

                def infer_tasks(logits: torch.Tensor, mask: torch.Tensor, xb: Any) -> torch.Tensor:
                    return criterion.infer(logits, mask, xb, cands)

                infer = infer_tasks
            else:
                logits_of = partial(self.target, self.hnet(learned[-1]))
            out: dict[str, dict] = {s: {"accuracy": {}, "task_inference": {}} for s in scen}
            for task, src in sets.items():
                k = self.heads.num_classes[task]
                src.check(k)
                inferred[task] = []
                res = evaluate_task(
                    logits_of,
                    src.iterate(self.device, k, self.eval_batch_size),
                    self.heads,
                    learned,
                    task,
                    self.task_conditioned,
                    scen,
                    temps,
                    infer,
                    inferred[task],
                )
                for s in scen:
                    out[s]["accuracy"][task], out[s]["task_inference"][task] = res[s]
        ids = torch.tensor(learned)
        per_task = {t: torch.cat(r).cpu() for t, r in inferred.items() if r}  # rows: positions in `learned`
        confusion = None
        if per_task:
            true = torch.cat([torch.full_like(v, learned.index(t)) for t, v in per_task.items()])
            counts = confusion_matrix(true, torch.cat(list(per_task.values())), len(learned))
            confusion = {"tasks": learned, "counts": counts.tolist()}
        for s in scen:
            accs = list(out[s]["accuracy"].values())
            out[s]["average"] = sum(accs) / len(accs) if accs else float("nan")
            row = {
                "after_task": learned[-1],
                "accuracy": dict(out[s]["accuracy"]),
                "task_inference": dict(out[s]["task_inference"]),
            }
            if confusion is not None and s != "cl1":
                out[s]["inferred"] = {t: ids[v].tolist() for t, v in per_task.items()}
                out[s]["confusion"] = confusion
                out[s]["task_inference_method"] = row["task_inference_method"] = criterion.spec()
                row["confusion"] = confusion
            if record:
                self.history[s].append(row)
        return out

    def results(self, scenario: Optional[str] = None) -> dict:
        """The recorded accuracy matrix and its summaries for one scenario (plain data, JSON-ready).

        ``matrix[i][j]``: accuracy on task ``j`` after learning task ``rows[i]`` (``None`` where not evaluated);
        ``final_average``: mean of the last row; ``during``: each task right after it was learned;
        ``backward_transfer``: mean over all but the last task of (final − during) (negative = forgetting).
        """
        s = check_scenario(scenario or self.scenario)
        return accuracy_summary(s, self.history[s])


def accuracy_summary(scenario: str, rows: Sequence[Mapping[str, Any]]) -> dict:
    """The accuracy matrix of one scenario's recorded rows (``{"after_task", "accuracy", "task_inference"}``) and its
    summaries, as plain data (see :meth:`Evaluation.results`)."""
    s = scenario
    tasks = sorted({t for r in rows for t in r["accuracy"]})
    matrix = [[r["accuracy"].get(t) for t in tasks] for r in rows]
    ti = [[r["task_inference"].get(t) for t in tasks] for r in rows]
    confusion = [r.get("confusion") for r in rows]
    methods = {r["task_inference_method"] for r in rows if r.get("task_inference_method")}
    during: dict[Any, Any] = {}
    for r in rows:
        t = r["after_task"]
        if t in r["accuracy"]:
            during[t] = r["accuracy"][t]
    final = rows[-1]["accuracy"] if rows else {}
    final_avg = sum(final.values()) / len(final) if final else None
    during_avg = sum(during.values()) / len(during) if during else None
    last = rows[-1]["after_task"] if rows else None
    bwt_terms = [final[t] - during[t] for t in final if t in during and t != last]
    return {
        "scenario": s,
        "tasks": tasks,
        "rows": [r["after_task"] for r in rows],
        "matrix": matrix,
        "task_inference_matrix": ti,
        "task_inference_confusion": confusion,
        "task_inference_method": ", ".join(sorted(methods)) or None,
        "final_average": final_avg,
        "during": [during.get(t) for t in tasks],
        "during_average": during_avg,
        "backward_transfer": sum(bwt_terms) / len(bwt_terms) if bwt_terms else None,
    }
