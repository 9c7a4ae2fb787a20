"""Batch-score step: load the champion (or a given version), score the input, write it atomically.

engine=spark (the default) reads CSV, Parquet, Delta or a table with Spark, checks it in one pass,
scores with a native Spark expression (spark_udf for models that do not translate) and writes
Parquet or Delta. engine=pandas scores a small CSV file in this process, without Spark.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from diabetes.batch_check import check_frame
from diabetes.contract import (
    BAD_ROW_POLICIES,
    DEFAULT_MAX_UNKNOWN_SHARE,
    FAIL,
    MODEL_VERSION,
    PREDICTION,
    QUARANTINE,
    SCORED_AT,
)
from diabetes.drift import ProfileError
from diabetes.linear_form import NotLinear, linear_form
from diabetes.reading import read_csv_rows
from diabetes.scoring import add_predictions
from diabetes_mlops.data import output
from diabetes_mlops.data.locations import OutputFolder
from diabetes_mlops.runtime.context import SparkPath, fuse_path
from diabetes_mlops.runtime.errors import ParameterError
from diabetes_mlops.runtime.parameters import Between, OneOf, cross_check
from diabetes_mlops.runtime.stage_clock import StageClock
from diabetes_mlops.spark import inputs, profile, scoring
from diabetes_mlops.steps.common import ExperimentName, ModelName, ModelRef, Registry
from diabetes_mlops.tracking import reference_profiles
from diabetes_mlops.tracking.registry import CHAMPION, get_version, load_version, version_uri
from diabetes_mlops.tracking.runs import (
    name_run,
    run_is_over,
    tracked_run,
    use_experiment,
    use_registry,
)

log = logging.getLogger(__name__)

ENGINES = tuple(output.FORMATS)  # the engines that write an output
RIDER_PREFIX = "monitor_"


def batch_score(
    spark: SparkSession,
    input_path: SparkPath,
    output_path: Annotated[SparkPath, OutputFolder()],
    model_name: ModelName,
    experiment_name: ExperimentName,
    registry: Registry = "workspace",
    model_version: ModelRef = CHAMPION,
    input_format: Annotated[str, OneOf(*inputs.INPUT_FORMATS)] = "csv",
    output_format: Annotated[str, OneOf(*output.OUTPUT_FORMATS)] = "parquet",
    engine: Annotated[str, OneOf(*ENGINES)] = "spark",
    bad_rows: Annotated[str, OneOf(*BAD_ROW_POLICIES)] = FAIL,
    max_unknown_share: Annotated[float, Between(0, 1)] = DEFAULT_MAX_UNKNOWN_SHARE,
    quarantine_path: Annotated[SparkPath | None, OutputFolder()] = None,
) -> dict[str, str]:
    """Score `input_path` into `output_path`: the input columns plus prediction, model_version and
    scored_at. `model_version` is a number or an alias.

    Rows that break the data contract (diabetes.contract) fail the run (`bad_rows=fail`), or go
    to `quarantine_path` (default `<output_path>_quarantine`) with their reason while the rest
    are scored (`bad_rows=quarantine`). SEX codes the model does not know are scored as no SEX
    term while they are at most `max_unknown_share` of the rows (policy fail)."""
    _check_choices(engine, input_format, output_format)
    source = None if input_format == "table" else input_path
    quarantine = None
    if bad_rows == QUARANTINE:
        quarantine_path = quarantine_path or default_quarantine_path(output_path)
        quarantine = output.prepare_output(
            quarantine_path,
            output_format,
            engine=engine,
            spark=spark,
            parameter="quarantine_path",
            others={"input_path": source, "output_path": output_path},
        )
    target = output.prepare_output(
        output_path, output_format, engine=engine, spark=spark, others={"input_path": source}
    )
    use_registry(registry, model_name)
    use_experiment(experiment_name)
    with tracked_run("batch_score") as run:
        target.begin(run.info.run_id, run_is_over)
        if quarantine is not None:
            quarantine.begin(run.info.run_id, run_is_over)
        mlflow.set_tags({"input_path": input_path, "engine": engine})
        mlflow.log_params(
            {"model_name": model_name, "model_ref": model_version, "bad_rows": bad_rows}
        )
        policy = Policy(bad_rows, max_unknown_share, quarantine, StageClock())
        score = _score_pandas if engine == "pandas" else _score_spark
        try:
            rows_in, rows_out, quarantined, version, path = score(
                spark, input_path, target, model_name, model_version, input_format, policy
            )
        except BaseException:  # a failed run leaves no staging folder of either output
            for one in (target, quarantine):
                if one is not None:
                    one.discard()
            raise
        mlflow.log_params(
            {"model_version": version, "output_path": output_path, "scoring_path": path}
        )
        mlflow.log_metrics(
            {"rows_in": rows_in, "rows_out": rows_out, "rows_quarantined": quarantined}
            | policy.clock.metrics()
        )
        name_run(run, f"v{version}: {rows_out} rows into {output_path}")
        log.info(
            "scored %d rows with %s version %s (%s) into %s%s",
            rows_out,
            model_name,
            version,
            path,
            output_path,
            f"; {quarantined} rows quarantined into {quarantine_path}" if quarantine else "",
        )
    return {"output_path": output_path, "rows": str(rows_out), "model_version": version}


def default_quarantine_path(output_path: str) -> str:
    """Beside the output: `<output_path>_quarantine`."""
    return f"{output_path.rstrip('/')}_quarantine"


@dataclass(frozen=True)
class Policy:
    """What to do with rows that break the data contract."""

    bad_rows: str
    max_unknown_share: float
    quarantine: output.OutputTarget | None  # where bad rows go under bad_rows=quarantine
    clock: StageClock  # where the run's time goes, logged as seconds_<stage> metrics


@cross_check
def _check_choices(engine: str, input_format: str, output_format: str) -> None:
    """The rule between parameters (each one's own rule is on the signature), judged before the
    job starts as well: the pandas engine reads a CSV file and writes parquet or csv."""
    if engine == "pandas" and input_format != "csv":
        raise ParameterError(
            f"parameter 'input_format': engine=pandas reads csv only, got {input_format!r}"
        )
    output.check_format(engine, output_format)


def _score_spark(spark, input_path, target, model_name, model_ref, input_format, policy):
    clock = policy.clock
    with clock.stage("read_check"):
        frame = inputs.read_input(spark, input_path, input_format)
    with clock.stage("model"):
        version = get_version(MlflowClient(), model_name, model_ref)
        uri = version_uri(version)
        model = load_version(version)
        riders = _profile_riders(frame, version, model, policy)
    with clock.stage("read_check"):
        check = inputs.check_input(
            frame,
            input_path,
            policy.bad_rows,
            policy.max_unknown_share,
            riders=riders.expressions if riders else (),
        )
    scored, path = scoring.predict(inputs.typed_features(check.valid), model, uri)
    scored = scored.withColumn(MODEL_VERSION, F.lit(int(version.version))).withColumn(
        SCORED_AT, F.lit(datetime.now(UTC))
    )
    with clock.stage("score_write"), scoring.rows_into_python_udfs(spark):
        rows_out = target.write_spark(scored)
    if policy.quarantine is not None:
        with clock.stage("quarantine_write"):
            policy.quarantine.write_spark(check.quarantined)
    fields = _manifest_fields(input_path, version, path)
    if riders is not None:  # the batch's drift profile, so the monitor need not read it again
        fields[profile.MANIFEST_FIELD] = riders.decode(check.riders).to_dict()
    with clock.stage("publish"):
        _publish(target, policy, fields)
    return check.rows, rows_out, check.quarantined_rows, str(version.version), path


def _profile_riders(frame, version, model, policy: Policy) -> profile.StatsQuery | None:
    """The monitor's counts of this batch's output, to ride along with the input check's pass
    (over the SQL that writes the output: typed features and the native prediction). None when
    they cannot: bad rows quarantined (the rows written are known only after the check), a
    model that does not translate into SQL, or a version with no reference profile."""
    if policy.bad_rows != FAIL:
        return None
    try:
        form = linear_form(model)
    except NotLinear:
        return None
    try:
        reference = reference_profiles.load(version)
    except ProfileError as exc:  # the monitor says so in its own run; scoring goes on
        log.warning("no drift profile while scoring: %s", exc)
        return None
    if reference is None:
        return None
    typed = inputs.typed_sql(frame)
    columns = {**typed, PREDICTION: scoring.prediction_sql(form, typed)}
    return profile.StatsQuery(frame, reference, columns=columns, prefix=RIDER_PREFIX)


def _score_pandas(spark, input_path, target, model_name, model_ref, input_format, policy):
    source = fuse_path(input_path)
    frame, malformed = read_csv_rows(source)
    checked = check_frame(
        frame, source, "scoring", policy.bad_rows, policy.max_unknown_share, malformed
    )
    version = get_version(MlflowClient(), model_name, model_ref)
    scored = add_predictions(load_version(version), checked.valid)
    scored[MODEL_VERSION] = int(version.version)
    scored[SCORED_AT] = pd.Timestamp.now(tz="UTC")
    target.write_pandas(scored)
    if policy.quarantine is not None:
        policy.quarantine.write_pandas(checked.quarantined)
    _publish(target, policy, _manifest_fields(input_path, version, "pandas"))
    return checked.rows_in, len(scored), len(checked.quarantined), str(version.version), "pandas"


def _publish(target: output.OutputTarget, policy: Policy, fields: dict[str, str]) -> None:
    """Stage every output completely, then swap them in back to back: a failure while writing
    or staging either one leaves both previous outputs as they were. Both manifests name this
    MLflow run, which is how a reader tells an output and its quarantine belong together."""
    outputs = [target] if policy.quarantine is None else [policy.quarantine, target]
    try:
        for one in outputs:
            one.stage({**fields, "kind": "quarantine" if one is policy.quarantine else "scores"})
    except BaseException:
        for one in outputs:
            one.discard()
        raise
    for one in outputs:
        one.publish()


def _manifest_fields(input_path, version, scoring_path) -> dict[str, str]:
    """What the output's manifest records besides rows, format, engine, run and time."""
    return {
        "model_name": version.name,
        "model_version": str(version.version),
        "input_path": input_path,
        "scoring_path": scoring_path,
    }
