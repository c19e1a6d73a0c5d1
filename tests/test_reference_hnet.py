"""scripts/reference_hnet.py parses the original code's summary file; fidelity.py's table shows its records as
reference rows (n, mean ± sample std (SE)) beside the paper's number."""

from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path
from typing import Any


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


reference_hnet = _load("reference_hnet")
fidelity = _load("fidelity")

# the layout mnist/train_splitMNIST.py:66-116 writes (lists via utils/misc.py list_to_str of 0-d tensors)
SUMMARY = """acc_after_list tensor(99.9527) tensor(72.1352) tensor(61.5795) tensor(75.2769) tensor(28.6939)
acc_during_list tensor(99.9527) tensor(80.2645) tensor(70.1708) tensor(78.9023) tensor(28.6939)
acc_after_mean 67.527640
acc_during_mean 71.596840
overall_task_infer_accuracy_list tensor(100.) tensor(72.6739) tensor(61.6862) tensor(75.3776) tensor(28.9965)
acc_task_infer_mean 67.746840
num_train_iter 2000
num_weights_class_net 478410.000000
"""


def test_parse_summary_reads_the_reference_layout() -> None:
    res = reference_hnet.parse_summary(SUMMARY)
    assert res["final_average"] == 67.52764 and res["during_average"] == 71.59684
    assert res["final"] == [99.9527, 72.1352, 61.5795, 75.2769, 28.6939]
    assert res["during"][1] == 80.2645 and res["task_inference_per_task"][0] == 100.0
    assert res["task_inference"] == 67.74684
    assert abs(sum(res["final"]) / 5 - res["final_average"]) < 1e-4  # the lists and the mean agree


def test_parse_summary_refuses_an_unfinished_run() -> None:
    try:
        reference_hnet.parse_summary("acc_after_list tensor(99.9)\nnum_train_iter 2000\n")
    except ValueError as e:
        assert "did not finish" in str(e)
    else:
        raise AssertionError("an unfinished summary was accepted")


def test_seeds_parse() -> None:
    assert reference_hnet.parse_seeds("42-44,50") == [42, 43, 44, 50]


def test_table_shows_reference_rows(tmp_path: Path) -> None:
    ref = tmp_path / "runs" / "reference"
    ref.mkdir(parents=True)
    finals = {42: 67.44, 43: 63.94, 44: 67.47}
    for seed, final in finals.items():
        rec = {"variant": "reference_hnet_cl3", "kind": "reference", "seed": seed, "scenario": "cl3",
               "environment": {"threads": 1, "torch": "2.13.0+cpu"},
               "result": {"final_average": final, "during_average": final + 8, "task_inference": final + 0.1}}
        (ref / f"reference_hnet_cl3-seed{seed}.json").write_text(json.dumps(rec))
    out = fidelity.table(tmp_path)
    row = next(line for line in out.splitlines() if line.startswith("| reference_hnet_cl3 "))
    vals = list(finals.values())
    sd = statistics.stdev(vals)
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[:3] == ["reference_hnet_cl3", "3", "42,43,44"]
    assert cells[3] == f"{statistics.fmean(vals):.2f} ± {sd:.2f} ({sd / 3 ** 0.5:.2f})"
    assert cells[6] == "69.48" and cells[7] == "1" and cells[8] == "2.13.0+cpu"
    assert "reference" not in fidelity.table(tmp_path / "none")  # no records, no reference table
