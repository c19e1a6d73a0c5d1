"""The data path: whatever a user hands in → device batches of ``(x, y)``, the target called on ``x``, the logits.

``x`` (one batch of inputs) is any of

* a tensor — the model's one positional argument;
* a tuple or list of tensors — positional arguments (a DataLoader's default collate turns tuples into lists);
* a dict of tensors — keyword arguments (``input_ids``, ``attention_mask``, ...).

Every tensor of ``x`` has the batch as its leading dimension. A task's data (:func:`task_source`) is ``(X, Y)`` in
memory (``X`` of any of the kinds above, or an indexable lazy set such as ``PermutedImages``; batched here by
index), an object with ``x_train``/``y_train`` (or ``x_test``/``y_test``) — a benchmark task — or an iterable of
``(x, y)`` batches (a DataLoader; a dict batch holding ``"labels"`` counts too). Labels are LOCAL class indices
``0..k-1`` (integer dtype, one per sample); the errors here name the task, the sizes and the fix.

The learner, the Fisher of eq. 4, the seed ensemble and replay all go through this module, so a new input kind is
one change here.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import torch

__all__ = [
    "Inputs",
    "call_args",
    "batch_len",
    "index_inputs",
    "slice_inputs",
    "inputs_to",
    "concat_inputs",
    "stack_inputs",
    "map_inputs",
    "pick_logits",
    "whole_output",
    "TaskSource",
    "task_source",
    "split_batch",
    "check_labels",
    "DataError",
    "cast_floats",
    "DtypeCastWarning",
]

log = logging.getLogger("hypercl")

Inputs = Union[torch.Tensor, Sequence[torch.Tensor], Mapping[str, torch.Tensor]]


class DataError(ValueError):
    """Data the learner cannot use; the message names the task, the sizes and the fix."""


# ---------------------------------------------------------------------------------------------- inputs (one batch)
def call_args(x: Any) -> tuple[tuple, dict]:
    """``(args, kwargs)`` of the model call for ``x``: a tensor → one positional argument, a tuple/list →
    positional arguments, a dict → keyword arguments."""
    if isinstance(x, Mapping):
        return (), dict(x)
    if isinstance(x, (tuple, list)):
        return tuple(x), {}
    return (x,), {}


def map_inputs(fn: Callable[[Any], Any], x: Any) -> Any:
    """``fn`` applied to every tensor of ``x`` (tensor, tuple/list or dict); other values are kept."""
    if isinstance(x, torch.Tensor):
        return fn(x)
    if isinstance(x, Mapping):
        return {k: map_inputs(fn, v) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(map_inputs(fn, v) for v in x) if isinstance(x, list) else tuple(map_inputs(fn, v) for v in x)
    if hasattr(x, "__getitem__") and hasattr(x, "__len__"):  # a lazy indexable set (PermutedImages)
        return fn(x)
    return x


def _leaves(x: Any) -> list:
    if isinstance(x, Mapping):
        return [leaf for v in x.values() for leaf in _leaves(v)]
    if isinstance(x, (tuple, list)):
        return [leaf for v in x for leaf in _leaves(v)]
    return [x] if hasattr(x, "__len__") else []


def batch_len(x: Any, what: str = "x") -> int:
    """The number of samples in ``x`` (the common leading size of its tensors); an error if they disagree."""
    sizes = [len(leaf) for leaf in _leaves(x)]
    if not sizes:
        raise DataError(
            f"{what} holds no tensor: give a tensor, a tuple/list of tensors or a dict of tensors, "
            f"got {type(x).__name__}"
        )
    if len(set(sizes)) != 1:
        raise DataError(
            f"the tensors of {what} have different numbers of samples {sizes}: every input needs the "
            "batch as its leading dimension, with the same length"
        )
    return sizes[0]


def index_inputs(x: Any, idx: torch.Tensor) -> Any:
    """Samples ``idx`` of every tensor of ``x`` (the index moved to each tensor's device)."""
    return map_inputs(lambda t: t[idx.to(getattr(t, "device", "cpu"))], x)


def slice_inputs(x: Any, start: int, stop: int) -> Any:
    """Samples ``start:stop`` of every tensor of ``x``."""
    return map_inputs(lambda t: t[start:stop], x)


def inputs_to(x: Any, device: torch.device) -> Any:
    """``x`` on ``device`` (non-blocking copies)."""
    return map_inputs(lambda t: t.to(device, non_blocking=True), x)


class DtypeCastWarning(UserWarning):
    """Float inputs of another dtype than the target's were cast to the target's dtype."""


def cast_floats(x: Any, dtype: torch.dtype, task: Any = "?", warned: Optional[set] = None) -> Any:
    """``x`` with every floating tensor of another dtype cast to ``dtype`` (e.g. float64 numpy data for a float32
    target), with a :class:`DtypeCastWarning` per dtype pair not yet in ``warned`` (then added; ``None``: always);
    integer inputs (token ids) and tensors of ``dtype`` are untouched."""
    other = [t.dtype for t in _leaves(x) if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != dtype]
    if not other:
        return x
    if warned is None or (other[0], dtype) not in warned:
        if warned is not None:
            warned.add((other[0], dtype))
        warnings.warn(
            f"task {task}: float inputs of dtype {other[0]} are cast to the target network's {dtype} "
            "(give the data in that dtype to avoid the copy)",
            DtypeCastWarning,
            stacklevel=4,
        )
    return map_inputs(
        lambda t: t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != dtype else t, x
    )


def concat_inputs(xs: Sequence[Any]) -> Any:
    """The batches ``xs`` (all of one kind) joined along the sample dimension."""
    first = xs[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(list(xs))
    if isinstance(first, Mapping):
        return {k: concat_inputs([x[k] for x in xs]) for k in first}
    return type(first)(concat_inputs([x[i] for x in xs]) for i in range(len(first)))


def stack_inputs(xs: Sequence[Any]) -> Any:
    """The batches ``xs`` stacked along a NEW leading dimension (one per seed of an ensemble)."""
    first = xs[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(list(xs))
    if isinstance(first, Mapping):
        return {k: stack_inputs([x[k] for x in xs]) for k in first}
    return type(first)(stack_inputs([x[i] for x in xs]) for i in range(len(first)))


# ---------------------------------------------------------------------------------------------- outputs
def whole_output(out: Any) -> Any:
    """``wrap(model, output=whole_output)``: the model's output as it is (a VAE's ``(logits, mu, logvar)``)."""
    return out


def pick_logits(out: Any, output: Union[str, Callable[[Any], Any], None] = None, model: str = "the model") -> Any:
    """The logits in a model's output.

    ``output``: a callable (``output(out)``), an attribute or key name, or ``None`` (default: a tensor as it is,
    else ``out.logits`` / ``out["logits"]``, else the first tensor of a tuple/list).
    """
    if callable(output):
        return output(out)
    if isinstance(output, str):
        if isinstance(out, Mapping) and output in out:
            return out[output]
        if hasattr(out, output):
            return getattr(out, output)
        raise TypeError(
            f"{model} returned a {type(out).__name__} without an attribute or key {output!r}; pass "
            "wrap(model, output=...) the name that holds the logits, or a callable"
        )
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, Mapping) and isinstance(out.get("logits"), torch.Tensor):
        return out["logits"]
    if isinstance(out, (tuple, list)):
        for o in out:
            if isinstance(o, torch.Tensor):
                return o
    raise TypeError(
        f"{model} returned a {type(out).__name__}, and no logits were found in it (not a tensor, no .logits or "
        "['logits'], no tensor in a tuple): pass wrap(model, output=...) a callable that picks the logits, e.g. "
        "output=lambda out: out['scores'], or the attribute/key name"
    )


# ---------------------------------------------------------------------------------------------- labels
def check_labels(y: Any, task: Any, num_classes: Optional[int] = None, where: str = "labels") -> None:
    """An error unless ``y`` is a 1-D integer tensor with values in ``0..num_classes-1`` (no check of the range when
    ``num_classes`` is None). One host synchronisation when ``y`` is on an accelerator: call it once per data set,
    or on host batches."""
    if not isinstance(y, torch.Tensor):
        raise DataError(f"task {task}: {where} must be a tensor of class indices, got {type(y).__name__}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise DataError(
            f"task {task}: {where} have dtype {y.dtype}; class indices need an integer dtype: "
            "give y.long() (one-hot labels: y.argmax(-1))"
        )
    if y.dim() != 1:
        raise DataError(
            f"task {task}: {where} have shape {tuple(y.shape)}; give one class index per sample, shape "
            "(n,) (one-hot labels: y.argmax(-1))"
        )
    if num_classes is None or y.numel() == 0:
        return
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise DataError(
            f"task {task}: {where} range over {lo}..{hi}, but the task has {num_classes} classes "
            f"(labels 0..{num_classes - 1}): give local labels per task, or num_classes={hi + 1} to "
            "fit_task"
        )


def split_batch(batch: Any, task: Any = "?") -> tuple[Any, torch.Tensor]:
    """``(x, y)`` of one batch of an iterable: a pair, or a dict with ``"labels"`` (or ``"label"``) and inputs."""
    if isinstance(batch, Mapping):
        for key in ("labels", "label"):
            if key in batch:
                return {k: v for k, v in batch.items() if k != key}, batch[key]
        raise DataError(
            f"task {task}: a dict batch needs its labels under 'labels' (keys: {sorted(batch)}); or yield (x, y) pairs"
        )
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise DataError(
        f"task {task}: every batch must be a pair (x, y) or a dict with 'labels', got a "
        f"{type(batch).__name__}" + (f" of length {len(batch)}" if hasattr(batch, "__len__") else "")
    )


# ---------------------------------------------------------------------------------------------- a task's data
def _is_pair(data: Any) -> bool:
    return (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and isinstance(data[1], torch.Tensor)
        and (isinstance(data[0], (torch.Tensor, Mapping, tuple, list)) or hasattr(data[0], "__getitem__"))
    )


@dataclass
class TaskSource:
    """One task's data as the learner uses it: ``pair=(X, Y)`` in memory, or ``batches`` (an iterable)."""

    task: Any
    pair: Optional[tuple[Any, torch.Tensor]] = None
    batches: Optional[Iterable] = None
    num_classes: Optional[int] = None  # the data's own count (a benchmark task's), when it has one
    labels: bool = True  # whether ``y`` are class indices (checked); False for a VAE's targets (its inputs)
    float_dtype: Optional[torch.dtype] = None  # float inputs of another dtype are cast to it (the target's dtype)
    cast_warned: Optional[set] = None  # the dtype pairs already warned about (shared by one learner's sources)

    def _to(self, x: Any, device: torch.device) -> Any:
        x = inputs_to(x, device)
        return x if self.float_dtype is None else cast_floats(x, self.float_dtype, self.task, self.cast_warned)

    def batch_iterable(self) -> Iterable:
        """The iterable of batches (the data is not in memory)."""
        if self.batches is None:
            raise DataError(f"task {self.task}: neither (X, Y) in memory nor an iterable of batches")
        return self.batches

    @property
    def in_memory(self) -> bool:
        return self.pair is not None

    def __len__(self) -> int:
        if self.pair is not None:
            return len(self.pair[1])
        try:
            return len(self.batch_iterable())  # type: ignore[arg-type]  # TypeError below if unsized
        except TypeError:
            raise DataError(
                f"task {self.task}: epochs= needs data with a length; give iterations= for a plain iterable"
            ) from None

    def steps_per_epoch(self, batch_size: int) -> int:
        return math.ceil(len(self) / batch_size) if self.pair is not None else len(self)

    def infer_num_classes(self) -> int:
        """The task's number of classes: the data's own count, else ``max label + 1`` (of ``Y``, or of the first
        batch of an iterable — a later batch with a larger label is then an error), logged once."""
        if self.num_classes is not None:
            return int(self.num_classes)
        if self.pair is not None:
            y = self.pair[1]
            source = "its labels"
        else:
            batches = self.batch_iterable()
            if iter(batches) is batches:
                raise DataError(
                    f"task {self.task}: the data is a one-pass iterator; pass num_classes= to fit_task "
                    "(or give a DataLoader / list of batches, whose first batch the count is read from)"
                )
            first = next(iter(batches), None)
            if first is None:
                raise DataError(f"task {self.task}: the data iterable yielded no batches")
            y = split_batch(first, self.task)[1]
            source = "the labels of its first batch"
        check_labels(y, self.task)
        if y.numel() == 0:
            raise DataError(f"task {self.task}: no labels to infer the number of classes from; pass num_classes=")
        k = int(y.max()) + 1
        log.info("task %s: %d classes inferred from %s (pass num_classes= to set it)", self.task, k, source)
        return k

    def check(self, num_classes: Optional[int] = None) -> None:
        """Errors for data no step can use: ``len(X) != len(Y)``, no samples, labels that are not class indices or
        lie outside ``0..num_classes-1`` (in-memory data: all labels, one check)."""
        if self.pair is None:
            return
        x, y = self.pair
        n = batch_len(x, f"task {self.task}'s inputs X")
        if n != len(y):
            raise DataError(f"task {self.task}: X has {n} samples but Y has {len(y)} labels: give one label per sample")
        if n == 0:
            raise DataError(f"task {self.task} has no samples")
        if self.labels:
            check_labels(y, self.task, num_classes)

    def endless(
        self,
        batch_size: int,
        generator: torch.Generator,
        device: torch.device,
        shuffle: bool = True,
        num_classes: Optional[int] = None,
    ) -> Iterator[tuple[Any, torch.Tensor]]:
        """Endless training batches on ``device``: shuffled passes by index over ``(X, Y)``, or passes over the
        iterable (each host batch's labels checked against ``num_classes``)."""
        if self.pair is not None:
            x, y = self.pair
            n = len(y)
            while True:
                order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
                for i in range(0, n, batch_size):
                    idx = order[i : i + batch_size]
                    yield self._to(index_inputs(x, idx), device), y[idx.to(y.device)].to(device, non_blocking=True)
        else:
            while True:
                empty = True
                for xb, yb in self.iterate(device, num_classes):
                    empty = False
                    yield xb, yb
                if empty:
                    raise DataError(f"task {self.task}: the data iterable yielded no batches")

    def iterate(
        self, device: torch.device, num_classes: Optional[int] = None, batch_size: int = 0, limit: Optional[int] = None
    ) -> Iterator[tuple[Any, torch.Tensor]]:
        """One pass in order, on ``device``: slices of ``batch_size`` of ``(X, Y)``, or the iterable's batches;
        at most ``limit`` samples. Labels on the host are checked per batch against ``num_classes``."""
        seen = 0
        if self.pair is not None:
            x, y = self.pair
            n = len(y) if limit is None else min(len(y), int(limit))
            step = batch_size or n
            for i in range(0, n, step):
                yield self._to(slice_inputs(x, i, min(i + step, n)), device), y[i : min(i + step, n)].to(device)
            return
        for batch in self.batch_iterable():
            if limit is not None and seen >= limit:
                return
            xb, yb = split_batch(batch, self.task)
            if self.labels and yb.device.type == "cpu":
                check_labels(yb, self.task, num_classes)
            if batch_len(xb, f"task {self.task}'s batch inputs") != len(yb):
                raise DataError(
                    f"task {self.task}: a batch has {batch_len(xb)} inputs but {len(yb)} labels: give "
                    "one label per sample"
                )
            if limit is not None and seen + len(yb) > limit:
                xb, yb = slice_inputs(xb, 0, limit - seen), yb[: limit - seen]
            seen += len(yb)
            yield self._to(xb, device), yb.to(device, non_blocking=True)

    def subset(
        self, num_samples: Optional[int], generator: torch.Generator, batch_size: int, device: torch.device
    ) -> Iterator[tuple[Any, torch.Tensor]]:
        """A random subset of ``num_samples`` samples (all when ``None``) of ``(X, Y)`` in batches, or the first
        ``num_samples`` of an iterable (the Fisher of eq. 4)."""
        if self.pair is None:
            yield from self.iterate(device, limit=num_samples)
            return
        x, y = self.pair
        n = len(y) if num_samples is None else min(len(y), int(num_samples))
        idx = torch.randperm(len(y), generator=generator)[:n]
        for i in idx.split(batch_size):
            yield self._to(index_inputs(x, i), device), y[i.to(y.device)].to(device, non_blocking=True)


def task_source(data: Any, task: Any = "?", split: str = "train") -> TaskSource:
    """A :class:`TaskSource` from what a user hands in for one task (``split``: ``"train"`` or ``"test"`` picks
    ``x_train``/``y_train`` or ``x_test``/``y_test`` of a task object)."""
    if isinstance(data, TaskSource):
        return data
    own = getattr(data, "num_classes", None)
    if own is None:
        own = getattr(getattr(data, "dataset", None), "num_classes", None)
    own = int(own) if isinstance(own, int) and not isinstance(own, bool) else None
    xs, ys = f"x_{split}", f"y_{split}"
    if hasattr(data, xs) and hasattr(data, ys):
        return TaskSource(task, pair=(getattr(data, xs), getattr(data, ys)), num_classes=own)
    if _is_pair(data):
        return TaskSource(task, pair=(data[0], data[1]), num_classes=own)
    if isinstance(data, (torch.Tensor, Mapping)) or not hasattr(data, "__iter__"):
        raise DataError(
            f"task {task}: data must be (X, Y), a task object with {xs}/{ys}, or an iterable of (x, y) "
            f"batches (a DataLoader), got {type(data).__name__}"
        )
    return TaskSource(task, batches=data, num_classes=own)
