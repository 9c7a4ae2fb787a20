"""Monitor step: label-free drift of the batch that batch_score just wrote, and whether to retrain.

It reads the scored output (its manifest names the model version that scored it), counts the
batch over that version's reference profile in one Spark pass (diabetes_mlops.spark.profile),
compares the two (diabetes.drift: PSI per feature and for the prediction, the change in missing
rate, the share of unknown SEX codes), logs the metrics and an HTML drift report to MLflow, and
writes one row per feature and metric into the monitoring table, replacing that batch's rows if
it was monitored before. Its task value `retrain` is "true" when drift was found in
`drift_batches` of the last `drift_window` batches scored by the same model version, this one
included (a batch back to normal never retrains): the job's condition_task reads it and starts
the training job, whose validation gate still decides whether the new model is promoted.
"""

from __future__ import annotations

import logging
import math
from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import Annotated

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient
from pyspark.sql import SparkSession

from diabetes.contract import PREDICTION
from diabetes.drift import (
    DEFAULT_CHI2_PVALUE_THRESHOLD,
    DEFAULT_DECIDING,
    DEFAULT_DISTANCE_THRESHOLD,
    DEFAULT_MISSING_RATE_THRESHOLD,
    DEFAULT_PSI_THRESHOLD,
    DEFAULT_UNKNOWN_SHARE_THRESHOLD,
    METRICS,
    DriftMetric,
    Profile,
    Thresholds,
    compare,
    drifted,
    should_retrain,
)
from diabetes.drift_history import DEFAULT_LAST, batches_shown, history_figure, history_html
from diabetes.drift_report import drift_figure, drift_report_html, profiled_features
from diabetes_mlops.data import output
from diabetes_mlops.data.locations import Location, OutputFolder, locate
from diabetes_mlops.data.monitoring_table import COLUMNS, FORMATS, MonitoringTable
from diabetes_mlops.runtime import model_refs
from diabetes_mlops.runtime.context import SparkPath
from diabetes_mlops.runtime.errors import ParameterError
from diabetes_mlops.runtime.parameters import AtLeast, Between, Each, NotEmpty, OneOf, cross_check
from diabetes_mlops.runtime.stage_clock import StageClock
from diabetes_mlops.spark import profile
from diabetes_mlops.steps.common import ExperimentName, Registry
from diabetes_mlops.tracking import reference_profiles
from diabetes_mlops.tracking.registry import get_version
from diabetes_mlops.tracking.runs import (
    name_run,
    tracked_run,
    use_experiment,
    use_registry,
)

log = logging.getLogger(__name__)

NO_REFERENCE, EMPTY_BATCH = "no_reference", "empty_batch"
ALL_FEATURES = "*"  # the feature of a row about the whole batch
REPORT = "drift_report.html"
FIGURE = "drift/histograms.png"
HISTORY_FIGURE = "drift/over_time.png"


