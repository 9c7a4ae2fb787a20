"""What a training run records in MLflow (its settings and data, the fitted model's results and
plots) and what the validation step reads back from it (the holdout, the training rows)."""

from __future__ import annotations

import io
import logging
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from diabetes.batch_check import validate_frame
from diabetes.contract import FEATURES, TARGET
from diabetes.evaluation import feature_statistics_html, predicted_vs_actual_plot, residuals_plot
from diabetes.training import TrainingConfig, TrainingResult, row_fingerprints
from diabetes_mlops.runtime.digests import add_files
from diabetes_mlops.tracking.artifacts import HOLDOUT_ARTIFACT, TRAIN_ROWS_ARTIFACT

log = logging.getLogger(__name__)


def log_settings(
    config: TrainingConfig, tags: Mapping[str, str], params: Mapping[str, Any]
) -> None:
    """Tags of the run (tracked_run has set its step), the training configuration and the other
    parameters it ran with."""
    mlflow.set_tags(dict(tags))
    mlflow.log_params(
        {
            "alphas": ",".join(f"{a:g}" for a in config.alphas),
            "test_size": config.test_size,
            "cv_folds": config.cv_folds,
            "seed": config.seed,
            **params,
        }
    )


def log_data_lineage(lineage: Mapping[str, str]) -> None:
    """Where the training data came from (path, format, Delta version), as run tags."""
    mlflow.set_tags(dict(lineage))


def dataset_source(location: str, fmt: str, version: int | None) -> Any:
    """The MLflow dataset source naming where training rows came from: a path, a table, and
    the Delta version read."""
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.data.spark_dataset_source import SparkDatasetSource

    if version is not None:
        if fmt == "table":
            return DeltaDatasetSource(delta_table_name=location, delta_table_version=version)
        return DeltaDatasetSource(path=location, delta_table_version=version)
    if fmt == "table":
        return SparkDatasetSource(table_name=location)
    return location


def log_training(result: TrainingResult, frame: pd.DataFrame, source: Any) -> None:
    """The data as a dataset input, the chosen alpha and its cross-validation, the holdout
    metrics and rows, the training rows' fingerprints, feature statistics and two plots."""
    with warnings.catch_warnings():  # a local path matches two equivalent MLflow source types
        warnings.filterwarnings("ignore", "The specified dataset source", UserWarning)
        dataset = mlflow.data.from_pandas(frame, source=source, targets=TARGET, name="training")
    mlflow.log_input(dataset, context="training")
    mlflow.log_params(
        {
            "alpha": result.alpha,
            "train_rows": len(result.train),
            "holdout_rows": len(result.holdout),
        }
    )
    mlflow.log_metrics({f"holdout_{k}": v for k, v in result.metrics.items()})
    best = result.cv_results.loc[result.cv_results["alpha"] == result.alpha].iloc[0]
    mlflow.log_metric("cv_rmse", float(best["cv_rmse_mean"]))
    for step, row in enumerate(result.cv_results.itertuples()):
        mlflow.log_metric("cv_rmse_by_candidate", row.cv_rmse_mean, step=step)
    mlflow.log_text(result.cv_results.to_csv(index=False), "cv_results.csv")
    mlflow.log_text(result.holdout.to_csv(index=False), HOLDOUT_ARTIFACT)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(TRAIN_ROWS_ARTIFACT).name
        np.save(path, row_fingerprints(result.train))
        mlflow.log_artifact(str(path), str(Path(TRAIN_ROWS_ARTIFACT).parent))
    mlflow.log_text(feature_statistics_html(frame, "Training data"), "feature_statistics.html")
    y = result.holdout[TARGET]
    predicted = result.model.predict(result.holdout[list(FEATURES)])
    mlflow.log_figure(predicted_vs_actual_plot(y, predicted), "plots/predicted_vs_actual.png")
    mlflow.log_figure(residuals_plot(y, predicted), "plots/residuals.png")


def load_holdout(run_id: str) -> pd.DataFrame:
    """The holdout rows a training run logged, checked against the contract again."""
    text = mlflow.artifacts.load_text(f"runs:/{run_id}/{HOLDOUT_ARTIFACT}")
    return validate_frame(pd.read_csv(io.StringIO(text)), f"holdout of run {run_id}", "training")


def rows_unseen_by(version: ModelVersion, holdout: pd.DataFrame) -> pd.DataFrame:
    """The holdout rows `version` was not trained on: scoring a model on its own training rows
    would flatter it (after a new split seed, say, or when new data arrives)."""
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=version.run_id, artifact_path=TRAIN_ROWS_ARTIFACT
        )
    except (MlflowException, OSError):
        log.warning(
            "champion version %s has no training-row fingerprints; comparing on the whole"
            " holdout, which it may have been trained on",
            version.version,
        )
        return holdout
    seen = np.isin(row_fingerprints(holdout), np.load(path))
    return holdout.loc[~seen].reset_index(drop=True)


# A model version's tag: what it was trained from (data, code, settings), as one digest.
DIGEST_TAG = "training_digest"


def training_digest(frame: pd.DataFrame, config: TrainingConfig) -> str:
    """The same for the same training rows (whatever their order or source), the same code of
    both packages and the same training settings; anything else gives another digest."""
    import hashlib
    import json

    import diabetes
    import diabetes_mlops

    digest = hashlib.sha256()
    digest.update(np.sort(row_fingerprints(frame)).tobytes())
    for package in (diabetes, diabetes_mlops):
        folder = Path(package.__file__).parent
        add_files(digest, folder, sorted(folder.rglob("*.py")))
    settings = [list(config.alphas), config.test_size, config.cv_folds, config.seed]
    digest.update(json.dumps(settings).encode())
    return digest.hexdigest()[:32]
