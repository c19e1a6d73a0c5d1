"""End-to-end CLI runs on a tiny subset of the real MNIST files: JSON, PNG, table, resume, bench."""

import json
from pathlib import Path

import pytest
from helpers import mnist_root, mnist_skip_reason

from hypercl.cli import main

DATA = mnist_root()
needs_mnist = pytest.mark.skipif(
    DATA is None, reason=mnist_skip_reason()
)
def result_file(folder, method, quick=True):
    """The one results JSON of ``method`` in ``folder`` (its name carries the run's fingerprint)."""
    found = sorted(Path(folder).glob(f"split_mnist_{method}{'_quick' if quick else ''}_" + "?" * 16 + ".json"))
    assert len(found) == 1, found
    return found[0]


def checkpoint_file(folder, method, tag, seed):
    found = sorted((Path(folder) / "checkpoints").glob(f"split_mnist_{method}_{tag}_*_seed{seed}.pt"))
    assert len(found) == 1, found
    return found[0]


TINY = ["--quick", "--iterations", "3", "--max-train-per-task", "64", "--max-test-per-task", "40", "--no-progress"]


@needs_mnist
def test_run_writes_json_png_and_table(tmp_path, capsys):
    rc = main(["run", "--benchmark", "split_mnist", "--method", "lstm_net_grow,finetune", "--scenario", "all",
               "--seeds", "2", "--out", str(tmp_path), "--wide", *TINY])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "LSTM_NET_GROW" in printed and "Finetune" in printed and "99.85 ± 0.02" in printed  # paper column
    for method in ["lstm_net_grow", "finetune"]:
        data = json.loads(result_file(tmp_path, method).read_text())
        assert data["seeds"] == [0, 1] and len(data["runs"]) == 2
        for s in ["cl1", "cl2", "cl3"]:
            res = data["runs"][0]["scenarios"][s]
            assert len(res["matrix"]) == 5 and len(res["matrix"][-1]) == 5
            assert all(0.0 <= a <= 1.0 for a in res["matrix"][-1])
            assert data["summary"][s]["n_seeds"] == 2
        assert data["params"]["target"] > 0 and data["command"].startswith("hypercl run")
        png = result_file(tmp_path, method).with_suffix(".png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    grow = json.loads(result_file(tmp_path, "lstm_net_grow").read_text())
    assert grow["runs"][0]["scenarios"]["cl3"]["task_inference_matrix"][-1][0] is not None
    # hypercl table reads them back
    out_md = tmp_path / "table.md"
    assert main(["table", str(tmp_path / "*.json"), "--out", str(out_md)]) == 0
    assert "| LSTM_NET_GROW (reduced) |" in out_md.read_text()


@needs_mnist
def test_resume_from_checkpoints_gives_the_same_results(tmp_path):
    args = ["run", "--benchmark", "split_mnist", "--method", "hnet", "--scenario", "cl1", "--out", str(tmp_path), *TINY]
    assert main(args) == 0
    first = json.loads(result_file(tmp_path, "hnet").read_text())
    assert checkpoint_file(tmp_path, "hnet", "cl1", 0).exists()
    assert main(args + ["--resume"]) == 0  # every task already in the checkpoint: nothing retrained
    again = json.loads(result_file(tmp_path, "hnet").read_text())
    assert again["runs"][0]["scenarios"] == first["runs"][0]["scenarios"]


def test_bad_arguments_are_clear(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--benchmark", "split_mnist", "--method", "lstm_net,transformer"])
    assert "unknown method(s) ['transformer']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--benchmark", "split_mnist", "--method", "hnet", "--scenario", "cl9"])
    assert "unknown scenario(s) ['cl9']" in capsys.readouterr().err


def test_table_rejects_foreign_json(tmp_path, capsys):
    (tmp_path / "x.json").write_text('{"a": 1}')
    assert main(["table", str(tmp_path / "x.json")]) == 2
    assert "not a hypercl results file" in capsys.readouterr().err


def test_bench_quick_runs_and_writes_ratios(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {r["method"] for r in report["training"]} == {"hnet", "lstm_net_grow"}
    for r in report["training"]:
        assert r["hnet_step_ms"] > 0 and r["ratio_vs_plain"] > 0 and r["ratio_vs_parts"] > 0
    assert report["cl3_eval"][0]["tasks"] == 2 and report["task_scaling"]


@needs_mnist
def test_replay_method_through_the_cli(tmp_path, capsys):
    rc = main(["run", "--benchmark", "split_mnist", "--method", "lstm_net_grow+r", "--scenario", "all",
               "--out", str(tmp_path), "--wide", *TINY])
    assert rc == 0
    assert "99.83 ± 0.01" in capsys.readouterr().out  # the paper's Table 2 column is printed next to ours
    data = json.loads(result_file(tmp_path, "lstm_net_grow+r").read_text())
    assert len(data["runs"][0]["scenarios"]["cl3"]["matrix"]) == 5
    assert (result_file(tmp_path, "lstm_net_grow+r").parent / (result_file(tmp_path, "lstm_net_grow+r").stem + "_samples_seed0.png")).read_bytes()[:4] == b"\x89PNG"
    from hypercl.cli.args import methods as _methods
    from hypercl.replay import REPLAY_METHODS

    assert _methods("replay") == list(REPLAY_METHODS) and "dgr+distill" in REPLAY_METHODS
    assert main(["run", "--benchmark", "split_mnist", "--method", "dgr", "--seeds", "0"]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err


@needs_mnist
def test_parallel_seeds_equal_sequential_seeds_through_the_cli(tmp_path, capsys):
    args = ["run", "--benchmark", "split_mnist", "--method", "hnet,finetune", "--scenario", "cl1,cl3", "--seeds", "2",
            *TINY]
    assert main([*args, "--out", str(tmp_path / "seq")]) == 0
    assert main([*args, "--out", str(tmp_path / "par"), "--parallel-seeds"]) == 0
    assert "finetune is not a hypernetwork classifier" in capsys.readouterr().out
    seq = json.loads(result_file(tmp_path / "seq", "hnet").read_text())
    par = json.loads(result_file(tmp_path / "par", "hnet").read_text())
    assert par["parallel_seeds"] and not seq["parallel_seeds"]
    for rs, rp in zip(seq["runs"], par["runs"]):
        assert rs["seed"] == rp["seed"] and rp["parallel_seeds"] == 2
        for s in ("cl1", "cl3"):
            for a, b in zip(rs["scenarios"][s]["matrix"][-1], rp["scenarios"][s]["matrix"][-1]):
                assert a == pytest.approx(b, abs=0.026)  # one test image of 40 either way
    assert checkpoint_file(tmp_path / "par", "hnet", "cl1+cl3", 1).exists()
    # resume from the ensemble's per-seed checkpoints: nothing left to train, same numbers
    assert main([*args, "--out", str(tmp_path / "par"), "--parallel-seeds", "--resume"]) == 0
    again = json.loads(result_file(tmp_path / "par", "hnet").read_text())
    assert again["runs"][1]["scenarios"]["cl3"]["matrix"] == par["runs"][1]["scenarios"]["cl3"]["matrix"]
