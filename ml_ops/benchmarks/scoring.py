"""Benchmark: batch-scoring throughput on Spark local[2], five ways, side by side in one run.

- native: the model as one Spark column expression (diabetes_mlops.spark.scoring)
- spark_udf: mlflow.pyfunc.spark_udf, what other templates use, with Spark's defaults
- spark_udf, rows in: the same, as the batch step's fallback runs it (rows_into_python_udfs)
- pandas_udf: a plain pandas_udf calling the scikit-learn pipeline, Spark's defaults
- reference: one Python process, pandas + the scikit-learn pipeline, no Spark

Input: N generated rows in Parquet, each column uniform within the sample data's range at its
precision, 2 % missing numbers, 2 % unknown and 2 % missing SEX. Each measurement reads
the Parquet, scores every row and drives the result through Spark's `noop` sink (the reference:
reads with pandas and predicts). The Spark paths get the features as the batch step gives them,
after its input check (timed apart, as is a bare scan of the input). Rows/s is the median of
--repeats runs in this process; peak memory is that of a fresh process tree (Python, JVM, Python
workers) scoring the same input once with the path.

Drift monitor section: the same input, scored natively into Parquet as the batch step writes it
(typed features, prediction, model_version, scored_at), then read by
- bare scan: the columns the monitor reads, driven through the `noop` sink
- monitor: diabetes_mlops.spark.profile.batch_stats over a reference profile of the sample data
  (one aggregation: bin counts of 9 features and the prediction, SEX counts, fingerprint)
and, at --pandas-rows, by what a user might pick instead, in a fresh process each (time and peak
memory): pandas reading the Parquet and computing diabetes.drift.profile_like + compare, and
evidently's DataDriftPreset when evidently can be imported (--evidently-path adds a folder that
holds it, e.g. from `pip install --target`: it is no dependency of this project).

    python ml_ops/benchmarks/scoring.py --rows 1000000 10000000 --repeats 5
    python ml_ops/benchmarks/scoring.py --only monitor --rows 1000000 10000000 --repeats 3
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd  # at module level: pandas_udf resolves the type hints from here
import whole_job

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "ml_ops" / "benchmarks" / "results" / "scoring.md"
SECTIONS = ("scoring", "monitor", "job")
MONITOR_HEADING = "## Drift monitor"
MONITOR_TARGET = 1.5  # the monitor pass may cost at most this many bare scans of the output
BARE_SCAN, MONITOR, PANDAS_DRIFT, EVIDENTLY = "bare scan", "monitor", "pandas drift", "evidently"
# The same work through Spark Connect (as serverless runs it), on the same Spark, in the same run.
NATIVE_CONNECT, MONITOR_CONNECT = "native, Spark Connect", "monitor, Spark Connect"


def tree_rss(root: int, by_process: dict[str, int] | None = None) -> int:
    """Resident bytes of `root` and its descendants, from /proc; `by_process` gets each
    process's peak so far, by name and pid."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
            except (OSError, IndexError):
                continue
    family, frontier = {root}, [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        family.update(frontier)
    total = 0
    for pid in family:
        try:
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status if ":" in line)
        if "VmRSS" in fields:
            resident = int(fields["VmRSS"].split()[0]) * 1024
            total += resident
            if by_process is not None:
                key = f"{fields.get('Name', '?').strip()} {pid}"
                by_process[key] = max(by_process.get(key, 0), resident)
    return total


# Each column drawn uniformly within the sample data's range, at the sample data's precision
# (ages in years, S5 to 4 decimals...), so Parquet encodes it as it would encode real records.
RANGES = {
    "AGE": (19, 79, 0), "BMI": (18.0, 42.2, 1), "BP": (62, 133, 0), "S1": (97, 301, 0),
    "S2": (41.6, 242.4, 1), "S3": (22, 99, 0), "S4": (2.0, 9.09, 2), "S5": (3.2581, 6.107, 4),
    "S6": (58, 124, 0),
}  # fmt: skip