def monitor(
    spark: SparkSession,
    output_path: Annotated[SparkPath, OutputFolder()],
    monitoring_path: Annotated[SparkPath, OutputFolder()],
    experiment_name: ExperimentName,
    registry: Registry = "workspace",
    output_format: Annotated[str, OneOf(*output.OUTPUT_FORMATS)] = "parquet",
    monitoring_format: Annotated[str, OneOf(*FORMATS)] = "parquet",
    psi_threshold: Annotated[float, Between(0, 10)] = DEFAULT_PSI_THRESHOLD,
    missing_rate_threshold: Annotated[float, Between(0, 1)] = DEFAULT_MISSING_RATE_THRESHOLD,
    unknown_share_threshold: Annotated[float, Between(0, 1)] = DEFAULT_UNKNOWN_SHARE_THRESHOLD,
    js_distance_threshold: Annotated[float, Between(0, 1)] = DEFAULT_DISTANCE_THRESHOLD,
    tv_distance_threshold: Annotated[float, Between(0, 1)] = DEFAULT_DISTANCE_THRESHOLD,
    l_infinity_threshold: Annotated[float, Between(0, 1)] = DEFAULT_DISTANCE_THRESHOLD,
    ks_threshold: Annotated[float, Between(0, 1)] = DEFAULT_DISTANCE_THRESHOLD,
    wasserstein_threshold: Annotated[float, Between(0, 100)] = DEFAULT_DISTANCE_THRESHOLD,
    chi2_pvalue_threshold: Annotated[float, Between(0, 1)] = DEFAULT_CHI2_PVALUE_THRESHOLD,
    drift_metrics: Annotated[tuple[str, ...], NotEmpty(), Each(OneOf(*METRICS))] = (
        DEFAULT_DECIDING
    ),
    history_batches: Annotated[int, AtLeast(1)] = DEFAULT_LAST,
    drift_batches: Annotated[int, AtLeast(1)] = 2,
    drift_window: Annotated[int, AtLeast(1)] = 3,
    batch_id: str = "",
) -> dict[str, str]:
    """Measure the drift of the batch scored into `output_path` and append it to the monitoring
    table at `monitoring_path`; task value `retrain` says whether to retrain.

    The batch is identified by `batch_id`, or else by its content (the scored rows' features,
    whatever their order): monitoring the same batch again replaces its rows in the table.
    Every metric is reported against its threshold; those named in `drift_metrics` decide
    whether the batch drifted. The report charts the first of them across the last
    `history_batches` batches of the table."""
    _check_window(drift_batches, drift_window)
    scored = locate(output_path, "output_path")
    manifest = _scores_manifest(scored, output_path, output_format)
    table = MonitoringTable.prepare(
        monitoring_path,
        monitoring_format,
        spark=spark,
        others={"output_path": output_path, "input_path": manifest.get("input_path")},
    )
    model_name, version_number = manifest["model_name"], str(manifest["model_version"])
    thresholds = Thresholds(
        psi=psi_threshold,
        missing_rate=missing_rate_threshold,
        unknown_share=unknown_share_threshold,
        js_distance=js_distance_threshold,
        tv_distance=tv_distance_threshold,
        l_infinity=l_infinity_threshold,
        ks=ks_threshold,
        wasserstein=wasserstein_threshold,
        chi2_pvalue=chi2_pvalue_threshold,
        deciding=tuple(dict.fromkeys(drift_metrics)),
    )
    use_registry(registry, model_name)
    use_experiment(experiment_name)
    with tracked_run("monitor") as run:
        mlflow.set_tag("output_path", output_path)
        clock = StageClock()
        with clock.stage("reference"):
            version = get_version(MlflowClient(), model_name, version_number)
            reference = reference_profiles.load(version)
        with clock.stage("profile"):
            stats = _counted_while_scoring(manifest, reference, scored, output_format)
            if stats is None:
                frame = spark.read.format(output_format).load(scored.spark)
                stats = profile.batch_stats(frame, reference)
        mlflow.set_tag(
            "profile_source", "scoring pass" if stats.counted_while_scoring else "own pass"
        )
        batch = Batch(
            batch_id or stats.fingerprint,
            _scored_at(manifest),
            model_name,
            int(version_number),
            stats.rows,
            run.info.run_id,
        )
        mlflow.log_params(
            {
                "model_name": model_name,
                "model_version": version_number,
                "batch_id": batch.batch_id,
                "monitoring_path": monitoring_path,
                **{  # each Thresholds field is the parameter <field>_threshold
                    f"{f.name}_threshold": getattr(thresholds, f.name)
                    for f in fields(Thresholds)
                    if f.name != "deciding"
                },
                "drift_metrics": ",".join(thresholds.deciding),
                "drift_rule": f"{drift_batches} of {drift_window}",
            }
        )
        mlflow.log_metric("rows", stats.rows)
        if reference is None or stats.rows == 0:
            status = NO_REFERENCE if reference is None else EMPTY_BATCH
            _warn_unmonitored(status, batch)
            rows = batch.rows_of([DriftMetric(ALL_FEATURES, status, math.nan, math.nan, False)])
            with clock.stage("table"):
                table.write_batch(batch.batch_id, rows)
            mlflow.log_metrics(clock.metrics())
            mlflow.set_tags({"drift_status": status, "retrain": "false"})
            name_run(run, f"v{version_number} batch {batch.batch_id[:16]}: {status}")
            return batch.outputs(retrain=False, drift=False, status=status)
        with clock.stage("compare"):
            metrics = compare(reference, stats.profile, thresholds)
            found = drifted(metrics)
            history = table.history()
            if history.empty:
                _say_if_history_restarts(monitoring_path, run.info.run_id)
            recent = _recent_drift(history, batch, drift_window) + [found]
            # A batch back to normal never starts a retraining, whatever came before it.
            retrain = found and should_retrain(recent, drift_batches, drift_window)
        rows = batch.rows_of(metrics, stats.labels)
        with clock.stage("report"):
            _log_metrics(metrics, stats.labels, found, retrain)
            over_time = _history_with(history, rows)
            _log_report(reference, stats.profile, metrics, batch, over_time, thresholds,
                        history_batches)  # fmt: skip
        with clock.stage("table"):
            table.write_batch(batch.batch_id, rows)
        mlflow.log_metrics(clock.metrics())
        mlflow.set_tags(
            {"drift_status": "drift" if found else "stable", "retrain": str(retrain).lower()}
        )
        verdict = ("drift, retrain" if retrain else "drift") if found else "stable"
        name_run(run, f"v{version_number} batch {batch.batch_id[:16]}: {verdict}")
        _log_verdict(metrics, batch, recent, drift_batches, drift_window, retrain)
    return batch.outputs(retrain=retrain, drift=found, status="drift" if found else "stable")


