"""Batch-score step: load the champion (or a given version), score a file, write it atomically."""

from __future__ import annotations

import logging

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from diabetes.schema import MODEL_VERSION, SCORED_AT, read_table
from diabetes.scoring import score_frame
from diabetes_mlops.context import FilePath
from diabetes_mlops.output import output_format, write_atomically
from diabetes_mlops.registry import CHAMPION, get_version, load_version
from diabetes_mlops.tracking import use_experiment, use_registry

log = logging.getLogger(__name__)


def batch_score(
    input_path: FilePath,
    output_path: FilePath,
    model_name: str,
    experiment_name: str,
    registry: str = "workspace",
    model_version: str = CHAMPION,
) -> dict[str, str]:
    """Score `input_path` (CSV) into `output_path` (.parquet or .csv): the input columns plus
    prediction, model_version and scored_at. `model_version` is a number or an alias."""
    output_format(output_path)  # a bad output name fails before any work
    use_registry(registry, model_name)
    use_experiment(experiment_name)
    with mlflow.start_run(run_name="batch_score"):
        mlflow.set_tags({"step": "batch_score", "input_path": input_path})
        mlflow.log_params({"model_name": model_name, "model_ref": model_version})
        raw = read_table(input_path)
        version = get_version(MlflowClient(), model_name, model_version)
        scored = score_frame(load_version(version), raw, source=input_path)
        scored[MODEL_VERSION] = int(version.version)
        scored[SCORED_AT] = pd.Timestamp.now(tz="UTC")
        write_atomically(scored, output_path)
        mlflow.log_params({"model_version": version.version, "output_path": output_path})
        mlflow.log_metrics({"rows_in": len(raw), "rows_out": len(scored)})
        log.info(
            "scored %d rows with %s version %s into %s",
            len(scored),
            model_name,
            version.version,
            output_path,
        )
    return {
        "output_path": output_path,
        "rows": str(len(scored)),
        "model_version": str(version.version),
    }