def make_input(spark, rows: int, path: Path) -> None:
    from pyspark.sql import functions as F

    # One draw per row for SEX, as a column: rand() inside CASE WHEN branches is drawn only for
    # the rows that reach the branch, which skews the shares.
    base = spark.range(rows, numPartitions=max(2, rows // 1_000_000)).withColumn(
        "sex_draw", F.rand(seed=99)
    )
    columns = []
    for index, (column, (low, high, digits)) in enumerate(RANGES.items()):
        value = F.round(F.rand(seed=index) * (high - low) + low, digits).cast("double")
        columns.append(F.when(F.rand(seed=100 + index) < 0.02, None).otherwise(value).alias(column))
    sex = F.col("sex_draw")
    columns.append(
        F.when(sex < 0.48, "Female")
        .when(sex < 0.96, "Male")
        .when(sex < 0.965, "Other")  # unknown codes within the contract's 1 % tolerance
        .alias("SEX")
    )
    base.select(*columns).write.mode("overwrite").parquet(str(path))


def start_spark():
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "6g")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.host", "127.0.0.1")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def start_connect(spark):
    """A Spark Connect session served by `spark`'s own Spark (diabetes_mlops.local.spark)."""
    from diabetes_mlops.local.spark import CONNECT_MODE_ENV, connect_session

    session = connect_session(spark)
    os.environ.pop(CONNECT_MODE_ENV, None)  # classic columns, but inside through_connect()
    return session


def through_connect(run: Callable[[Path], object]) -> Callable[[Path], object]:
    """`run` with pyspark.sql.functions building Spark Connect columns (is_remote())."""
    from diabetes_mlops.local.spark import CONNECT_MODE_ENV

    def wrapped(path: Path) -> object:
        os.environ[CONNECT_MODE_ENV] = "1"
        try:
            return run(path)
        finally:
            os.environ.pop(CONNECT_MODE_ENV, None)

    return wrapped


def native_connect(connect) -> Callable[[Path], object]:
    """Native scoring as the batch step runs it, through Spark Connect."""
    from diabetes.linear_form import linear_form
    from diabetes.reading import read_dataset
    from diabetes.training import train_model
    from diabetes_mlops.spark.inputs import typed_features
    from diabetes_mlops.spark.scoring import prediction_column

    form = linear_form(
        train_model(read_dataset(REPO / "ml_data" / "data_raw.csv", "training")).model
    )

    def run(path: Path) -> None:
        frame = typed_features(connect.read.parquet(str(path)))
        scored = frame.withColumn("prediction", prediction_column(form))
        scored.write.format("noop").mode("overwrite").save()

    return through_connect(run)


def scoring_paths(spark, work: Path) -> dict[str, Callable[[Path], object]]:
    """Each path scores every row of a Parquet input; `spark` None gives the reference alone."""
    from diabetes.contract import FEATURES, NUMERIC_FEATURES
    from diabetes.reading import read_dataset
    from diabetes.training import train_model

    model = train_model(read_dataset(REPO / "ml_data" / "data_raw.csv", "training")).model
    paths: dict[str, Callable[[Path], object]] = {}
    if spark is not None:
        paths = spark_paths(spark, work, model)
    paths["reference"] = lambda p: model.predict(
        pd.read_parquet(p).astype({c: "float64" for c in NUMERIC_FEATURES})[list(FEATURES)]
    )
    return paths


