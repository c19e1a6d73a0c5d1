"""Results files: written with a digest of their content, read back only whole and well-formed.

:func:`read_results` is the one reader (``hypercl table``, the merge of ``hypercl run``, the check before training):
it returns the file's content with the summary recomputed from its runs, or raises :class:`ResultsFileError` with one
line naming the file — never a traceback from deep inside, never a table built from a damaged file. A file carries
``"digest"``: the SHA-256 of its canonical JSON without that entry (:func:`results_digest`), so a flipped byte in a
number is found as surely as a broken bracket. Files without a digest (older hypercl) are checked by shape and range
only.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Union

from ..scenarios import SCENARIOS
from .identity import PROTOCOL_VERSION
from .summary import summarize

__all__ = ["ResultsFileError", "read_results", "results_digest", "results_text"]


class ResultsFileError(ValueError):
    """A results JSON that cannot be used; the message is one line naming the file and what to do."""


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def results_digest(content: dict) -> str:
    """SHA-256 of the canonical JSON of ``content`` without its ``digest`` entry (as read back from the file)."""
    plain = {k: v for k, v in content.items() if k != "digest"}
    return hashlib.sha256(_canonical(plain).encode("utf-8")).hexdigest()


def results_text(result: dict) -> str:
    """The file text of ``result``: indented JSON with its :func:`results_digest` (computed on the content as it will
    be read back, so keys that JSON turns into strings and tuples that become lists give the same digest)."""
    plain = json.loads(json.dumps({k: v for k, v in result.items() if k != "digest"}))
    return json.dumps({**plain, "digest": results_digest(plain)}, indent=1, sort_keys=False)


class _Bad(Exception):
    pass


def _num(v: Any, where: str, low: float = -math.inf, high: float = math.inf, none: bool = True) -> None:
    if v is None and none:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Bad(f"{where} is {type(v).__name__} {_short(v)}, expected a number")
    if not (math.isfinite(v) and low <= v <= high):
        raise _Bad(f"{where} is {v}, expected a finite number in [{low:g}, {high:g}]")


def _int(v: Any, where: str, low: int = 0) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise _Bad(f"{where} is {type(v).__name__} {_short(v)}, expected an integer >= {low}")


def _typed(v: Any, kind: type, where: str) -> Any:
    if not isinstance(v, kind):
        raise _Bad(f"{where} is {type(v).__name__} {_short(v)}, expected {kind.__name__}")
    return v


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_scenario_result(res: Any, where: str) -> None:
    _typed(res, dict, where)
    for key in ("tasks", "matrix", "task_inference_matrix", "during"):
        if key not in res:
            raise _Bad(f"{where} has no {key!r}")
    for j, t in enumerate(_typed(res["tasks"], list, f"{where}.tasks")):
        _int(t, f"{where}.tasks[{j}]")
    for key in ("matrix", "task_inference_matrix"):
        for i, row in enumerate(_typed(res[key], list, f"{where}.{key}")):
            for j, v in enumerate(_typed(row, list, f"{where}.{key}[{i}]")):
                _num(v, f"{where}.{key}[{i}][{j}]", 0.0, 1.0)
    for j, v in enumerate(_typed(res["during"], list, f"{where}.during")):
        _num(v, f"{where}.during[{j}]", 0.0, 1.0)
    for key, low in (("final_average", 0.0), ("during_average", 0.0), ("backward_transfer", -1.0)):
        if key not in res:
            raise _Bad(f"{where} has no {key!r}")
        _num(res[key], f"{where}.{key}", low, 1.0)
    _check_consistent(res, where)


def _mean(values: list) -> Any:
    got = [v for v in values if v is not None]
    return sum(got) / len(got) if got else None


def _close(a: Any, b: Any) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) <= 1e-9)


def _check_consistent(res: dict, where: str) -> None:
    """The averages are what the matrix says (as the learner computed them), and CL2/CL3 task inference is given
    exactly where accuracies are: an edit of one of them is found even in a file without a digest."""
    matrix, ti = res["matrix"], res["task_inference_matrix"]
    if matrix and not _close(res["final_average"], _mean(matrix[-1])):
        raise _Bad(f"{where}.final_average {res['final_average']} is not the mean of the last matrix row")
    if not _close(res["during_average"], _mean(res["during"])):
        raise _Bad(f"{where}.during_average {res['during_average']} is not the mean of 'during'")
    if len(ti) != len(matrix):
        raise _Bad(f"{where}: task_inference_matrix has {len(ti)} rows, matrix {len(matrix)}")
    for i, (a, b) in enumerate(zip(matrix, ti)):
        given = [j for j, v in enumerate(b) if v is not None]
        if given and given != [j for j, v in enumerate(a) if v is not None]:
            raise _Bad(f"{where}: task_inference_matrix[{i}] and matrix[{i}] hold values in different places")


def _check(data: Any) -> None:
    _typed(data, dict, "the top level")
    for key in ("benchmark", "method"):
        if key not in data:
            raise _Bad(f"no {key!r} (not a hypercl results file)")
        _typed(data[key], str, key)
    if "summary" not in data or "runs" not in data:
        raise _Bad("no 'summary'/'runs' (not a hypercl results file)")
    protocol = data.get("protocol")
    if protocol is not None:
        _int(protocol, "protocol", 1)
        if protocol > PROTOCOL_VERSION:
            raise _Bad(
                f"protocol {protocol} is newer than this hypercl's {PROTOCOL_VERSION}: read it with the "
                "hypercl that wrote it"
            )
    if data.get("fingerprint") is not None:
        _typed(data["fingerprint"], str, "fingerprint")
    if "reduced" in data:
        _typed(data["reduced"], bool, "reduced")
    config = data.get("config", {})
    _typed(config, dict, "config")
    if "quick" in config:
        _typed(config["quick"], bool, "config.quick")
    params = _typed(data.get("params", {}), dict, "params")
    if "model" in params:
        _int(params["model"], "params.model")
    if "compression_ratio" in params:
        _num(params["compression_ratio"], "params.compression_ratio", 0.0, none=False)
    if "wall_time_s" in data:
        _num(data["wall_time_s"], "wall_time_s", 0.0, none=False)
    scenarios = _typed(data.get("scenarios"), list, "scenarios")
    if not scenarios:
        raise _Bad("'scenarios' is empty")
    for s in scenarios:
        if s not in SCENARIOS:
            raise _Bad(f"unknown scenario {_short(s)} in 'scenarios'; known: {list(SCENARIOS)}")
    runs = _typed(data["runs"], list, "runs")
    if not runs:
        raise _Bad("it holds no runs (its summary would describe nothing)")
    seen = set()
    for i, run in enumerate(runs):
        _typed(run, dict, f"runs[{i}]")
        if "seed" not in run:
            raise _Bad(f"runs[{i}] has no 'seed'")
        _int(run["seed"], f"runs[{i}].seed")
        if run["seed"] in seen:
            raise _Bad(f"seed {run['seed']} appears twice in 'runs'")
        seen.add(run["seed"])
        for s, res in _typed(run.get("scenarios"), dict, f"runs[{i}].scenarios").items():
            if s not in SCENARIOS:
                raise _Bad(f"runs[{i}].scenarios has an unknown scenario {_short(s)}")
            _check_scenario_result(res, f"runs[{i}].scenarios.{s}")
    missing = [s for s in scenarios if not any(s in r["scenarios"] for r in runs)]
    if missing:
        raise _Bad(f"no run holds scenario(s) {missing} listed in 'scenarios'")


def read_results(path: Union[str, Path]) -> dict:
    """The content of a results JSON, verified (digest, shape, ranges) and with ``summary`` recomputed from its runs;
    :class:`ResultsFileError` (one line naming the file) for anything unreadable, damaged or not a results file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ResultsFileError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ResultsFileError(
            f"{path}: not a results JSON (byte {e.start} is not UTF-8 text); move it away or restore a good copy"
        ) from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        msg = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
        where = f" at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
        raise ResultsFileError(
            f"{path}: not valid JSON ({msg}{where}); it is damaged (cut short?): move it away or restore a good copy"
        ) from None
    if isinstance(data, dict) and "digest" in data and data["digest"] != results_digest(data):
        raise ResultsFileError(
            f"{path} is corrupt or was edited: its content does not match the digest stored when "
            "it was written; restore a good copy, or move it away and rerun with --resume"
        )
    try:
        _check(data)
    except _Bad as e:
        raise ResultsFileError(f"{path}: not a usable hypercl results file: {e}") from None
    data["summary"] = summarize(data["runs"], data["scenarios"])
    return data
