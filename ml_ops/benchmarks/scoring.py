"""Benchmark: batch-scoring throughput on Spark local[2], four ways, side by side in one run.

- native: the model as one Spark column expression (diabetes_mlops.spark_scoring)
- spark_udf: mlflow.pyfunc.spark_udf, what other templates use, with Spark's defaults
- spark_udf, rows in: the same, as the batch step's fallback runs it (rows_into_python_udfs)
- pandas_udf: a plain pandas_udf calling the scikit-learn pipeline, Spark's defaults
- reference: one Python process, pandas + the scikit-learn pipeline, no Spark

Input: N generated rows in Parquet, each column uniform within the sample data's range at its
precision, 2 % missing numbers, 2 % unknown and 2 % missing SEX. Each measurement reads
the Parquet, scores every row and drives the result through Spark's `noop` sink (the reference:
reads with pandas and predicts). The Spark paths get the features as the batch step gives them,
after its input check (timed apart, as are a bare scan of the input). Rows/s is the median of
--repeats runs; peak memory is the RSS of this process and all its children (JVM, Python workers)
while the path runs.

    python ml_ops/benchmarks/scoring.py --rows 1000000 10000000 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd  # at module level: pandas_udf resolves the type hints from here

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "ml_ops" / "benchmarks" / "results" / "scoring.md"


def tree_rss(root: int) -> int:
    """Resident bytes of `root` and its descendants, from /proc."""
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
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


class PeakMemory:
    """Samples the process tree's RSS every 0.2 s while in use."""

    def __enter__(self) -> PeakMemory:
        self.peak = tree_rss(os.getpid())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, tree_rss(os.getpid()))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# Each column drawn uniformly within the sample data's range, at the sample data's precision
# (ages in years, S5 to 4 decimals...), so Parquet encodes it as it would encode real records.
RANGES = {
    "AGE": (19, 79, 0), "BMI": (18.0, 42.2, 1), "BP": (62, 133, 0), "S1": (97, 301, 0),
    "S2": (41.6, 242.4, 1), "S3": (22, 99, 0), "S4": (2.0, 9.09, 2), "S5": (3.2581, 6.107, 4),
    "S6": (58, 124, 0),
}  # fmt: skip


