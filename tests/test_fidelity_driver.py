"""scripts/fidelity.py: every variant its own run identity, per-seed records grouped by identity, SE computed right."""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
from pathlib import Path

import pytest
from helpers import mnist_skip_reason

_SPEC = importlib.util.spec_from_file_location("fidelity", Path(__file__).parents[1] / "scripts" / "fidelity.py")
fidelity = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fidelity)


def test_variants_have_distinct_identities_and_the_faithful_settings() -> None:
    ids = {v: fidelity.identity(fidelity.variant_config(v)) for v in fidelity.VARIANTS}
    assert len(set(ids.values())) == len(ids)
    assert fidelity.variant_config("hnet").hypernetwork.init == "von_oswald"
    assert fidelity.variant_config("lstm_net_grow_fresh").strategy.kwargs["new_task_weights"] == "fresh"
    assert fidelity.variant_config("hnet").validation is None  # the faithful rows train on all training data
    assert fidelity.variant_config("hnet+cal").validation.size_per_task == fidelity.VAL_SIZE


def _record(variant: str, seed: int, cl3: float) -> dict:
    cfg = fidelity.variant_config(variant)
    res = {s: {"final_average": cl3, "during_average": cl3, "task_inference": cl3, "final": [], "during": []}
           for s in fidelity.SCENARIOS}
    return {"variant": variant, "identity": fidelity.identity(cfg), "seed": seed, "config": cfg.to_json(),
            "environment": {"threads": 1}, "run": {"test": {"raw": res}}}


def test_table_reports_n_mean_std_and_standard_error(tmp_path: Path) -> None:
    vals = [0.60, 0.66, 0.69]
    for seed, v in enumerate(vals):
        rec = _record("hnet", seed, v)
        (tmp_path / "runs").mkdir(exist_ok=True)
        fidelity.result_path(tmp_path, "hnet", seed).write_text(json.dumps(rec))
    text = fidelity.table(tmp_path)
    sd = statistics.stdev(vals)
    cell = f"{100 * statistics.fmean(vals):.2f} ± {100 * sd:.2f} ({100 * sd / math.sqrt(3):.2f})"
    row = next(line for line in text.splitlines() if line.startswith("| hnet |"))
    assert row.startswith("| hnet | 3 | 0,1,2 |") and cell in row


def test_verdict_marks_a_paper_number_within_two_standard_errors(tmp_path: Path) -> None:
    """HNET's paper CL3 is 69.48: seeds at 0.690 / 0.700 / 0.710 (mean 70.00, SE 0.58) reproduce it (0.9 SE);
    seeds at 0.600 / 0.610 / 0.620 (mean 61.00, SE 0.58) do not (14.7 SE)."""
    (tmp_path / "runs").mkdir()
    for seed, v in enumerate([0.69, 0.70, 0.71]):
        fidelity.result_path(tmp_path, "hnet", seed).write_text(json.dumps(_record("hnet", seed, v)))
    row = next(line for line in fidelity.verdict_table(tmp_path).splitlines() if line.startswith("| hnet | 3 | CL3"))
    assert "| 69.48 | 70.00 (0.58) | yes (+0.52, 0.9 SE) |" in row
    for seed, v in enumerate([0.60, 0.61, 0.62]):
        fidelity.result_path(tmp_path, "hnet", seed).write_text(json.dumps(_record("hnet", seed, v)))
    row = next(line for line in fidelity.verdict_table(tmp_path).splitlines() if line.startswith("| hnet | 3 | CL3"))
    assert "| 61.00 (0.58) | no (-8.48, 14.7 SE) |" in row


def test_ordering_verdict_needs_every_step_beyond_two_standard_errors() -> None:
    def cell(mean: float, se: float, n: int = 3) -> dict:
        return {"n": n, "mean": mean, "std": se * math.sqrt(n), "se": se}

    up = [("a", cell(0.60, 0.01)), ("b", cell(0.70, 0.01)), ("c", cell(0.80, 0.01))]
    assert fidelity.ordering_verdict(up).startswith("confirmed: b − a +10.00 (SE 1.41)")
    down = [("a", cell(0.60, 0.01)), ("b", cell(0.50, 0.01))]
    assert fidelity.ordering_verdict(down).startswith("refuted")
    close = [("a", cell(0.60, 0.02)), ("b", cell(0.62, 0.02))]
    assert fidelity.ordering_verdict(close).startswith("not settled")
    assert fidelity.ordering_verdict([("a", cell(0.6, 0.0, n=1)), ("b", cell(0.7, 0.01))]) == "n too small"


