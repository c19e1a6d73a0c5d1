#!/usr/bin/env python
"""The original HNET+ENT code (von Oswald et al., chrhenning/hypercl) as a reference row beside ours.

    python scripts/reference_hnet.py setup                  # clone at REF_COMMIT, apply the patch, own venv, MNIST
    nohup nice -n 19 python scripts/reference_hnet.py run --scenarios 3,2 --seeds 42-46 > external/reference.log &
    python scripts/fidelity.py table                        # its reference table: these rows beside the paper's

``setup`` reproduces the reference from a clean clone: ``git clone REF_URL`` (``--source`` takes a local mirror
instead), ``git checkout REF_COMMIT``, ``git apply scripts/reference_hnet.patch`` (the only edits, all for today's
numpy and matplotlib; they change no computation):

- ``data/dataset.py``:348, 371, 399: ``np.fromiter(..., np.int, ...)`` -> ``int`` (``np.int`` is gone in numpy >= 1.24)
- ``data/special/split_mnist.py``:187: ``dtype=np.bool`` -> ``dtype=bool`` (same)
- ``utils/misc.py``:132-133: matplotlib's ``text.latex.preamble`` list -> one string (matplotlib >= 3.3 wants a str)

then a venv of its own (``external/venv``: torch 2.13.0 CPU build and the pinned packages below) and the MNIST files of
``$HYPERCL_DATA/MNIST/raw`` linked where the reference looks for them (``datasets/MNIST``: its split MNIST default
``config.data_dir = '../datasets'``, ``mnist/train_args_default.py``:77, relative to ``mnist/``, and it writes its
pickle cache there). Everything lives in the git-ignored ``external/``; none of its code enters the package.

``run`` trains ``mnist/train_splitMNIST.py --infer_task_id --infer_with_entropy --cl_scenario S --random_seed K``
(its own defaults otherwise: 2000 iterations per task, beta 0.01, lookahead; ``mnist/train_args_default.py``:60-108)
with ONE thread, one seed after another, and writes each finished run as a record of its own,
``docs/fidelity/runs/reference/reference_hnet_cl<S>-seed<K>.json``: the command, the reference commit, the patch's
sha256, the environment (torch build, threads, CPU kernel path, CPU) and the final / during accuracies parsed from the
reference's own summary file (``performance_overview.txt``, written by ``_save_performance_summary``,
``mnist/train_splitMNIST.py``:66-116). A seed whose record exists is skipped, so ``run`` resumes.

Cost, estimated from the first task's rate here (about 27 steps per CPU-second, one thread): 10 000 steps are ~6
CPU-minutes before the regularised tasks' extra cost (lookahead) and the entropy test one sample at a time
(``mnist/train_splitMNIST.py``:180-187), so a run is of the order of 10-20 CPU-minutes and five seeds of CL2 and CL3
a few CPU-hours; ``--scenarios``/``--seeds`` split the work over processes (one record per run, no shared state).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REF_URL = "https://github.com/chrhenning/hypercl"
REF_COMMIT = "e32567889f772f8de783a437ff0beb2d426bc7b6"
PATCH = ROOT / "scripts" / "reference_hnet.patch"
EXTERNAL = ROOT / "external"
CLONE = EXTERNAL / "chrhenning-hypercl"
VENV = EXTERNAL / "venv"
RECORDS = ROOT / "docs" / "fidelity" / "runs" / "reference"
#: the reference venv's packages (torch 2.13.0's CPU build; the rest as resolved on the machine of the records)
PACKAGES = ("torch==2.13.0", "numpy==2.4.6", "matplotlib==3.11.2", "tensorboardX==2.6.5", "scikit-learn==1.9.1",
            "scipy==1.17.1")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sh(*cmd: str, cwd: Path | None = None) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def setup(source: str, data: Path) -> None:
    """Clone, check out, patch, venv, data links (each step skipped when already done)."""
    raw = data / "MNIST" / "raw"
    if not all((raw / f).exists() for f in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")):
        raise SystemExit(f"setup: no MNIST files in {raw}: set HYPERCL_DATA (or --data) to the folder holding MNIST/raw")
    EXTERNAL.mkdir(exist_ok=True)
    if not CLONE.exists():
        sh("git", "clone", "-q", source, str(CLONE))
    sh("git", "checkout", "-q", REF_COMMIT, cwd=CLONE)
    if sh("git", "diff", "--stat", cwd=CLONE) == "":
        sh("git", "apply", str(PATCH), cwd=CLONE)
    if sh("git", "diff", cwd=CLONE) + "\n" != PATCH.read_text():
        raise SystemExit(f"setup: {CLONE} differs from {REF_COMMIT} + {PATCH.name}: remove the folder and run again")
    if not (VENV / "bin" / "python").exists():
        sh(sys.executable, "-m", "venv", str(VENV))
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", *PACKAGES], check=True)
    links = CLONE / "datasets" / "MNIST"
    links.mkdir(parents=True, exist_ok=True)
    for f in raw.glob("*-ubyte.gz"):
        if not (links / f.name).exists():
            (links / f.name).symlink_to(f.resolve())
    print(f"setup: {CLONE} at {REF_COMMIT[:7]} + {PATCH.name} (sha256 {sha256(PATCH)[:12]}), venv {VENV}")


def _cpu_model() -> str | None:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or None


def environment(env: dict[str, str]) -> dict:
    """The reference venv's torch build, thread count and CPU kernel path (asked of that venv's python, under the
    run's own environment variables), like our records' ``environment``."""
    probe = ("import json, platform, torch, numpy; print(json.dumps({'torch': torch.__version__, "
             "'threads': torch.get_num_threads(), 'cpu_capability': torch.backends.cpu.get_cpu_capability(), "
             "'python': platform.python_version(), 'numpy': numpy.__version__}))")
    got = json.loads(subprocess.run([str(VENV / "bin" / "python"), "-c", probe], env=env, check=True,
                                    capture_output=True, text=True).stdout)
    return {**got, "ATEN_CPU_CAPABILITY": env.get("ATEN_CPU_CAPABILITY"), "cpu": _cpu_model(),
            "machine": platform.machine(), "packages": list(PACKAGES)}


def parse_summary(text: str) -> dict:
    """The reference's ``performance_overview.txt`` (``key value`` lines, accuracies in %)."""
    vals: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            key, _, value = line.strip().partition(" ")
            vals[key] = value.strip()
    missing = [k for k in ("acc_after_mean", "acc_during_mean", "acc_after_list", "acc_during_list") if k not in vals]
    if missing:
        raise ValueError(f"the reference summary lacks {missing}: the run did not finish")

    def floats(key: str) -> list[float]:  # space-separated; entries may print as "tensor(99.8582)"
        return [float(v) for v in re.findall(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", vals[key])]

    return {"final_average": floats("acc_after_mean")[0], "during_average": floats("acc_during_mean")[0],
            "final": floats("acc_after_list"), "during": floats("acc_during_list"),
            "task_inference": floats("acc_task_infer_mean")[0],
            "task_inference_per_task": floats("overall_task_infer_accuracy_list")}


def record_path(scenario: int, seed: int) -> Path:
    return RECORDS / f"reference_hnet_cl{scenario}-seed{seed}.json"


def run_one(scenario: int, seed: int, threads: int) -> dict:
    args = ["--infer_task_id", "--infer_with_entropy", "--cl_scenario", str(scenario), "--random_seed", str(seed)]
    out_dir = EXTERNAL / "out" / f"cl{scenario}-seed{seed}"
    if out_dir.exists():  # an interrupted run's folder: the reference code would stop to ask before reusing it
        shutil.rmtree(out_dir)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    logs = EXTERNAL / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cpu0 = os.times()
    with open(logs / f"cl{scenario}-seed{seed}.log", "w") as log:
        subprocess.run([str(VENV / "bin" / "python"), "train_splitMNIST.py", *args, "--out_dir", str(out_dir)],
                       cwd=CLONE / "mnist", env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    cpu1 = os.times()
    summary = parse_summary((out_dir / "performance_overview.txt").read_text())
    return {"variant": f"reference_hnet_cl{scenario}", "kind": "reference", "seed": seed, "scenario": f"cl{scenario}",
            "command": f"cd mnist && OMP_NUM_THREADS={threads} python train_splitMNIST.py {' '.join(args)}",
            "reference": {"url": REF_URL, "commit": REF_COMMIT, "patch": str(PATCH.relative_to(ROOT)),
                          "patch_sha256": sha256(PATCH)},
            "environment": environment(env),
            "wall_time_s": time.perf_counter() - t0,
            "cpu_time_s": (cpu1.children_user - cpu0.children_user) + (cpu1.children_system - cpu0.children_system),
            "result": summary}


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds.extend(range(int(lo), int(hi or lo) + 1))
    return seeds


def run(scenarios: list[int], seeds: list[int], threads: int) -> None:
    """Seed-major, so every scenario fills in evenly; records are written atomically as each run finishes."""
    if not (VENV / "bin" / "python").exists() or not CLONE.exists():
        raise SystemExit("run: the reference is not set up: python scripts/reference_hnet.py setup")
    RECORDS.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        for scenario in scenarios:
            path = record_path(scenario, seed)
            if path.exists():
                continue
            print(f"[{time.strftime('%H:%M:%S')}] cl{scenario} seed {seed} ...", flush=True)
            rec = run_one(scenario, seed, threads)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(rec, indent=1) + "\n")
            tmp.replace(path)
            print(f"[{time.strftime('%H:%M:%S')}] cl{scenario} seed {seed}: final {rec['result']['final_average']:.2f}"
                  f", during {rec['result']['during_average']:.2f} ({rec['wall_time_s']:.0f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["setup", "run"])
    ap.add_argument("--source", default=REF_URL, help="setup: where to clone from (a URL or a local mirror)")
    ap.add_argument("--data", default=os.environ.get("HYPERCL_DATA", "data"), help="setup: folder holding MNIST/raw")
    ap.add_argument("--scenarios", default="3,2", help="run: CL scenarios, comma-separated (2, 3)")
    ap.add_argument("--seeds", default="42-46", help="run: seeds, e.g. 42-46 or 42,44")
    ap.add_argument("--threads", type=int, default=1, help="run: torch/OpenMP threads")
    a = ap.parse_args(argv)
    if a.what == "setup":
        setup(a.source, Path(a.data))
    elif a.what == "run":
        scenarios = [int(s) for s in a.scenarios.split(",")]
        if any(s not in (2, 3) for s in scenarios):
            ap.error("--scenarios: 2 and/or 3 (the entropy rule infers the task only there)")
        run(scenarios, parse_seeds(a.seeds), a.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
