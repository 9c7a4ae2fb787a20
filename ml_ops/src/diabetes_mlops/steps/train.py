"""Train step: read and check the data, fit, record it all in MLflow, register a challenger."""

from __future__ import annotations

import logging
from typing import Annotated

import mlflow
from mlflow.tracking import MlflowClient
from pyspark.sql import SparkSession

from diabetes.contract import FEATURES
from diabetes.drift import reference_profile
from diabetes.training import DEFAULT_ALPHAS, TrainingConfig, train_model
from diabetes_mlops.runtime.context import SparkPath
from diabetes_mlops.runtime.parameters import Above, AtLeast, Below, Between, Each, OneOf
from diabetes_mlops.serving import served_model
from diabetes_mlops.spark.training_data import (
    DATA_FORMATS,
    DEFAULT_MAX_TRAINING_ROWS,
    read_training_data,
)
from diabetes_mlops.steps.common import ExperimentName, ModelName, Registry
from diabetes_mlops.tracking import reference_profiles, training_run
from diabetes_mlops.tracking.artifacts import MODEL_ARTIFACT
from diabetes_mlops.tracking.registry import CHALLENGER, champion, register_challenger
from diabetes_mlops.tracking.runs import name_run, tracked_run, use_experiment, use_registry

log = logging.getLogger(__name__)


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
        training_run.log_settings(
            config,
            tags={"data_path": data_path, "data_format": data_format},
            params={"model_name": model_name, "registry": registry},
        )
        data = read_training_data(data_path, data_format, max_training_rows, spark)
        training_run.log_data_lineage(data.lineage)
        digest = training_run.training_digest(data.frame, config)
        current = champion(MlflowClient(), model_name)
        if current is not None and current.tags.get(training_run.DIGEST_TAG) == digest:
            # The champion learned from these very rows, code and settings: a new version
            # would be the same model under another number.
            mlflow.set_tag(training_run.DIGEST_TAG, digest)
            name_run(run, f"nothing new to learn (champion v{current.version})")
            log.info(
                "nothing new to learn: champion %s version %s was trained on the same data,"
                " code and settings; no version registered",
                model_name,
                current.version,
            )
            return {"model_version": str(current.version), "run_id": run.info.run_id}
        result = train_model(data.frame, config, source=data_path)
        source = training_run.dataset_source(data.location, data.fmt, data.version)
        training_run.log_training(result, data.frame, source)
        # The drift monitor's reference: the data as read and the model's predictions on it.
        predictions = result.model.predict(data.frame[list(FEATURES)])
        profile_path = reference_profiles.log(reference_profile(data.frame, predictions))
        info = served_model.log_model(
            result.model,
            name=MODEL_ARTIFACT,
            input_example=result.holdout[list(FEATURES)].head(3),
            registered_model_name=model_name,
        )
        version = register_challenger(
            model_name,
            str(info.registered_model_version),
            {
                "alpha": result.alpha,
                **{f"holdout_{k}": f"{v:.6g}" for k, v in result.metrics.items()},
                reference_profiles.TAG: profile_path,
                training_run.DIGEST_TAG: digest,
            },
        )
        rmse = result.metrics["rmse"]
        name_run(run, f"v{version.version} (alpha {result.alpha:g}, holdout rmse {rmse:.1f})")
    log.info(
        "registered %s version %s (alpha %g, holdout rmse %.3f, r2 %.3f) as %s",
        model_name,
        version.version,
        result.alpha,
        result.metrics["rmse"],
        result.metrics["r2"],
        CHALLENGER,
    )
    return {"model_version": str(version.version), "run_id": run.info.run_id}