def test_table_is_written_between_the_markers_and_nothing_else_changes(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    fidelity.result_path(tmp_path, "hnet", 0).write_text(json.dumps(_record("hnet", 0, 0.5)))
    doc = tmp_path / "results.md"
    doc.write_text("before\n<!-- fidelity-table -->\nold rows\n<!-- /fidelity-table -->\nafter\n")
    assert fidelity.main(["table", "--out", str(tmp_path), "--write", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("before\n<!-- fidelity-table -->\n") and text.endswith("<!-- /fidelity-table -->\nafter\n")
    assert "old rows" not in text and fidelity.table(tmp_path).strip() in text
    doc.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no '<!-- fidelity-table -->'"):
        fidelity.main(["table", "--out", str(tmp_path), "--write", str(doc)])
    assert doc.read_text() == "no markers\n"


def test_one_seed_prints_no_spread_and_duplicates_are_refused(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    fidelity.result_path(tmp_path, "lstm_net", 0).write_text(json.dumps(_record("lstm_net", 0, 0.5)))
    row = next(line for line in fidelity.table(tmp_path).splitlines() if line.startswith("| lstm_net |"))
    assert "±" not in row and "50.00" in row
    (tmp_path / "runs" / "copy.json").write_text(json.dumps(_record("lstm_net", 0, 0.7)))
    with pytest.raises(SystemExit, match="duplicate seeds"):
        fidelity.table(tmp_path)


def _mnist_available() -> bool:
    from hypercl.data.paths import resolve_data_root

    return (resolve_data_root() / "MNIST" / "raw").is_dir()


def test_compare_names_every_differing_accuracy_including_per_task_lists() -> None:
    rec = _record("hnet", 0, 0.5)
    rec["run"]["test"]["raw"]["cl3"]["final"] = [0.9, 0.8]
    other = json.loads(json.dumps(rec))
    assert fidelity.compare(rec, other) == []
    other["run"]["test"]["raw"]["cl3"]["final"][1] = 0.81
    other["run"]["test"]["raw"]["cl2"]["during_average"] = 0.51
    diffs = fidelity.compare(rec, other)
    assert len(diffs) == 2 and any("cl3.final[1]" in d for d in diffs) and any("cl2.during_average" in d for d in diffs)


def test_environment_names_code_version_threads_and_kernel_path() -> None:
    env = fidelity.environment()
    for key in ("commit", "code_clean", "torch", "threads", "cpu_capability", "cpu"):
        assert key in env
    assert env["threads"] == __import__("torch").get_num_threads()


@pytest.mark.skipif(not _mnist_available(), reason=mnist_skip_reason())
def test_verify_passes_on_a_fresh_record_and_detects_a_one_digit_edit(tmp_path: Path, capsys) -> None:
    import torch

    import dataclasses

    cfg = fidelity.variant_config("hnet")
    cfg = cfg.replace(quick=True, training=dataclasses.replace(cfg.training, iterations=5),
                      benchmark=dataclasses.replace(cfg.benchmark, max_train_per_task=256, max_test_per_task=64))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rec = fidelity.run_job(tmp_path, "hnet", 0, None, cfg=cfg, ckpt_root=tmp_path / "ckpt")
    finally:
        torch.set_num_threads(threads)
    assert rec["environment"]["threads"] == 1
    path = tmp_path / "runs" / "hnet-rec-seed0.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))
    try:
        assert fidelity.verify(tmp_path, "hnet", 0, None, record_path=path) == 0
        # one digit of one accuracy changed in the file's text: verify must fail and name it
        text = path.read_text()
        key = '"final_average": 0.'
        i = text.index(key, text.index('"cl2"')) + len(key)
        digit = text[i]
        path.write_text(text[:i] + str((int(digit) + 1) % 10) + text[i + 1:])
        capsys.readouterr()
        assert fidelity.verify(tmp_path, "hnet", 0, None, record_path=path) == 1
        assert "cl2.final_average" in capsys.readouterr().out
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif(not _mnist_available(), reason="the MNIST files are not available")
def test_infer_records_each_criterion_from_a_finished_checkpoint(tmp_path: Path) -> None:
    from hypercl.cli import main

    tiny = ["--quick", "--iterations", "3", "--max-train-per-task", "64", "--max-test-per-task", "40", "--no-progress"]
    assert main(["run", "--benchmark", "split_mnist", "--method", "hnet", "--scenario", "cl3", "--out",
                 str(tmp_path / "run"), *tiny]) == 0
    (ckpt,) = (tmp_path / "run" / "checkpoints").glob("*.pt")
    (results,) = (tmp_path / "run").glob("*.json")
    trained = json.loads(results.read_text())["runs"][0]["scenarios"]["cl3"]
    out = tmp_path / "fid"
    assert fidelity.infer(out, "hnet", [ckpt], ["entropy", "energy"], "test", None) == 0
    recs = {json.loads(p.read_text())["criterion"]: json.loads(p.read_text()) for p in (out / "runs").glob("*.json")}
    assert sorted(recs) == ["energy", "entropy"]
    assert recs["entropy"]["run"]["cl3_final_average"] == trained["final_average"]  # the run's own evaluation
    for rec in recs.values():
        counts = rec["run"]["confusion"]["counts"]
        assert rec["run"]["task_inference_per_task"] == [row[i] / sum(row) for i, row in enumerate(counts)]
        assert rec["run"]["cost_ratio_to_entropy"] > 0 and rec["environment"]["torch"]
    assert fidelity.infer(out, "hnet", [ckpt], ["entropy", "energy"], "test", None) == 0  # nothing to redo
    assert len(list((out / "runs").glob("*.json"))) == 2
    table = fidelity.infer_table(out)
    assert "| hnet | test | energy | 1 | 0 |" in table
    assert fidelity.infer_table(out, variants={"hnet"}) == table and fidelity.infer_table(out, variants={"x"}) == ""
    assert fidelity.table(out).count("| hnet |") == 0  # the fidelity table ignores task-inference records


def test_a_record_without_its_environment_is_marked_in_the_table(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    rec = _record("lstm_net", 0, 0.5)
    del rec["environment"]
    fidelity.result_path(tmp_path, "lstm_net", 0).write_text(json.dumps(rec))
    fidelity.result_path(tmp_path, "lstm_net", 1).write_text(json.dumps(_record("lstm_net", 1, 0.5)))
    text = fidelity.table(tmp_path)
    assert "| lstm_net | 2 | 0*,1 |" in text and "without its environment" in text
