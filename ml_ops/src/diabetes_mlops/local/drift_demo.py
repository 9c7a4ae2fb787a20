"""`make demo-drift`: the whole monitoring loop on this machine, through the job specs.

1. train (the training job: a champion with a reference profile),
2. score three batches with the batch-scoring job: the sample batch, then two batches drifted
   from it (BMI scaled, S5 shifted; diabetes.sample_data.drifted_batch),
3. after each, the job's own monitor task decides, and its condition_task starts the training
   job through its run_job_task only when drift persists (2 of the last 3 batches by default),
4. print the monitoring table and the retraining job's validation verdict,
5. say where the last batch's report is: its chart shows each feature's drift batch after batch.

Nothing here decides anything: the specs, the steps and the local runner do, exactly as the
scheduled job would on Databricks.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient
from mlflow.utils.file_utils import local_file_uri_to_path

from diabetes.sample_data import BATCH_FILE, RAW_FILE, label_arrivals, write_drifted_batches
from diabetes_mlops.data.monitoring_table import MonitoringTable
from diabetes_mlops.jobs.specs import SPECS_FOLDER
from diabetes_mlops.jobs.targets import LOCAL, load_target
from diabetes_mlops.local.runner import JobRun, LocalRunner
from diabetes_mlops.runtime.errors import UserError
from diabetes_mlops.spark.profile import MAE, RMSE
from diabetes_mlops.steps.monitor import HISTORY_FIGURE, REPORT
from diabetes_mlops.tracking.registry import VALIDATION_REASON, VALIDATION_STATUS

DATA = "/Volumes/main/diabetes/data"  # where the local target's jobs read (under local_root)
TRAINING_SPEC = f"{SPECS_FOLDER}/diabetes_model_training.json"
SCORING_SPEC = f"{SPECS_FOLDER}/diabetes_batch_scoring.json"


# The draw of the rows whose labels arrive (apart from the scored batches' draws).
LABELS_SEED = 1000


class DemoError(UserError, RuntimeError):
    """A job of the demo failed; the runner has printed why."""


@dataclass
class BatchOutcome:
    label: str
    job: JobRun
    drift: bool
    retrain: bool
    retrain_job: JobRun | None


def run_demo(
    repo: Path,
    local_root: Path,
    report: Callable[[str], None] = print,
    tracking_uri: str | None = None,
) -> list[BatchOutcome]:
    """Train, then score the sample batch and two drifted ones; return what each batch did.
    MLflow: `tracking_uri`, else the local runner's (MLFLOW_TRACKING_URI or the local store)."""
    repo, local_root = Path(repo).absolute(), Path(local_root).absolute()
    data = local_root / DATA.lstrip("/")
    _copy_sample_data(repo, data)
    drifted = write_drifted_batches(data / "drift", count=2)
    defaults = load_target(LOCAL, repo / "deploy.yml").parameters
    runner = LocalRunner(local_root, tracking_uri, report=lambda line: report(f"    {line}"))

    report("== 1. train: a champion with a reference profile of its training data")
    _succeeded(runner.run(repo / TRAINING_SPEC, {}, None, defaults))
    batches = [("sample batch (as trained on)", f"{DATA}/{BATCH_FILE}")] + [
        (f"drifted batch {i} (BMI x1.3, S5 +0.6)", f"{DATA}/drift/{path.name}")
        for i, path in enumerate(drifted, start=1)
    ]
    outcomes = []
    for number, (label, path) in enumerate(batches, start=2):
        report(f"== {number}. score and monitor the {label}: {path}")
        job = _succeeded(runner.run(repo / SCORING_SPEC, {"input_path": path}, None, defaults))
        outcome = _outcome(label, job)
        outcomes.append(outcome)
        report(f"   -> {_summary(outcome)}")
        if number == 3:  # after the first drifted batch, outcomes of that population arrive
            added = label_arrivals(data / RAW_FILE, seed=LABELS_SEED)
            report(f"   labels arrived: {added} rows of the drifted population added to {RAW_FILE}")
    report("")
    monitoring = local_root / defaults["monitoring_path"].lstrip("/")
    report(drift_table(MonitoringTable.prepare(str(monitoring), "parquet")))
    client = MlflowClient(tracking_uri=runner.tracking_uri, registry_uri=runner.tracking_uri)
    _report_retraining(outcomes, defaults["model_name"], client, report)
    _report_chart(client, defaults["experiment_name"], report)
    return outcomes