class Batch:
    """What identifies a monitored batch, and how its rows look in the monitoring table."""

    def __init__(self, batch_id, batch_time, model_name, model_version, rows, run_id) -> None:
        self.batch_id = batch_id
        self.batch_time = batch_time
        self.model_name = model_name
        self.model_version = model_version
        self.rows = rows
        self.run_id = run_id

    def rows_of(
        self, metrics: list[DriftMetric], labels: dict[str, float] | None = None
    ) -> pd.DataFrame:
        """The table rows: one per drift metric, and rmse/mae of the prediction when the
        scored rows carried labels (never drift: labels are reported, not judged)."""
        found = drifted(metrics)
        label_rows = [
            DriftMetric(PREDICTION, name, float(value), math.nan, False)
            for name, value in (labels or {}).items()
            if name in (profile.RMSE, profile.MAE)
        ]
        monitored_at = pd.Timestamp(datetime.now(UTC))
        records = [
            {
                "batch_id": self.batch_id,
                "batch_time": self.batch_time,
                "monitored_at": monitored_at,
                "model_name": self.model_name,
                "model_version": self.model_version,
                "feature": m.feature,
                "metric": m.metric,
                "value": None if math.isnan(m.value) else m.value,
                "threshold": None if math.isnan(m.threshold) else m.threshold,
                "drifted": m.decides_drift,  # over a threshold that decides
                "batch_drifted": found,
                "rows": self.rows,
                "run_id": self.run_id,
            }
            for m in [*metrics, *label_rows]
        ]
        return pd.DataFrame.from_records(records, columns=list(COLUMNS))

    def outputs(self, retrain: bool, drift: bool, status: str) -> dict[str, str]:
        return {
            "retrain": str(retrain).lower(),
            "drift": str(drift).lower(),
            "drift_status": status,
            "batch_id": self.batch_id,
            "model_version": str(self.model_version),
        }


@cross_check
def _check_window(drift_batches: int, drift_window: int) -> None:
    """N of the last M batches: N cannot exceed M (judged before the job starts as well)."""
    if drift_batches > drift_window:
        raise ParameterError(
            f"parameter 'drift_batches': {drift_batches} drifted batches cannot be found among"
            f" the last drift_window={drift_window}"
        )


def _scores_manifest(scored: Location, given: str, fmt: str) -> dict:
    """The manifest of a batch-scoring output of this project, in the format expected."""
    manifest = output.read_manifest(scored.path)
    if manifest is None or manifest.get("kind", "scores") != "scores":
        raise ParameterError(
            f"parameter 'output_path': {given!r} holds no scores written by batch_score (no"
            " output manifest): run batch_score first, or point output_path at its output"
        )
    if manifest.get("format") != fmt:
        raise ParameterError(
            f"parameter 'output_format': {given!r} holds {manifest.get('format')} scores,"
            f" not {fmt}"
        )
    if not model_refs.is_version_number(str(manifest.get("model_version", ""))) or not manifest.get(
        "model_name"
    ):
        raise ParameterError(
            f"parameter 'output_path': the manifest of {given!r} names no model version"
        )
    return manifest


def _counted_while_scoring(
    manifest: dict, reference: Profile | None, scored: Location, fmt: str
) -> profile.BatchStats | None:
    """The counts batch_score made of this output while it checked its input (one read of the
    data for the whole job), when they still describe it: over this reference's bins, and the
    output's data unchanged since (same Delta version, or the same files of the same sizes).
    None otherwise, and the monitor counts the output itself."""
    recorded = manifest.get(profile.MANIFEST_FIELD)
    if recorded is None or reference is None:
        return None
    try:
        stats = profile.BatchStats.from_dict(recorded)
    except ValueError as exc:
        log.warning("output manifest: %s; counting the output again", exc)
        return None
    if stats.profile is None or stats.profile.bins() != reference.bins():
        log.info("the output's counts are over other bins than this reference's: counting again")
        return None
    try:
        unchanged = manifest.get("content") == output.content_of(scored.path, fmt)
    except OSError:
        unchanged = False
    if not unchanged:
        log.warning(
            "the output's data changed since batch_score wrote it (files or table version):"
            " counting it again"
        )
        return None
    return replace(stats, counted_while_scoring=True)


def _scored_at(manifest: dict) -> pd.Timestamp:
    written = manifest.get("written_at")
    return pd.Timestamp(written) if written else pd.Timestamp(datetime.now(UTC))


HISTORY_TAG = "monitoring_history"


