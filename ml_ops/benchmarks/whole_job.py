"""The batch-scoring job's whole work, against a bare scan of its input (scoring.py's job section).

One model is trained and registered by the train step into a sqlite store; each run then calls the
job's two steps as its tasks do: batch_score (read, check, score, write, publish) and monitor
(the batch's drift profile, compare, report, monitoring-table append). Beside it, in the same
round-robin: a bare Parquet scan of the input (every column through the noop sink), and a copy
(read the input, write it as Parquet unchanged), the least any job that writes its rows does.
The stage shares are the steps' own `seconds_<stage>` metrics of the timed runs.

At --job-large-rows (100M by default) the job runs once in a fresh process, as does the job at
the largest --rows, so both have a peak memory of their own process tree (Python, JVM, Python
workers) and a time measured alike.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

JOB_HEADING = "## Whole batch job"
JOB_TARGET = 4.0  # the whole job may cost at most this many bare scans of its input
MEMORY_TARGET = 1.3  # peak memory at the large row count / at the largest --rows
LINEAR_TARGET = 11.0  # time at 10x the rows / time at the rows
FRESH_HEAP = "2g"  # the JVM heap of the fresh-process runs, fixed
SCAN, COPY, JOB, OTHER = "bare scan", "copy (read + write Parquet)", "whole job", "other"
# The job as it ran before the counts rode along with the check: the monitor reads the output.
OWN_PASS = "whole job, monitor reading the output"
MODEL, EXPERIMENT = "bench_diabetes", "/bench/whole-job"
BATCH_STAGES = ("read_check", "model", "score_write", "publish")
MONITOR_STAGES = ("reference", "profile", "compare", "report", "table")


def use_store(work: Path) -> None:
    import mlflow

    from diabetes_mlops.tracking.runs import ARTIFACT_ROOT_ENV

    uri = f"sqlite:///{work}/mlflow.db"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ[ARTIFACT_ROOT_ENV] = str(work / "artifacts")
    mlflow.set_tracking_uri(uri)


def register_model(repo: Path, work: Path) -> None:
    """Version 1 of MODEL, trained by the train step on the sample data (reference profile
    included, as the monitor needs it)."""
    from diabetes_mlops.steps.train import train

    use_store(work)
    train(str(repo / "ml_data" / "data_raw.csv"), MODEL, EXPERIMENT)


def run_job(spark, source: Path, work: Path, own_pass: bool = False) -> dict[str, float]:
    """batch_score then monitor, as the job's tasks run them; {stage: seconds} and the total.
    `own_pass`: batch_score records no counts, so the monitor reads the output and counts it
    (what it does for a quarantined batch, and what the job did before)."""
    from contextlib import nullcontext
    from unittest import mock

    import mlflow

    from diabetes_mlops.steps.batch_score import batch_score
    from diabetes_mlops.steps.monitor import monitor

    output, table = work / "scores", work / "monitoring"
    riders = "diabetes_mlops.steps.batch_score._profile_riders"
    started = time.perf_counter()
    with mock.patch(riders, return_value=None) if own_pass else nullcontext():
        batch_score(
            spark, str(source), str(output), MODEL, EXPERIMENT, model_version="1",
            input_format="parquet",
        )  # fmt: skip
    scored = mlflow.last_active_run().data.metrics
    monitor(spark, str(output), str(table), EXPERIMENT)
    watched = mlflow.last_active_run().data.metrics
    total = time.perf_counter() - started
    stages = {f"batch_score: {s}": scored.get(f"seconds_{s}", 0.0) for s in BATCH_STAGES}
    stages |= {f"monitor: {s}": watched.get(f"seconds_{s}", 0.0) for s in MONITOR_STAGES}
    # MLflow runs, parameters, Spark set-up: what no stage of the steps covers
    stages[OTHER] = total - sum(stages.values())
    return {**stages, JOB: total}


def measure(spark, rows_list: list[int], repeats: int, work: Path, make_input) -> dict:
    """Median seconds per path and per stage at each row count, paths taking turns."""
    found: dict = {"times": {}, "stages": {}, "inputs": {}}

    def scan(path: Path) -> None:
        spark.read.parquet(str(path)).write.format("noop").mode("overwrite").save()

    def copy(path: Path) -> None:
        target = work / "copy.parquet"
        shutil.rmtree(target, ignore_errors=True)
        spark.read.parquet(str(path)).write.parquet(str(target))

    for rows in rows_list:
        path = work / f"job_input_{rows}.parquet"
        make_input(spark, rows, path)
        found["inputs"][rows] = path
        times: dict[str, list[float]] = {SCAN: [], COPY: [], JOB: [], OWN_PASS: []}
        stages: list[dict[str, float]] = []
        paths = {
            SCAN: scan,
            COPY: copy,
            JOB: lambda source: run_job(spark, source, work),
            OWN_PASS: lambda source: run_job(spark, source, work, own_pass=True),
        }
        order = list(paths)
        for round_ in range(repeats + 1):  # a warm-up round, then the timed ones
            # Each round starts one path later: what a path leaves behind (the page cache's
            # dirty pages of a write, the JVM's garbage) falls on each of the others in turn.
            for name in order[round_ % len(order) :] + order[: round_ % len(order)]:
                started = time.perf_counter()
                found_stages = paths[name](path)
                if not round_:
                    continue
                times[name].append(time.perf_counter() - started)
                if name == JOB:
                    stages.append({k: v for k, v in found_stages.items() if k != JOB})
        for name, values in times.items():
            found["times"][(name, rows)] = statistics.median(values)
        found["stages"][rows] = {s: statistics.median(d[s] for d in stages) for s in stages[0]}
        medians = {name: found["times"][(name, rows)] for name in times}
        print(f"whole job {rows:>11,} rows: {medians}", flush=True)
    return found


def job_once(source: Path, work: Path) -> int:
    """Child side of the fresh-process runs: the job once (after Spark starts), its time on
    stdout as JSON.

    The JVM's heap is fixed (FRESH_HEAP, -Xms as -Xmx, as a cluster's executors have it): with
    the default elastic heap G1 grows the heap with time, not need, and the same job's peak
    varied more than between row counts (2.44 GiB at 10M rows, 1.89 GiB at 40M in one run)."""
    from pyspark.sql import SparkSession

    use_store(work)
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", FRESH_HEAP)
        .config("spark.driver.extraJavaOptions", f"-Xms{FRESH_HEAP}")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        run = work / f"fresh_{os.getpid()}"
        run.mkdir()
        found = run_job(spark, source, run)
        print(json.dumps({"seconds": found[JOB]}))
    finally:
        spark.stop()
    return 0


def fresh_runs(found: dict, large_rows: int, work: Path, make_input, spark, run_child) -> None:
    """The job in a fresh process at the largest --rows and at `large_rows`: time and peak
    memory of the process tree."""
    small = max(found["inputs"])
    large_path = work / f"job_input_{large_rows}.parquet"
    started = time.perf_counter()
    make_input(spark, large_rows, large_path)
    print(f"generated {large_rows:,} rows in {time.perf_counter() - started:.0f} s", flush=True)
    found["large_input_bytes"] = sum(f.stat().st_size for f in large_path.rglob("*.parquet"))
    found["fresh"] = {}
    found["processes"] = {}
    for rows, path in ((small, found["inputs"][small]), (large_rows, large_path)):
        processes: dict[str, int] = {}
        peak, out = run_child(JOB, path, ["--store", str(work)], processes)
        found["fresh"][rows] = (json.loads(out.strip().splitlines()[-1])["seconds"], peak)
        found["processes"][rows] = processes
        print(f"whole job, fresh process, {rows:,} rows: {found['fresh'][rows]}", flush=True)
        print(f"  peak per process: {processes}", flush=True)
    scan_started = time.perf_counter()
    spark.read.parquet(str(large_path)).write.format("noop").mode("overwrite").save()
    found["large_scan"] = time.perf_counter() - scan_started
    shutil.rmtree(large_path, ignore_errors=True)


def _top(found: dict, rows: int) -> str:
    """The processes' own peaks, largest first (Python, the JVM, Python workers if any)."""
    peaks = sorted(found.get("processes", {}).get(rows, {}).items(), key=lambda kv: -kv[1])
    return ", ".join(f"{name.split()[0]} {peak / 2**30:.2f} GiB" for name, peak in peaks[:3])


