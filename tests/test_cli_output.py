"""`hypercl run`'s help, table and figure as a user first sees them (no data needed)."""

import argparse

import pytest

from hypercl.cli.args import build_parser
from hypercl.experiments import report, summarize


def _run_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


def test_every_run_option_has_help_and_states_its_default():
    missing = []
    for action in _run_parser()._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        text = action.help or ""
        if not text or not ("default" in text or action.required):
            missing.append("/".join(action.option_strings))
    assert not missing, f"options without help or a stated default: {missing}"
    args = _run_parser().parse_args(["--benchmark", "split_mnist", "--method", "hnet", "--threads", "1", "--wide"])
    assert args.threads == 1 and args.wide is True


def _result(method, finals, ratio=0.97, quick=False):
    runs = []
    for i, f in enumerate(finals):
        sc = {s: {"tasks": [0, 1], "rows": [0, 1], "matrix": [[0.99, None], [f, f]],
                  "task_inference_matrix": [[1.0, None], [0.9, 0.9]], "final_average": f, "during": [0.99, f],
                  "during_average": (0.99 + f) / 2, "backward_transfer": 0.0} for s in ("cl1", "cl2", "cl3")}
        runs.append({"seed": i, "scenarios": sc,
                     "params": {"target": 478410, "model": int(478410 * ratio), "compression_ratio": ratio}})
    return {"benchmark": "split_mnist", "method": method, "scenarios": ["cl1", "cl2", "cl3"], "reduced": quick,
            "fingerprint": method[:1] * 16, "summary": summarize(runs, ["cl1", "cl2", "cl3"]), "runs": runs,
            "params": runs[0]["params"], "wall_time_s": 1234.0, "config": {"quick": quick}}


def test_default_table_is_compact_and_wide_on_request():
    results = [_result(m, [0.7, 0.72, 0.74], ratio=4.58 if m == "lstm_net_grow" else 0.97, quick=True)
               for m in ("finetune", "ewc", "online_ewc", "si", "hnet", "hnet_iwr", "lstm_net", "lstm_net_iwr",
                         "lstm_net_grow")]
    compact = report.format_table(results, scenarios=["cl1", "cl2", "cl3"])
    assert max(len(line) for line in compact.splitlines()) <= 100
    assert "LSTM_NET_GROW (reduced)" in compact and "72.00±1.15" in compact and "REDUCED RUN" in compact
    wide = report.format_table(results, scenarios=["cl1", "cl2", "cl3"], wide=True)
    assert max(len(line) for line in wide.splitlines()) > 150 and "72.00 sd 2.00 se 1.15 (n=3)" in wide
    assert "99.85 ± 0.02" in wide  # the paper's column
    notes = report.size_notes(results)
    assert notes == ["note: LSTM_NET_GROW's model is 4.58x its target network (2,191,117 vs 478,410 parameters)"]


def test_heatmap_title_says_when_the_run_was_reduced(monkeypatch):
    pytest.importorskip("matplotlib")
    titles = []

    def keep(fig, path, dpi=110):
        titles.append(fig._suptitle.get_text())

    monkeypatch.setattr(report, "atomic_save_figure", keep)
    report.plot_matrices(_result("hnet", [0.7], quick=True), "unused.png")
    report.plot_matrices(_result("hnet", [0.7], quick=False), "unused.png")
    assert "REDUCED RUN" in titles[0] and "REDUCED" not in titles[1]
