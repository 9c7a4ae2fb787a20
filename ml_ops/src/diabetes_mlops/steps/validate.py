"""Validate step: the challenger must beat a mean predictor and be no worse than the champion.

Both models are scored on the challenger's own holdout (logged by the train step), so the
comparison is on identical rows. The verdict is written to the model version's tags (which the
promote step reads) and to a `validate` run.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from diabetes.evaluation import evaluate, mean_baseline
from diabetes.schema import validate_frame
from diabetes_mlops.errors import ParameterError
from diabetes_mlops.registry import (
    FAILED,
    PASSED,
    VALIDATION_STATUS,
    champion,
    get_version,
    load_version,
    set_version_tags,
)
from diabetes_mlops.steps.train import HOLDOUT_ARTIFACT
from diabetes_mlops.tracking import use_experiment, use_registry

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
    model_name: str,
    model_version: str,
    experiment_name: str,
    registry: str = "workspace",
    rmse_tolerance: float = 0.0,
) -> dict[str, str]:
    """Compare version `model_version` (the challenger) with the champion; tag the verdict."""
    if rmse_tolerance < 0:
        raise ParameterError(f"parameter 'rmse_tolerance' must be >= 0, got {rmse_tolerance}")
    use_registry(registry, model_name)
    use_experiment(experiment_name)
    client = MlflowClient()
    challenger = get_version(client, model_name, model_version)
    current = champion(client, model_name)
    with mlflow.start_run(run_name="validate"):
        mlflow.set_tags({"step": "validate", "model_version": challenger.version})
        holdout = _holdout(challenger.run_id)
        metrics = {
            f"challenger_{k}": v for k, v in evaluate(load_version(challenger), holdout).items()
        }
        metrics.update({f"baseline_{k}": v for k, v in mean_baseline(holdout).items()})
        if current is not None and current.version != challenger.version:
            champion_metrics = evaluate(load_version(current), holdout)
            metrics.update({f"champion_{k}": v for k, v in champion_metrics.items()})
        verdict = decide(
            metrics["challenger_rmse"],
            metrics["baseline_rmse"],
            metrics.get("champion_rmse"),
            rmse_tolerance,
        )
        status = PASSED if verdict.passed else FAILED
        champion_version = current.version if current is not None else "none"
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
        mlflow.set_tags({VALIDATION_STATUS: status, "validation_reason": verdict.reason})
        set_version_tags(
            client,
            challenger,
            {
                VALIDATION_STATUS: status,
                "validation_reason": verdict.reason,
                "validation_champion_version": champion_version,
                **{k: f"{v:.6g}" for k, v in metrics.items() if k.endswith("rmse")},
            },
        )
    log.info("version %s validation %s: %s", challenger.version, status, verdict.reason)
    return {"validation_passed": "true" if verdict.passed else "false"}


def _holdout(run_id: str) -> pd.DataFrame:
    text = mlflow.artifacts.load_text(f"runs:/{run_id}/{HOLDOUT_ARTIFACT}")
    return validate_frame(pd.read_csv(io.StringIO(text)), f"holdout of run {run_id}", "training")
