"""How the target network's TRAINING forward runs: eagerly, through ``torch.compile``, and/or under autocast.

:class:`TargetForward` is a mixin of :class:`~hypercl.ContinualLearner`; its options are the learner's ``compile``,
``compile_options`` and ``autocast_dtype`` arguments (``hypercl run --compile / --bf16``). Evaluation and the Fisher
of eq. 4 always run the target eagerly in float32.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable, Mapping, Optional, Union

import torch

from .learner_fields import LearnerFields

__all__ = ["TargetForward", "AUTOCAST_DTYPES"]

#: ``autocast_dtype`` values: a torch dtype or one of these names (checkpoints store the canonical name)
AUTOCAST_DTYPES: dict[str, torch.dtype] = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


def _autocast_dtype(value: Union[str, torch.dtype, None]) -> Optional[torch.dtype]:
    if value is None:
        return None
    if isinstance(value, str):
        key = value.lower().replace("torch.", "")
        if key not in AUTOCAST_DTYPES:
            raise ValueError(f"unknown autocast dtype {value!r}; valid: {sorted(AUTOCAST_DTYPES)} or None")
        return AUTOCAST_DTYPES[key]
    if value in (torch.bfloat16, torch.float16):
        return value
    raise ValueError(f"autocast_dtype must be torch.bfloat16, torch.float16 or None, got {value!r}")


def dtype_name(dtype: Optional[torch.dtype]) -> Optional[str]:
    """``"bfloat16"`` for ``torch.bfloat16`` (JSON- and checkpoint-friendly); ``None`` stays ``None``."""
    return None if dtype is None else str(dtype).replace("torch.", "")


def plain(obj: Any) -> Any:
    """The plain-data part of ``compile_options`` (what a ``weights_only`` checkpoint can hold)."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items() if plain(v) is not _DROP}
    if obj is None or isinstance(obj, (str, bool, int, float)):
        return obj
    return _DROP


_DROP = object()


def _to_float32(out: Any) -> Any:
    if isinstance(out, torch.Tensor) and out.dtype in (torch.bfloat16, torch.float16):
        return out.float()
    if isinstance(out, tuple):
        return tuple(_to_float32(o) for o in out)
    return out


class TargetForward(LearnerFields):
    """Mixin: the target on a batch with generated weights, plain, compiled and/or under autocast.

    Needs ``self.target``, ``self.device``, ``self.strategy``, ``self.compile``, ``self.compile_options``,
    ``self.compile_error`` and ``self._compiled`` (set by the learner's constructor).
    """

    @property
    def autocast_dtype(self) -> Optional[torch.dtype]:
        """The dtype of the target's training forward under ``torch.autocast`` (``None``: float32)."""
        return self._autocast_dtype

    @autocast_dtype.setter
    def autocast_dtype(self, value: Union[str, torch.dtype, None]) -> None:
        self._autocast_dtype = _autocast_dtype(value)

    def _target_forward(
        self, params: Mapping[str, torch.Tensor], x: Any, buffers: Optional[Mapping[str, torch.Tensor]] = None
    ) -> Any:
        """The target on ``x`` with the generated ``params``: plain, compiled (``compile``) and/or under autocast
        (``autocast_dtype``, output cast back to float32)."""
        if not self.compile and self.autocast_dtype is None:
            return self.target(params, x, buffers=buffers)
        if self.autocast_dtype is None:
            return self._call_target(params, x, buffers)
        with torch.autocast(self.device.type, dtype=self.autocast_dtype):
            out = self._call_target(params, x, buffers)
        return _to_float32(out)

    def _call_target(
        self, params: Mapping[str, torch.Tensor], x: Any, buffers: Optional[Mapping[str, torch.Tensor]]
    ) -> Any:
        fn = self._compiled_target() if self.compile and self.compile_error is None else None
        if fn is not None:
            self.target.check_params(params, batch_dims=0)  # a clear error before tracing
            try:
                return fn(dict(params), x, dict(buffers) if buffers is not None else {})
            except torch.OutOfMemoryError:
                raise
            except Exception as e:  # no compiler, an unsupported op, ...: eager from now on
                self._compile_failed(e)
        return self.target(params, x, buffers=buffers)

    def _compile_config(self) -> Any:
        """The data-parallel lookahead backpropagates the task loss twice (``autograd.grad(..., retain_graph=True)``,
        then the DDP backward): a compiled target must then not donate the forward's saved buffers to the backward
        (AOT autograd reads the flag when it compiles AND when the backward runs: set around the whole step)."""
        if self.compile and self.strategy.uses_lookahead:
            config = getattr(getattr(torch, "_functorch", None), "config", None)
            if config is not None and hasattr(config, "donated_buffer"):
                return config.patch(donated_buffer=False)
        return contextlib.nullcontext()

    def _compiled_target(self) -> Optional[Callable]:
        key = repr(sorted(self.compile_options.items()))
        if self._compiled is not None and self._compiled[0] == key:
            return self._compiled[1]
        target = self.target

        def target_call(params: dict, x: Any, buffers: dict) -> Any:
            return target.apply({**params, **buffers}, x)  # positional / keyword inputs, the logits picked

        try:
            fn = torch.compile(target_call, **self.compile_options)
        except Exception as e:  # torch.compile unavailable here (platform, Python version) or bad options
            self._compile_failed(e)
            return None
        self._compiled = (key, fn)
        return fn

    def _compile_failed(self, error: BaseException) -> None:
        self.compile_error = f"{type(error).__name__}: {error}".strip()
        first_line = self.compile_error.splitlines()[0][:500]
        warnings.warn(
            f"torch.compile of the target network failed, running it eagerly: {first_line}",
            RuntimeWarning,
            stacklevel=3,
        )