def make_input(spark, rows: int, path: Path) -> None:
    from pyspark.sql import functions as F

    base = spark.range(rows, numPartitions=max(2, rows // 1_000_000))
    columns = []
    for index, (column, (low, high, digits)) in enumerate(RANGES.items()):
        value = F.round(F.rand(seed=index) * (high - low) + low, digits).cast("double")
        columns.append(F.when(F.rand(seed=100 + index) < 0.02, None).otherwise(value).alias(column))
    sex = F.rand(seed=99)
    columns.append(
        F.when(sex < 0.48, "Female").when(sex < 0.96, "Male").when(sex < 0.98, "Other").alias("SEX")
    )
    base.select(*columns).write.mode("overwrite").parquet(str(path))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    import mlflow
    import mlflow.sklearn
    import pyspark
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    from diabetes.linear_form import linear_form
    from diabetes.schema import FEATURES, NUMERIC_FEATURES, read_dataset
    from diabetes.training import train_model
    from diabetes_mlops.spark_scoring import (
        check_input,
        prediction_column,
        rows_into_python_udfs,
        typed_features,
    )
    from diabetes_mlops.steps.train import model_signature

    work = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
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
    model = train_model(read_dataset(REPO / "ml_data" / "data_raw.csv", "training")).model
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

    def check(path: Path) -> bool:
        """The batch step's input check; says whether SEX needs cleaning before scoring."""
        return check_input(spark.read.parquet(str(path)), str(path)).sex_needs_cleaning

    def spark_path(path: Path, score) -> None:
        frame = typed_features(spark.read.parquet(str(path)), clean_text=needs_cleaning[path])
        frame.withColumn("prediction", score(frame)).write.format("noop").mode("overwrite").save()

    def rows_in(path: Path, score) -> None:
        with rows_into_python_udfs(spark):
            spark_path(path, score)

    def scan(path: Path) -> None:
        spark.read.parquet(str(path)).write.format("noop").mode("overwrite").save()

    features = [F.col(c) for c in FEATURES]
    paths = {
        "native": lambda p: spark_path(p, lambda f: prediction_column(form)),
        "spark_udf": lambda p: spark_path(p, lambda f: spark_udf(F.struct(*features))),
        "spark_udf, rows in": lambda p: rows_in(p, lambda f: spark_udf(F.struct(*features))),
        "pandas_udf": lambda p: spark_path(p, lambda f: sklearn_udf(F.struct(*features))),
        "reference": lambda p: model.predict(
            pd.read_parquet(p).astype({c: "float64" for c in NUMERIC_FEATURES})[list(FEATURES)]
        ),
    }
    baselines = {"scan": scan, "check": check}
    results: dict[tuple[str, int], tuple[float, int]] = {}
    baseline: dict[tuple[str, int], float] = {}
    needs_cleaning: dict[Path, bool] = {}
    try:
        for rows in args.rows:
            path = work / f"input_{rows}.parquet"
            make_input(spark, rows, path)
            needs_cleaning[path] = check(path)
            for run in (paths | baselines).values():
                run(path)  # warm-up: JIT, Python workers, model load
            times: dict[str, list[float]] = {name: [] for name in paths | baselines}
            peaks: dict[str, int] = dict.fromkeys(paths, 0)
            for _ in range(args.repeats):  # round-robin, so machine noise hits every path alike
                for name, run in baselines.items():
                    started = time.perf_counter()
                    run(path)
                    times[name].append(time.perf_counter() - started)
                for name, run in paths.items():
                    with PeakMemory() as memory:
                        started = time.perf_counter()
                        run(path)
                        times[name].append(time.perf_counter() - started)
                    peaks[name] = max(peaks[name], memory.peak)
            for name in baselines:
                baseline[(name, rows)] = statistics.median(times[name])
            for name in paths:
                results[(name, rows)] = (statistics.median(times[name]), peaks[name])
                speed = rows / results[(name, rows)][0]
                print(f"{name:10} {rows:>11,} rows: {speed:>12,.0f} rows/s", flush=True)
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)

    report = render(args, results, baseline, pyspark.__version__, mlflow.__version__)
    print("\n" + report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report)
    print(f"written to {RESULTS.relative_to(REPO)}")
    return 0


def render(args, results, baseline, spark_version: str, mlflow_version: str) -> str:
    from diabetes_mlops.spark_scoring import UDF_COLUMNAR_INPUT

    small, large = min(args.rows), max(args.rows)
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor() or "unknown",
    )  # fmt: skip
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    lines = [
        "# Batch-scoring benchmark",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make bench` on {os.cpu_count()} cores"
        f" ({cpu}), {memory_gib:.0f} GiB RAM, Python {platform.python_version()},"
        f" Spark {spark_version} local[2], MLflow {mlflow_version}.",
        f"Median of {args.repeats} runs after a warm-up of every path, the paths taking turns"
        " (round-robin); each run reads Parquet and scores every row into Spark's noop sink"
        " (reference: pandas reads and scikit-learn predicts). The Spark paths score the"
        " features as the batch step does after its input check, which is timed apart."
        " spark_udf runs twice: with Spark's defaults, under which Spark 4.3 hands the Parquet"
        " scan's column batches straight to Python UDFs, and 'rows in', with that turned off"
        f" ({UDF_COLUMNAR_INPUT}=false), as the batch step's fallback runs it.",
        "",
        "| path | rows | median time | rows/s | peak RSS (process tree) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for (name, rows), (seconds, peak) in results.items():
        speed, gib = rows / seconds, peak / 2**30
        lines.append(f"| {name} | {rows:,} | {seconds:.2f} s | {speed:,.0f} | {gib:.2f} GiB |")
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
        (f"native ≥ 10× spark_udf at {large:,} rows", speedup >= 10, f"{speedup:.1f}×"),
        (f"native ≥ 10× spark_udf, rows in, at {large:,} rows", speedup_rows_in >= 10,
         f"{speedup_rows_in:.1f}×"),
        (f"native time({large:,}) / time({small:,}) ≤ 12", ratio <= 12, f"{ratio:.1f}"),
    ]  # fmt: skip
    lines += ["", "| target | measured | met |", "| --- | ---: | --- |"]
    lines += [f"| {name} | {value} | {'yes' if ok else 'NO'} |" for name, ok, value in checks]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
