"""Benchmark: wall time of the local jobs, each run in a fresh process as `make run-local-*` would.

For each job spec: one warm-up run (creates the sqlite store and the model), then --runs timed
runs against the warm store. Prints the median and range of wall time, of the imports, and of each
task; then one profiled training run broken down by phase, to say where the time goes.

    python ml_ops/benchmarks/local_jobs.py --runs 5
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
JOBS = {
    "training (train+validate+promote)": REPO / "job_specs" / "diabetes_model_training.json",
    "batch scoring": REPO / "job_specs" / "diabetes_batch_scoring.json",
}
DATA = "Volumes/main/diabetes/data"
MARK = "BENCH "
# (module path suffix, function) -> label, for the profiled breakdown of one training run.
PHASES = [
    ("diabetes/reading.py", "read_dataset", "train: read + validate CSV"),
    ("diabetes/training.py", "train_model", "train: 5-fold CV over 9 alphas + refit"),
    ("tracking/training_run.py", "log_training", "train: log params/metrics/tables/plots"),
    ("mlflow/sklearn/__init__.py", "log_model", "train: log_model + register version"),
    ("diabetes_mlops/tracking/runs.py", "use_experiment", "all: experiment lookup"),
    ("steps/validate.py", "validate", "validate task"),
    ("steps/promote.py", "promote", "promote task"),
]


def child(spec: str, root: str, profile: str | None) -> None:
    """One job run in this process; prints a JSON line with import, task and job seconds."""
    started = time.perf_counter()
    import diabetes_mlops.steps  # noqa: F401  (what the notebooks import first)
    from diabetes_mlops.local.runner import LocalRunner

    imported = time.perf_counter() - started
    runner = LocalRunner(root, report=lambda line: None)
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    job = runner.run(spec)
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    if not job.succeeded:
        failed = [t.error_line for t in job.tasks if t.error]
        raise SystemExit(f"job failed: {failed}")
    tasks = {t.key: t.seconds for t in job.tasks}
    print(MARK + json.dumps({"imports": imported, "job": job.seconds, "tasks": tasks}))


def run_once(spec: Path, root: Path, profile: Path | None = None) -> dict:
    command = [sys.executable, __file__, "--child", str(spec), "--root", str(root)]
    if profile:
        command += ["--profile", str(profile)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{spec.name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith(MARK))
    return {"wall": wall, **json.loads(line[len(MARK) :])}


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} s  ({min(values):.2f}-{max(values):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child")
    parser.add_argument("--root")
    parser.add_argument("--profile")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.root, args.profile)
        return 0

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the runner's own sqlite store under --root
    root = Path(tempfile.mkdtemp(prefix="bench-local-"))
    try:
        (root / DATA).mkdir(parents=True)
        for name in ("data_raw.csv", "data_batch_input.csv"):
            shutil.copy(REPO / "ml_data" / name, root / DATA / name)
        print(f"{args.runs} runs per job after one warm-up, each a fresh Python process")
        print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}\n")
        header = f"{'job / part':44} {'median':>8}  (min-max)"
        print(header + "\n" + "-" * len(header))
        for label, spec in JOBS.items():
            run_once(spec, root)  # warm-up: store tables, experiment, a champion to score with
            runs = [run_once(spec, root) for _ in range(args.runs)]
            print(f"{label:44} {summary([r['wall'] for r in runs])}")
            print(f"{'  process start + imports':44} {summary([r['imports'] for r in runs])}")
            for task in runs[0]["tasks"]:
                print(f"{'  task ' + task:44} {summary([r['tasks'][task] for r in runs])}")
        profile = root / "training.prof"
        run_once(JOBS["training (train+validate+promote)"], root, profile)
        print("\nWhere the training job's time goes (one profiled run, cumulative):")
        stats = pstats.Stats(str(profile)).stats  # type: ignore[attr-defined]
        for suffix, function, label in PHASES:
            seconds = sum(
                value[3]
                for (file, _, name), value in stats.items()
                if name == function and file.endswith(suffix)
            )
            print(f"  {label:44} {seconds:6.2f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