def _say_if_history_restarts(monitoring_path: str, run_id: str) -> None:
    """An empty monitoring table that earlier monitor runs of this experiment wrote to was
    deleted or moved: the drift rule counts from this batch on. Said in the log and as a tag
    (the table itself is not rebuilt from those runs: a run records its metrics, not the
    table's rows, so a rebuilt history could differ from the lost one)."""
    quote = "'" if "'" not in monitoring_path else '"'
    if quote in monitoring_path:
        return  # a path holding both quotes cannot be searched for; nothing to say
    same_table = f"params.monitoring_path = {quote}{monitoring_path}{quote}"
    runs = mlflow.search_runs(
        filter_string=f"tags.step = 'monitor' and {same_table}",
        max_results=5,
        output_format="list",
    )
    earlier = [r for r in runs if r.info.run_id != run_id]
    if earlier:
        log.warning(
            "monitoring table %s holds no rows, though earlier monitor runs wrote to it (run %s"
            " and more): its drift history restarts with this batch",
            monitoring_path,
            earlier[0].info.run_id,
        )
        mlflow.set_tag(HISTORY_TAG, f"restarted: table empty after run {earlier[0].info.run_id}")


def _recent_drift(history: pd.DataFrame, batch: Batch, window: int) -> list[bool]:
    """Whether each of the (window - 1) batches before this one drifted, oldest first: batches
    of the same model version, other than this one, by the time they were scored."""
    same = history[
        (history["model_name"] == batch.model_name)
        & (history["model_version"] == batch.model_version)
        & (history["batch_id"] != batch.batch_id)
    ]
    per_batch = same.groupby("batch_id", sort=False).agg(
        batch_time=("batch_time", "max"), batch_drifted=("batch_drifted", "max")
    )
    earlier = per_batch[per_batch["batch_time"] <= batch.batch_time].sort_values("batch_time")
    return [bool(d) for d in earlier["batch_drifted"].tail(window - 1)]


def _warn_unmonitored(status: str, batch: Batch) -> None:
    if status == NO_REFERENCE:
        log.warning(
            "no reference: model %s version %s has no reference profile (registered before"
            " drift monitoring); batch %s is recorded without drift metrics and never triggers"
            " retraining. Train a new version to monitor this model.",
            batch.model_name,
            batch.model_version,
            batch.batch_id,
        )
    else:
        log.warning("batch %s has no scored rows: nothing to compare", batch.batch_id)


def _history_with(history: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """The table's rows as they will be once this batch's are written (its old ones replaced)."""
    earlier = history[~history["batch_id"].isin(set(rows["batch_id"]))]
    return pd.concat([earlier, rows], ignore_index=True) if not earlier.empty else rows


def _log_metrics(metrics, labels: dict[str, float], found: bool, retrain: bool) -> None:
    values = {f"{m.metric}_{m.feature}": m.value for m in metrics if not math.isnan(m.value)}
    values.update({name: value for name, value in labels.items()})
    values["drifted_metrics"] = sum(m.decides_drift for m in metrics)
    values["batch_drifted"] = int(found)
    values["retrain"] = int(retrain)
    mlflow.log_metrics(values)


def _log_report(
    reference: Profile,
    batch: Profile,
    metrics,
    info: Batch,
    history: pd.DataFrame,
    thresholds: Thresholds,
    last: int,
) -> None:
    """The report page (with the chart of the first deciding metric over the last batches), and
    the two figures on their own."""
    details = {
        "model": f"{info.model_name} version {info.model_version}",
        "batch": info.batch_id,
        "scored at": str(info.batch_time),
        "rows": str(info.rows),
        "drift decided by": ", ".join(thresholds.deciding),
    }
    charted = thresholds.deciding[0]
    over_time = history_figure(history, charted, profiled_features(reference), last)
    section = history_html(over_time, charted, batches_shown(history, last))
    title = f"Drift of batch {info.batch_id} against the training data"
    page = drift_report_html(reference, batch, metrics, title, details, extra_html=section)
    mlflow.log_text(page, REPORT)
    mlflow.log_figure(drift_figure(reference, batch, metrics), FIGURE)
    if over_time is not None:
        mlflow.log_figure(over_time, HISTORY_FIGURE)


def _log_verdict(metrics, batch: Batch, recent, needed: int, window: int, retrain: bool) -> None:
    over = [m for m in metrics if m.decides_drift]
    what = (
        "drift in "
        + ", ".join(f"{m.feature} {m.metric} {m.value:.3g} > {m.threshold:g}" for m in over)
        if over
        else "no drift"
    )
    log.info(
        "batch %s (%d rows, %s version %s): %s; drift in %d of the last %d batch(es) of this"
        " version, %d needed: retrain=%s",
        batch.batch_id,
        batch.rows,
        batch.model_name,
        batch.model_version,
        what,
        sum(recent[-window:]),
        min(len(recent), window),
        needed,
        str(retrain).lower(),
    )