def _report_chart(client: MlflowClient, experiment_name: str, report) -> None:
    """Where the last monitor run's report is: its page charts drift over the batches so far."""
    experiment = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs(
        [experiment.experiment_id],
        "tags.step = 'monitor'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return
    run = runs[0]
    page = Path(local_file_uri_to_path(run.info.artifact_uri)) / REPORT
    report(
        f"drift over time, batch after batch: open {page.as_uri()} in a browser (the report of"
        f" the last batch; the chart alone is {HISTORY_FIGURE} of MLflow run {run.info.run_id})"
    )


def _copy_sample_data(repo: Path, data: Path) -> None:
    data.mkdir(parents=True, exist_ok=True)
    for name in (RAW_FILE, BATCH_FILE):
        if not (data / name).exists():
            shutil.copyfile(repo / "ml_data" / name, data / name)


def _succeeded(job: JobRun) -> JobRun:
    if not job.succeeded:
        failed = [t for t in job.tasks if t.error is not None]
        why = "; ".join(f"{t.key}: {t.error_line}" for t in failed) or "a task failed"
        raise DemoError(f"job '{job.name}' failed: {why}")
    return job


def _outcome(label: str, job: JobRun) -> BatchOutcome:
    values = job.task("monitor").outputs
    retrain_task = job.task("retrain")
    return BatchOutcome(
        label,
        job,
        drift=values.get("drift") == "true",
        retrain=values.get("retrain") == "true",
        retrain_job=getattr(retrain_task, "job", None),
    )


def _summary(outcome: BatchOutcome) -> str:
    drift = "drift" if outcome.drift else "no drift"
    if outcome.retrain_job is not None:
        return f"{drift}; drift persists: the training job ran ({outcome.retrain_job.run_id})"
    return f"{drift}; retrain=false, the training job was not started"


def drift_table(table: MonitoringTable) -> str:
    """The monitoring table, one line per batch: its drifted metrics and verdict."""
    history = table.history()
    where = table.location.given
    if history.empty:
        return f"monitoring table {where}: empty"
    lines = [f"monitoring table {where} ({len(history)} rows), one line per batch:"]
    for batch_id, rows in history.sort_values("batch_time").groupby("batch_id", sort=False):
        first = rows.iloc[0]
        over = rows[rows["drifted"]]
        drifted = (
            ", ".join(f"{r.feature} {r.metric}={r.value:.3g}" for r in over.itertuples()) or "-"
        )
        labels = rows[rows["metric"].isin([RMSE, MAE])]
        scores = " ".join(f"{r.metric}={r.value:.1f}" for r in labels.itertuples())
        lines.append(
            f"  {pd.Timestamp(first.batch_time):%Y-%m-%d %H:%M:%S}  batch {str(batch_id)[:12]}"
            f"  version {first.model_version}  {first.rows} rows"
            f"  {'DRIFT' if first.batch_drifted else 'stable'}: {drifted}"
            + (f"  ({scores})" if scores else "")
        )
    return "\n".join(lines)


def _report_retraining(outcomes: list[BatchOutcome], model_name: str, client, report) -> None:
    retrained = [o for o in outcomes if o.retrain_job is not None]
    if not retrained:
        report("no batch started the training job")
        return
    for outcome in retrained:
        train = outcome.retrain_job.task("train").outputs
        version = train.get("model_version", "?")
        if outcome.retrain_job.task("promote").outputs.get("champion_version") == version and (
            outcome.retrain_job.task("validate").outputs.get("validation_passed") == "false"
        ):
            report(
                f"retraining after the {outcome.label}: nothing new to learn (champion {version})"
            )
            continue
        tags = client.get_model_version(model_name, version).tags if version != "?" else {}
        promote = outcome.retrain_job.task("promote").outputs
        report(
            f"retraining after the {outcome.label}: version {version} registered; validation"
            f" {tags.get(VALIDATION_STATUS, '?')} ({tags.get(VALIDATION_REASON, '')});"
            f" promoted: {promote.get('promoted', '?')}"
        )