def spark_paths(spark, work: Path, model) -> dict[str, Callable[[Path], None]]:
    import mlflow
    import mlflow.sklearn
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    from diabetes.contract import FEATURES
    from diabetes.linear_form import linear_form
    from diabetes_mlops.serving.served_model import model_signature
    from diabetes_mlops.spark.inputs import typed_features
    from diabetes_mlops.spark.scoring import prediction_column, rows_into_python_udfs

    mlflow.set_tracking_uri(f"sqlite:///{work}/mlflow.db")
    experiment = mlflow.create_experiment("bench", artifact_location=str(work / "artifacts"))
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(
            model, name="model", signature=model_signature(), pip_requirements=["scikit-learn"],
            serialization_format="cloudpickle",
        )  # fmt: skip
    spark_udf = mlflow.pyfunc.spark_udf(spark, info.model_uri, result_type="double")
    broadcast = spark.sparkContext.broadcast(model)

    @pandas_udf("double")
    def sklearn_udf(frame: pd.DataFrame) -> pd.Series:
        return pd.Series(broadcast.value.predict(frame[list(FEATURES)]))

    form = linear_form(model)

    def score_into_noop(path: Path, score) -> None:
        frame = typed_features(spark.read.parquet(str(path)))
        frame.withColumn("prediction", score()).write.format("noop").mode("overwrite").save()

    def rows_in(path: Path, score) -> None:
        with rows_into_python_udfs(spark):
            score_into_noop(path, score)

    features = F.struct(*[F.col(c) for c in FEATURES])
    return {
        "native": lambda p: score_into_noop(p, lambda: prediction_column(form)),
        "spark_udf": lambda p: score_into_noop(p, lambda: spark_udf(features)),
        "spark_udf, rows in": lambda p: rows_in(p, lambda: spark_udf(features)),
        "pandas_udf": lambda p: score_into_noop(p, lambda: sklearn_udf(features)),
    }


def peak_memory_of(name: str, path: Path, extra: list[str] | None = None) -> int:
    """Peak RSS of a fresh process tree (Python, JVM, Python workers) scoring once with `name`.

    A fresh process each: a JVM keeps the heap it grew for earlier paths, so measuring in the
    timing process would charge every path with the largest one before it.
    """
    return run_child(name, path, extra or [])[0]


def run_child(
    name: str, path: Path, extra: list[str], by_process: dict[str, int] | None = None
) -> tuple[int, str]:
    """(peak RSS of the child's process tree, its stdout) for `--memory-of name`."""
    command = [sys.executable, __file__, "--memory-of", name, "--input", str(path), *extra]
    with tempfile.TemporaryFile("w+") as out:
        child = subprocess.Popen(command, stdout=out)
        peak = 0
        while child.poll() is None:
            peak = max(peak, tree_rss(child.pid, by_process))
            time.sleep(0.2)
        if child.returncode:
            raise RuntimeError(f"{name}: the memory run exited with {child.returncode}")
        out.seek(0)
        return peak, out.read()


def score_once(name: str, path: Path) -> int:
    """The child side of peak_memory_of."""
    work = Path(tempfile.mkdtemp(prefix="bench-scoring-memory-"))
    spark = None if name == "reference" else start_spark()
    try:
        scoring_paths(spark, work)[name](path)
    finally:
        if spark is not None:
            spark.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


# --- the drift monitor ---------------------------------------------------------------------------


def make_scored(spark, model, source: Path, path: Path) -> None:
    """The batch step's output for `source`: typed features, native prediction, model_version,
    scored_at."""
    from pyspark.sql import functions as F

    from diabetes.contract import MODEL_VERSION, PREDICTION, SCORED_AT
    from diabetes.linear_form import linear_form
    from diabetes_mlops.spark.inputs import typed_features
    from diabetes_mlops.spark.scoring import prediction_column

    frame = typed_features(spark.read.parquet(str(source)))
    scored = frame.withColumn(PREDICTION, prediction_column(linear_form(model)))
    scored = scored.withColumn(MODEL_VERSION, F.lit(1))
    scored = scored.withColumn(SCORED_AT, F.lit(datetime.now(UTC)))
    scored.write.mode("overwrite").parquet(str(path))


def monitor_reference(model):
    """The reference profile training would store: the sample data and the model's predictions."""
    from diabetes.contract import FEATURES
    from diabetes.drift import reference_profile
    from diabetes.reading import read_dataset

    training = read_dataset(REPO / "ml_data" / "data_raw.csv", "training")
    return reference_profile(training[list(FEATURES)], model.predict(training[list(FEATURES)]))


