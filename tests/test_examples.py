"""The long-run example ``examples/permuted_mnist_100.py`` on a tiny protocol: stopping after N tasks and resuming
gives the uninterrupted run's numbers, and the report draws what the log holds."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from helpers import mnist_root, mnist_skip_reason

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "permuted_mnist_100.py"
TINY = ["--tasks", "4", "--iterations", "3", "--max-train", "300", "--max-test", "100", "--eval-every", "2"]


def _example():
    spec = importlib.util.spec_from_file_location("permuted_mnist_100", EXAMPLE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _numbers(out: Path) -> dict:
    """Everything of the log that the training decides (wall times and memory left out)."""
    log = json.loads((out / "log.json").read_text())
    rows = {m: [(r["task"], r["acc_just_learned"], r.get("acc_all")) for r in rs] for m, rs in log["tasks"].items()}
    return {"rows": rows, "final": log["final"], "configs": log["configs"]}


def test_bad_arguments_are_one_line_before_training(tmp_path, capsys):
    ex = _example()
    assert ex.main(["--out", str(tmp_path / "x"), "--methods", "hnet,nope"]) == 2
    assert ex.main(["--out", str(tmp_path / "x"), "--stop-after", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "nope" in err[0] and "valid methods" in err[1]
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(mnist_root() is None, reason=mnist_skip_reason())
def test_stop_after_then_resume_equals_the_uninterrupted_run(tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setenv("HYPERCL_DATA", str(mnist_root()))
    threads = torch.get_num_threads()
    ex = _example()
    monkeypatch.setattr(ex, "keep_freed_memory", lambda: False)  # the test process keeps glibc's defaults
    try:
        assert ex.main(["--out", str(tmp_path / "whole"), *TINY]) == 0
        assert ex.main(["--out", str(tmp_path / "split"), *TINY, "--stop-after", "1"]) == 0
        first = _numbers(tmp_path / "split")
        for rows in first["rows"].values():
            assert [r[0] for r in rows] == [0] and rows[0][2] is not None  # stopped after task 0, evaluated there
        with pytest.raises(SystemExit, match="--resume"):  # an existing log is never overwritten
            ex.main(["--out", str(tmp_path / "split"), *TINY])
        capsys.readouterr()
        recorded = ex.digits_environment()
        # a resume under another kernel path says so (here only the label differs, so the digits still match)
        monkeypatch.setattr(ex, "digits_environment", lambda: {**recorded, "cpu_capability": "OTHER"})
        assert ex.main(["--out", str(tmp_path / "split"), *TINY, "--resume"]) == 0
        warning = capsys.readouterr().err
        assert "warning" in warning and "OTHER" in warning and recorded["cpu_capability"] in warning
    finally:
        torch.set_num_threads(threads)
    whole, split = _numbers(tmp_path / "whole"), _numbers(tmp_path / "split")
    protocol = json.loads((tmp_path / "whole" / "log.json").read_text())["protocol"]
    assert {k: protocol[k] for k in recorded} == recorded  # threads, kernel path and torch build are recorded
    assert whole["configs"] == split["configs"]
    for m in ("hnet_k8_online", "lstm_net_grow"):
        assert [r[0] for r in whole["rows"][m]] == [0, 1, 2, 3]
        assert [r[2] is not None for r in whole["rows"][m]] == [False, True, False, True]  # --eval-every 2
        # the stop evaluated task 0 once more; otherwise the resumed run's numbers are the uninterrupted run's
        assert [r[:2] for r in split["rows"][m]] == [r[:2] for r in whole["rows"][m]]
        assert split["rows"][m][1:] == whole["rows"][m][1:]
        assert split["final"][m] == whole["final"][m] and split["final"][m]["after_task"] == 3
        assert len(whole["final"][m]["accuracy"]) == 4

    assert ex.main(["--out", str(tmp_path / "whole"), "--report", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "permuted_mnist_100.md").read_text().splitlines()
    assert len(table) == 4 and table[2].startswith("| hnet_k8_online | 4 | 3 |")
    assert (tmp_path / "report" / "permuted_mnist_100.png").read_bytes()[:4] == b"\x89PNG"
