"""Train step: read and validate data, fit, log everything to MLflow, register a new version."""

from __future__ import annotations

import logging
import tempfile
import warnings
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Annotated

import mlflow
import numpy as np
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema
from pyspark.sql import SparkSession

from diabetes.contract import CATEGORICAL_FEATURE, FEATURES, TARGET
from diabetes.drift import reference_profile
from diabetes.evaluation import (
    feature_statistics_html,
    predicted_vs_actual_plot,
    residuals_plot,
)
from diabetes.training import (
    DEFAULT_ALPHAS,
    TrainingConfig,
    TrainingResult,
    row_fingerprints,
    train_model,
)
from diabetes_mlops.runtime.context import SparkPath
from diabetes_mlops.runtime.parameters import Above, AtLeast, Below, Between, Each, OneOf
from diabetes_mlops.serving import served_model
from diabetes_mlops.spark.training_data import (
    DATA_FORMATS,
    DEFAULT_MAX_TRAINING_ROWS,
    TrainingData,
    dataset_source,
    read_training_data,
)
from diabetes_mlops.steps.common import ExperimentName, ModelName, Registry
from diabetes_mlops.tracking import reference_profiles
from diabetes_mlops.tracking.artifacts import HOLDOUT_ARTIFACT, MODEL_ARTIFACT, TRAIN_ROWS_ARTIFACT
from diabetes_mlops.tracking.registry import CHALLENGER, set_alias, set_version_tags
from diabetes_mlops.tracking.runs import (
    tracked_run,
    use_experiment,
    use_registry,
)

log = logging.getLogger(__name__)

# Everything the logged pipeline needs to load and predict: scikit-learn classes only, so the
# `diabetes` package itself is not a requirement of the model.
MODEL_PACKAGES = ("scikit-learn", "scipy", "numpy", "pandas", "cloudpickle")
# cloudpickle is MLflow's format on Databricks. skops would refuse unknown types on load, but its
# import scans every scikit-learn estimator (~1 s in each fresh job process), and loading models
# from our own registry is the trust boundary anyway.
SERIALIZATION = "cloudpickle"


def train(
    data_path: SparkPath,
    model_name: ModelName,
    experiment_name: ExperimentName,
    registry: Registry = "workspace",
    alphas: Annotated[tuple[float, ...], Each(Above(0))] = DEFAULT_ALPHAS,
    test_size: Annotated[float, Above(0), Below(1)] = 0.2,
    cv_folds: Annotated[int, AtLeast(2)] = 5,
    seed: Annotated[int, Between(0, 2**32 - 1)] = 42,  # what numpy's random_state accepts
    data_format: Annotated[str, OneOf(*DATA_FORMATS)] = "csv",
    max_training_rows: Annotated[int, AtLeast(1)] = DEFAULT_MAX_TRAINING_ROWS,
    spark: SparkSession = None,  # given by the runner; touched only for the Spark formats
) -> dict[str, str]:
    """Fit on `data_path` (a CSV file, Parquet or Delta files, or a table name, per
    `data_format`), register a new version of `model_name` with alias `challenger`.

    Nothing is registered unless every earlier part succeeded; any error marks the run FAILED.
    """
    config = TrainingConfig(alphas=alphas, test_size=test_size, cv_folds=cv_folds, seed=seed)
    use_registry(registry, model_name)
    use_experiment(experiment_name)
    with tracked_run("train") as run:
        mlflow.set_tags({"step": "train", "data_path": data_path, "data_format": data_format})
        mlflow.log_params(
            {
                "alphas": ",".join(f"{a:g}" for a in config.alphas),
                "test_size": test_size,
                "cv_folds": cv_folds,
                "seed": seed,
                "model_name": model_name,
                "registry": registry,
            }
        )
        data = read_training_data(data_path, data_format, max_training_rows, spark)
        mlflow.set_tags(data.lineage)
        frame = data.frame
        result = train_model(frame, config, source=data_path)
        _log_result(result, data)
        profile_path = _log_reference_profile(result, frame)
        info = served_model.log_model(
            result.model,
            name=MODEL_ARTIFACT,
            signature=model_signature(),
            input_example=result.holdout[list(FEATURES)].head(3),
            pip_requirements=model_requirements(),
            serialization_format=SERIALIZATION,
            registered_model_name=model_name,
        )
        model_version = str(info.registered_model_version)
        client = MlflowClient()
        set_alias(client, model_name, CHALLENGER, model_version)
        version = client.get_model_version(model_name, model_version)
        set_version_tags(
            client,
            version,
            {
                "alpha": result.alpha,
                **{f"holdout_{k}": f"{v:.6g}" for k, v in result.metrics.items()},
                reference_profiles.TAG: profile_path,
            },
        )
        log.info(
            "registered %s version %s (alpha %g, holdout rmse %.3f, r2 %.3f) as %s",
            model_name,
            model_version,
            result.alpha,
            result.metrics["rmse"],
            result.metrics["r2"],
            CHALLENGER,
        )
    return {"model_version": model_version, "run_id": run.info.run_id}


def _log_result(result: TrainingResult, data: TrainingData) -> None:
    frame = data.frame
    with warnings.catch_warnings():  # a local path matches two equivalent MLflow source types
        warnings.filterwarnings("ignore", "The specified dataset source", UserWarning)
        dataset = mlflow.data.from_pandas(
            frame, source=dataset_source(data), targets=TARGET, name="training"
        )
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


def _log_reference_profile(result: TrainingResult, frame) -> str:
    """The drift monitor's reference: the training data as read (train and holdout rows) and
    the fitted model's predictions on it, binned at its own quantiles."""
    predictions = result.model.predict(frame[list(FEATURES)])
    return reference_profiles.log(reference_profile(frame, predictions))


def model_signature() -> ModelSignature:
    """Declared from the schema, not inferred: every feature may be missing (the model imputes)."""
    inputs = [
        ColSpec("string" if c == CATEGORICAL_FEATURE else "double", c, required=False)
        for c in FEATURES
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("double")]))


def model_requirements() -> list[str]:
    """Exact versions of what the model needs: explicit, so log_model does not infer (7-13 s)."""
    return [f"{package}=={installed_version(package)}" for package in MODEL_PACKAGES]