def monitored_columns() -> list[str]:
    from diabetes.contract import FEATURES, PREDICTION

    return [*FEATURES, PREDICTION]


def monitor_paths(spark, reference) -> dict[str, Callable[[Path], object]]:
    """The Spark side, timed in this process: a bare scan of what the monitor reads, and the
    monitor's pass."""
    from diabetes_mlops.spark.profile import batch_stats

    def scan(path: Path) -> None:
        frame = spark.read.parquet(str(path)).select(*monitored_columns())
        frame.write.format("noop").mode("overwrite").save()

    return {
        BARE_SCAN: scan,
        MONITOR: lambda p: batch_stats(spark.read.parquet(str(p)), reference),
    }


def pandas_drift(reference, path: Path):
    """What a user of pandas would write: read the columns, profile them, compare."""
    from diabetes.contract import PREDICTION
    from diabetes.drift import compare, profile_like

    frame = pd.read_parquet(path, columns=monitored_columns())
    return compare(reference, profile_like(reference, frame, frame[PREDICTION]))


def evidently_drift(reference_rows: pd.DataFrame, path: Path):
    """evidently's data drift preset over the same columns, against the sample data."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    current = pd.read_parquet(path, columns=monitored_columns())
    return Report([DataDriftPreset()]).run(current, reference_rows[current.columns])


def evidently_available(extra_path: str | None) -> bool:
    os.environ.setdefault("DO_NOT_TRACK", "1")  # evidently's usage telemetry
    if extra_path:
        sys.path.append(extra_path)  # after the project's own packages: its pins win
    return importlib.util.find_spec("evidently") is not None


def monitor_once(name: str, path: Path, reference_file: Path, repeats: int) -> int:
    """The child side of a monitor memory run; prints the time of each of `repeats` passes."""
    from diabetes.drift import Profile

    reference = Profile.from_json(reference_file.read_text())
    if name == MONITOR:
        spark = start_spark()
        run = monitor_paths(spark, reference)[MONITOR]
    elif name == PANDAS_DRIFT:
        spark, run = None, lambda p: pandas_drift(reference, p)
    else:
        spark, rows = None, pd.read_parquet(reference_file.with_suffix(".parquet"))

        def run(path: Path):
            return evidently_drift(rows, path)

    times = []
    try:
        for _ in range(repeats):
            started = time.perf_counter()
            run(path)
            times.append(time.perf_counter() - started)
    finally:
        if spark is not None:
            spark.stop()
    print(json.dumps({"times": times}))
    return 0


def measure_monitor(spark, args, work: Path, connect=None) -> dict:
    """Per row count: medians of the bare scan and the monitor; at --pandas-rows, the fresh
    processes of the monitor, pandas and (when importable) evidently."""
    from diabetes.reading import read_dataset
    from diabetes.training import train_model

    training = read_dataset(REPO / "ml_data" / "data_raw.csv", "training")
    model = train_model(training).model
    reference = monitor_reference(model)
    reference_file = work / "reference.json"
    reference_file.write_text(reference.to_json())
    features = training[monitored_columns()[:-1]]  # for evidently: its reference data
    features.assign(prediction=model.predict(features)).to_parquet(
        reference_file.with_suffix(".parquet")
    )
    with_evidently = evidently_available(args.evidently_path)
    version = importlib.metadata.version("evidently") if with_evidently else None
    found: dict = {"times": {}, "fresh": {}, "evidently": version}
    for rows in args.rows:
        source, scored = work / f"input_{rows}.parquet", work / f"scored_{rows}.parquet"
        if not source.exists():  # the scoring section's input, when it ran
            make_input(spark, rows, source)
        make_scored(spark, model, source, scored)
        paths = monitor_paths(spark, reference)
        if connect is not None:
            from diabetes_mlops.spark.profile import batch_stats

            paths[MONITOR_CONNECT] = through_connect(
                lambda p: batch_stats(connect.read.parquet(str(p)), reference)
            )
        for run in paths.values():
            run(scored)  # warm-up: JIT, generated code
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.repeats):  # round-robin, so machine noise hits both alike
            for name, run in paths.items():
                started = time.perf_counter()
                run(scored)
                times[name].append(time.perf_counter() - started)
        for name in paths:
            found["times"][(name, rows)] = statistics.median(times[name])
        print(
            f"monitor {rows:>11,} rows: {found['times'][(MONITOR, rows)]:.2f} s,"
            f" bare scan {found['times'][(BARE_SCAN, rows)]:.2f} s",
            flush=True,
        )
        if rows == max(args.rows):
            found["metrics"] = metrics_cost(spark, reference, scored)
        if rows != args.pandas_rows:
            continue
        fresh = [MONITOR, PANDAS_DRIFT] + [EVIDENTLY] * with_evidently
        for name in fresh:
            extra = ["--reference", str(reference_file), "--child-repeats", str(args.repeats)]
            extra += ["--evidently-path", args.evidently_path] if args.evidently_path else []
            peak, out = run_child(name, scored, extra)
            found["fresh"][name] = (statistics.median(json.loads(out)["times"]), peak)
            print(f"{name:18} {rows:>11,} rows, fresh process: {found['fresh'][name]}", flush=True)
    return found


def metrics_cost(spark, reference, scored: Path) -> dict[str, float]:
    """What the drift metrics add to the pass: compare() (every metric, from the counts) and the
    drift-over-time chart of 30 batches; medians, in seconds."""
    import io

    from diabetes.drift import compare
    from diabetes.drift_history import history_figure
    from diabetes.drift_report import profiled_features
    from diabetes_mlops.spark.profile import batch_stats

    profile = batch_stats(spark.read.parquet(str(scored)), reference).profile
    compared = []
    for _ in range(20):
        started = time.perf_counter()
        metrics = compare(reference, profile)
        compared.append(time.perf_counter() - started)
    rows = pd.DataFrame(
        [
            {"batch_id": f"b{i}", "batch_time": pd.Timestamp("2026-01-01") + pd.Timedelta(days=i),
             "model_version": 1, "feature": m.feature, "metric": m.metric,
             "value": m.value * (1 + i / 30), "threshold": m.threshold}
            for i in range(30) for m in metrics
        ]
    )  # fmt: skip
    charted = []
    for _ in range(3):
        started = time.perf_counter()
        figure = history_figure(rows, "psi", profiled_features(reference), 30)
        figure.savefig(io.BytesIO(), format="png", dpi=90)
        charted.append(time.perf_counter() - started)
    return {
        "compare": statistics.median(compared),
        "chart": statistics.median(charted),
        "metrics": len(metrics),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--only", choices=SECTIONS, help="run one section; the results file keeps the other's"
    )
    parser.add_argument(
        "--pandas-rows",
        type=int,
        default=1_000_000,
        help="the row count (one of --rows) at which the monitor meets pandas and evidently",
    )
    parser.add_argument("--evidently-path", help="a folder holding evidently (pip --target)")
    parser.add_argument(
        "--job-large-rows",
        type=int,
        default=100_000_000,
        help="the whole job once more at this many rows, in a fresh process (0: not run)",
    )
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)  # child of peak_memory_of
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--reference", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-repeats", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    logging.getLogger("diabetes_mlops").setLevel(logging.ERROR)  # the check's unknown-SEX note
    if args.memory_of == whole_job.JOB:
        return whole_job.job_once(args.input, args.store)
    if args.memory_of in (MONITOR, PANDAS_DRIFT, EVIDENTLY):
        evidently_available(args.evidently_path)
        return monitor_once(args.memory_of, args.input, args.reference, args.child_repeats)
    if args.memory_of:
        return score_once(args.memory_of, args.input)

    import mlflow
    import pyspark

    work = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    spark = start_spark()
    connect = start_connect(spark)
    sections = [args.only] if args.only else list(SECTIONS)
    try:
        scoring = measure_scoring(spark, args, work, connect) if "scoring" in sections else None
        monitor = measure_monitor(spark, args, work, connect) if "monitor" in sections else None
        job = measure_job(spark, args, work) if "job" in sections else None
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)

    versions = (pyspark.__version__, mlflow.__version__)
    kept = kept_sections(RESULTS.read_text() if RESULTS.exists() else "")
    parts = [
        render(args, *scoring, *versions) if scoring else kept["scoring"],
        render_monitor(args, monitor, versions[0]) if monitor else kept["monitor"],
        whole_job.render(job, args.repeats, machine(), versions[0]) if job else kept["job"],
    ]
    report = "\n".join(p.rstrip() + "\n" for p in parts if p.strip())
    print("\n" + report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report)
    print(f"written to {RESULTS.relative_to(REPO)}")
    return 0


def kept_sections(previous: str) -> dict[str, str]:
    """The results file's sections by name, to keep those this run does not measure."""
    head, _, rest = previous.partition(MONITOR_HEADING)
    monitor, _, job = rest.partition(whole_job.JOB_HEADING)
    return {
        "scoring": head,
        "monitor": MONITOR_HEADING + monitor if rest else "",
        "job": whole_job.JOB_HEADING + job if job else "",
    }