def render(found: dict, repeats: int, machine: str, spark_version: str) -> str:
    from datetime import UTC, datetime

    times, stages = found["times"], found["stages"]
    lines = [
        JOB_HEADING,
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine}, Spark {spark_version}"
        " local[2]. The job's two tasks as they run (ml_ops/benchmarks/whole_job.py):"
        " batch_score reads the generated Parquet input, checks it, scores it natively, writes"
        " Parquet and publishes it; monitor profiles the batch, compares it with the model's"
        " reference, logs the report and appends to the monitoring table. Bare scan: every"
        " input column through the noop sink. Copy: the input read and written as Parquet"
        " unchanged. Before: the same job with the monitor reading the output and counting it"
        " itself, as the job ran before its counts rode along with the input check (and as it"
        f" still runs for a quarantined batch). Median of {repeats} runs after a warm-up, the four"
        " taking turns.",
        "",
        f"| rows | bare scan | copy | whole job | job / scan | ≤ {JOB_TARGET:g}× | job / copy"
        " | before | before / scan |",
        "| ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for rows in stages:
        scan, copy, job, before = (times[(n, rows)] for n in (SCAN, COPY, JOB, OWN_PASS))
        met = "yes" if job / scan <= JOB_TARGET else "NO"
        lines.append(
            f"| {rows:,} | {scan:.2f} s | {copy:.2f} s | {job:.2f} s | {job / scan:.2f}× | {met}"
            f" | {job / copy:.2f}× | {before:.2f} s | {before / scan:.2f}× |"
        )
    largest = max(stages)
    job, scan, copy = (times[(n, largest)] for n in (JOB, SCAN, COPY))
    if job / scan > JOB_TARGET:
        lines += [
            "",
            f"The target is not met. Reading the input and writing it back unchanged with Spark's"
            f" Parquet writer costs {copy / scan:.1f} bare scans by itself"
            f" ({'more than' if copy / scan > JOB_TARGET else 'most of'} the {JOB_TARGET:g} the"
            f" whole job may take); the job writes three columns more, checks the input and"
            f" counts it for the monitor (below). What Photon or a bigger cluster would change:"
            f" docs/speed.md#whole-batch-job.",
        ]
    lines += [
        "",
        f"Where the job's time goes at {largest:,} rows (the steps' own `seconds_<stage>`"
        " metrics, each stage's median; other: MLflow runs, parameters and Spark set-up; stages"
        " under 5 ms left out):",
        "",
        "| stage | seconds | share of the job | bare scans |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, seconds in stages[largest].items():
        if seconds >= 0.005:
            lines.append(f"| {name} | {seconds:.2f} | {seconds / job:.0%} | {seconds / scan:.2f} |")
    if "fresh" in found:
        (small, (t_small, m_small)), (large, (t_large, m_large)) = found["fresh"].items()
        memory, linear = m_large / m_small, t_large / t_small
        lines += [
            "",
            f"The job at {large:,} rows ({found['large_input_bytes'] / 2**30:.1f} GiB of"
            f" Parquet input, a bare scan {found['large_scan']:.1f} s), each row count in a"
            " fresh process, run once (time from the first task's start to the monitor's end;"
            " peak RSS of the process tree sampled every 0.2 s; the JVM's heap fixed at"
            f" {FRESH_HEAP}, -Xms as -Xmx: an elastic heap grows with time, not need):",
            "",
            "| rows | whole job | peak RSS (process tree) | each process's own peak |",
            "| ---: | ---: | ---: | --- |",
            f"| {small:,} | {t_small:.1f} s | {m_small / 2**30:.2f} GiB | {_top(found, small)} |",
            f"| {large:,} | {t_large:.1f} s | {m_large / 2**30:.2f} GiB | {_top(found, large)} |",
            "",
            "| target | measured | met |",
            "| --- | ---: | --- |",
            f"| peak memory at {large:,} ≤ {MEMORY_TARGET}× at {small:,} | {memory:.2f}× |"
            f" {'yes' if memory <= MEMORY_TARGET else 'NO'} |",
            f"| time({large:,}) / time({small:,}) ≤ {LINEAR_TARGET:g} | {linear:.1f} |"
            f" {'yes' if linear <= LINEAR_TARGET else 'NO'} |",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - run through scoring.py
    sys.exit("run it through scoring.py: python ml_ops/benchmarks/scoring.py --only job")
