"""Validate step: the challenger must beat a mean predictor and be no worse than the champion.

Both models are scored on the same rows: the challenger's holdout (logged by the train step),
less any row the champion was trained on. The verdict is written to the model version's tags
(which the promote step reads) and to a `validate` run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated

import mlflow
from mlflow.tracking import MlflowClient

from diabetes.evaluation import evaluate, mean_baseline
from diabetes_mlops.runtime.parameters import AtLeast
from diabetes_mlops.steps.common import ExperimentName, ModelName, ModelRef, Registry
from diabetes_mlops.tracking import training_run
from diabetes_mlops.tracking.registry import (
    FAILED,
    NO_CHAMPION,
    PASSED,
    VALIDATED_AGAINST,
    VALIDATION_REASON,
    VALIDATION_STATUS,
    champion,
    get_version,
    load_version,
    set_version_tags,
)
from diabetes_mlops.tracking.runs import name_run, tracked_run, use_experiment, use_registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str


def decide(
    challenger_rmse: float,
    baseline_rmse: float,
    champion_rmse: float | None,
    rmse_tolerance: float,
) -> Verdict:
    """Pass when rmse beats the baseline and is at most champion * (1 + tolerance)."""
    if not challenger_rmse < baseline_rmse:
        return Verdict(
            False,
            f"rmse {challenger_rmse:.4f} does not beat the mean-predictor baseline"
            f" {baseline_rmse:.4f}",
        )
    if champion_rmse is None:
        return Verdict(True, f"no champion yet; rmse {challenger_rmse:.4f} beats the baseline")
    limit = champion_rmse * (1 + rmse_tolerance)
    if challenger_rmse > limit:
        return Verdict(
            False,
            f"rmse {challenger_rmse:.4f} is worse than the champion's {champion_rmse:.4f}"
            f" (tolerance {rmse_tolerance:.1%})",
        )
    return Verdict(
        True, f"rmse {challenger_rmse:.4f} within the champion's {champion_rmse:.4f} + tolerance"
    )


def validate(
    model_name: ModelName,
    model_version: ModelRef,
    experiment_name: ExperimentName,
    registry: Registry = "workspace",
    rmse_tolerance: Annotated[float, AtLeast(0)] = 0.0,
    min_comparison_rows: Annotated[int, AtLeast(2)] = 20,  # r2 needs two rows
) -> dict[str, str]:
    """Compare version `model_version` (the challenger) with the champion; tag the verdict."""
    use_registry(registry, model_name)
    use_experiment(experiment_name)
    client = MlflowClient()
    challenger = get_version(client, model_name, model_version)
    current = champion(client, model_name)
    if current is not None and str(current.version) == str(challenger.version):
        # What train publishes when it had nothing new to learn: the champion itself.
        log.info("version %s is the champion already: nothing to validate", challenger.version)
        return {"validation_passed": "false"}
    rival = current
    with tracked_run("validate") as run:
        mlflow.set_tag("model_version", challenger.version)
        holdout = training_run.load_holdout(challenger.run_id)
        rows = holdout if rival is None else training_run.rows_unseen_by(rival, holdout)
        metrics: dict[str, float] = {"comparison_rows": len(rows)}
        if len(rows) < min_comparison_rows:
            verdict = Verdict(
                False,
                f"only {len(rows)} holdout rows are unseen by champion version"
                f" {rival.version if rival else '-'}; {min_comparison_rows} needed to compare",
            )
        else:
            metrics.update(_prefixed("challenger", evaluate(load_version(challenger), rows)))
            metrics.update(_prefixed("baseline", mean_baseline(rows)))
            if rival is not None:
                metrics.update(_prefixed("champion", evaluate(load_version(rival), rows)))
            verdict = decide(
                metrics["challenger_rmse"],
                metrics["baseline_rmse"],
                metrics.get("champion_rmse"),
                rmse_tolerance,
            )
        status = PASSED if verdict.passed else FAILED
        champion_version = str(current.version) if current is not None else NO_CHAMPION
        mlflow.log_params(
            {
                "model_name": model_name,
                "model_version": challenger.version,
                "champion_version": champion_version,
                "rmse_tolerance": rmse_tolerance,
                "holdout_rows": len(holdout),
            }
        )
        mlflow.log_metrics(metrics)
        name_run(run, f"v{challenger.version} vs champion {champion_version}: {status}")
        mlflow.set_tags({VALIDATION_STATUS: status, VALIDATION_REASON: verdict.reason})
        set_version_tags(
            client,
            challenger,
            {
                VALIDATION_STATUS: status,
                VALIDATION_REASON: verdict.reason,
                VALIDATED_AGAINST: champion_version,
                "validation_comparison_rows": len(rows),
                **{k: f"{v:.6g}" for k, v in metrics.items() if k.endswith("rmse")},
            },
        )
    log.info("version %s validation %s: %s", challenger.version, status, verdict.reason)
    return {"validation_passed": "true" if verdict.passed else "false"}


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{k}": v for k, v in metrics.items()}