def measure_job(spark, args, work: Path) -> dict:
    """The whole batch job beside a bare scan and a copy, then the large run."""
    job_work = work / "job"
    job_work.mkdir()
    whole_job.register_model(REPO, job_work)
    found = whole_job.measure(spark, args.rows, args.repeats, job_work, make_input)
    if args.job_large_rows:
        whole_job.fresh_runs(found, args.job_large_rows, job_work, make_input, spark, run_child)
    return found


def measure_scoring(spark, args, work: Path, connect=None) -> tuple[dict, dict]:
    """The scoring paths at each row count: (median time and peak memory per path, baselines)."""
    from diabetes_mlops.spark.inputs import check_input, read_input

    def check(path: Path) -> None:
        """The batch step's input check (without the drift counts that ride along with it)."""
        check_input(read_input(spark, str(path), "parquet"), str(path))

    def scan(path: Path) -> None:
        spark.read.parquet(str(path)).write.format("noop").mode("overwrite").save()

    results: dict[tuple[str, int], tuple[float, int]] = {}
    baseline: dict[tuple[str, int], float] = {}
    for rows in args.rows:
        path = work / f"input_{rows}.parquet"
        make_input(spark, rows, path)
        paths = scoring_paths(spark, work / f"mlflow_{rows}")
        if connect is not None:
            paths[NATIVE_CONNECT] = native_connect(connect)
        baselines = {"scan": scan, "check": check}
        for run in (baselines | paths).values():
            run(path)  # warm-up: JIT, Python workers, model load
        times: dict[str, list[float]] = {name: [] for name in baselines | paths}
        for _ in range(args.repeats):  # round-robin, so machine noise hits every path alike
            for name, run in (baselines | paths).items():
                started = time.perf_counter()
                run(path)
                times[name].append(time.perf_counter() - started)
        for name in baselines:
            baseline[(name, rows)] = statistics.median(times[name])
        for name in paths:
            # Spark Connect's server is this process's Spark: no process tree of its own
            peak = None if name == NATIVE_CONNECT else peak_memory_of(name, path)
            results[(name, rows)] = (statistics.median(times[name]), peak)
            speed = rows / results[(name, rows)][0]
            print(f"{name:18} {rows:>11,} rows: {speed:>12,.0f} rows/s", flush=True)
    return results, baseline


def render(args, results, baseline, spark_version: str, mlflow_version: str) -> str:
    from diabetes_mlops.spark.scoring import UDF_COLUMNAR_INPUT

    small, large = min(args.rows), max(args.rows)
    lines = [
        "# Batch-scoring benchmark",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make bench` on {machine()},"
        f" Spark {spark_version} local[2], MLflow {mlflow_version}.",
        f"Median of {args.repeats} runs after a warm-up of every path, the paths taking turns"
        " (round-robin); each run reads Parquet and scores every row into Spark's noop sink"
        " (reference: pandas reads and scikit-learn predicts). Peak RSS: a fresh process tree"
        " (Python, JVM, Python workers) scoring the input once. The Spark paths score the"
        " features as the batch step does after its input check, which is timed apart."
        " spark_udf runs twice: with Spark's defaults, under which Spark 4.3 hands the Parquet"
        " scan's column batches straight to Python UDFs, and 'rows in', with that turned off"
        f" ({UDF_COLUMNAR_INPUT}=false), as the batch step's fallback runs it.",
        "",
        "| path | rows | median time | rows/s | peak RSS (process tree) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for (name, rows), (seconds, peak) in results.items():
        memory = (
            "— (the server is the classic run's Spark)"
            if peak is None
            else f"{peak / 2**30:.2f} GiB"
        )
        lines.append(f"| {name} | {rows:,} | {seconds:.2f} s | {rows / seconds:,.0f} | {memory} |")
    lines.append("")
    labels = {"scan": "Parquet scan alone", "check": "the batch step's input check (one pass)"}
    for (name, rows), seconds in baseline.items():
        lines.append(
            f"- {labels[name]}, {rows:,} rows: {seconds:.2f} s, {rows / seconds:,.0f} rows/s"
        )
    native_large = results[("native", large)][0]
    speedup = results[("spark_udf", large)][0] / native_large
    speedup_rows_in = results[("spark_udf, rows in", large)][0] / native_large
    ratio = native_large / results[("native", small)][0]
    checks = [
        (f"native at {large:,} rows ≥ 5,000,000 rows/s", large / native_large >= 5e6,
         f"{large / native_large:,.0f}"),
        (f"native ≥ 10× spark_udf (Spark's defaults) at {large:,} rows", speedup >= 10,
         f"{speedup:.1f}×"),
        (f"native time({large:,}) / time({small:,}) ≤ 12", ratio <= 12, f"{ratio:.1f}"),
    ]  # fmt: skip
    lines += ["", "| target | measured | met |", "| --- | ---: | --- |"]
    lines += [f"| {name} | {value} | {'yes' if ok else 'NO'} |" for name, ok, value in checks]
    lines += [
        "",
        f"Against spark_udf with rows in (this project's fallback, tuned past Spark's defaults)"
        f" native is {speedup_rows_in:.1f}× at {large:,} rows. Native runs at"
        f" {baseline[('scan', large)] / native_large:.0%} of the speed of a bare scan.",
    ]
    if (NATIVE_CONNECT, large) in results:
        through = results[(NATIVE_CONNECT, large)][0] / native_large
        lines += [
            "",
            f"{NATIVE_CONNECT}: the same native scoring through a Spark Connect session served by"
            f" the same local Spark (as serverless compute runs the steps): {through:.2f}× the"
            f" classic session's time at {large:,} rows, measured in the same round-robin.",
        ]
    return "\n".join(lines) + "\n"


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor() or "unknown",
    )  # fmt: skip
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory_gib:.0f} GiB RAM,"
        f" Python {platform.python_version()}"
    )


def render_monitor(args, found: dict, spark_version: str) -> str:
    times, fresh = found["times"], found["fresh"]
    lines = [
        MONITOR_HEADING,
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}, Spark {spark_version}"
        " local[2]. Input: the rows above, scored natively into Parquet as the batch step writes"
        " them (typed features, prediction, model_version, scored_at). Bare scan: the columns"
        " the monitor reads (features, prediction) driven through the noop sink. Monitor: its"
        " one pass, diabetes_mlops.spark.profile.batch_stats over a reference profile of the"
        " sample data (a count per bin edge of 9 features and the prediction, SEX counts, a"
        f" content fingerprint). Median of {args.repeats} runs after a warm-up, the two taking"
        " turns.",
        "",
        f"| rows | bare scan | monitor pass | monitor / scan | ≤ {MONITOR_TARGET}× |",
        "| ---: | ---: | ---: | ---: | --- |",
    ]
    for rows in args.rows:
        scan, monitor = times[(BARE_SCAN, rows)], times[(MONITOR, rows)]
        ratio = monitor / scan
        met = "yes" if ratio <= MONITOR_TARGET else "NO"
        lines.append(f"| {rows:,} | {scan:.2f} s | {monitor:.2f} s | {ratio:.2f}× | {met} |")
    through = [r for r in args.rows if (MONITOR_CONNECT, r) in times]
    if through:
        lines += [
            "",
            "The monitor pass through Spark Connect (a Connect session served by the same local"
            " Spark, as serverless runs the step), in the same round-robin:",
            "",
            "| rows | monitor, classic | monitor, Spark Connect | Connect / classic |",
            "| ---: | ---: | ---: | ---: |",
        ]
        for rows in through:
            classic, remote = times[(MONITOR, rows)], times[(MONITOR_CONNECT, rows)]
            lines.append(
                f"| {rows:,} | {classic:.2f} s | {remote:.2f} s | {remote / classic:.2f}× |"
            )
    labels = {
        MONITOR: "monitor (Spark local[2], batch_stats)",
        PANDAS_DRIFT: "pandas: read the Parquet, drift.profile_like + compare",
        EVIDENTLY: "evidently: read the Parquet, Report([DataDriftPreset()])",
    }
    missed = [r for r in args.rows if times[(MONITOR, r)] / times[(BARE_SCAN, r)] > MONITOR_TARGET]
    verdict = (
        "The target is not met: the pass costs a count per bin edge per row (~110 aggregates),"
        " which Spark's row-at-a-time generated code does at about this rate; the formulations"
        " tried and why this one was kept are in ml_ops/benchmarks/README.md."
        if missed
        else "The target is met at every row count."
    )
    lines += ["", verdict + " The two paths take turns, so both see the machine's load alike."]
    if "metrics" in found:
        cost, largest = found["metrics"], max(args.rows)
        share = cost["compare"] / times[(MONITOR, largest)]
        lines += [
            "",
            f"The drift metrics (PSI, Jensen-Shannon, total variation, L-infinity, KS and"
            f" Wasserstein per feature, chi-squared for SEX, missing and unknown shares:"
            f" {cost['metrics']} values) all come from the pass's counts, with no extra"
            f" aggregate: computing them takes {cost['compare'] * 1000:.1f} ms, {share:.3%} of"
            f" the pass at {largest:,} rows (target ≤ 5 %). The report's drift-over-time chart"
            f" of 30 batches takes {cost['chart']:.2f} s per monitor run, whatever the rows.",
        ]
    if fresh:
        lines += [
            "",
            f"What a user might run instead, at {args.pandas_rows:,} rows: each in a fresh"
            f" process, median of {args.repeats} passes inside it (reading included, start-up"
            " and imports not), peak RSS of its process tree (Python and, for Spark, the JVM).",
            "",
            "| path | median time | peak RSS (process tree) |",
            "| --- | ---: | ---: |",
        ]
        for name, (seconds, peak) in fresh.items():
            lines.append(f"| {labels[name]} | {seconds:.2f} s | {peak / 2**30:.2f} GiB |")
    if found["evidently"]:
        lines += [
            "",
            f"evidently {found['evidently']} is no dependency of this project: when this section"
            " was written, `pip install --dry-run evidently` changed no pinned package of"
            " requirements.txt but added 39 others, so it is imported from --evidently-path, a"
            " `pip install --target` folder. It computes other statistics than the PSI here (a"
            " drift test per column).",
        ]
    else:
        lines += [
            "",
            "evidently: not measured, it cannot be imported here (no dependency of this"
            " project; --evidently-path adds a folder that holds it).",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
