"""MLflow set-up shared by the steps: which experiment, which registry."""

from __future__ import annotations

import os
import re

import mlflow
from mlflow.exceptions import MlflowException

from diabetes_mlops.errors import ParameterError, require_choice

# Set by the local runner so experiments it creates keep their artifacts under its local folder
# instead of ./mlruns of whatever the current directory is. Unset on Databricks.
ARTIFACT_ROOT_ENV = "DIABETES_MLOPS_ARTIFACT_ROOT"

WORKSPACE = "workspace"
UNITY_CATALOG = "unity_catalog"
REGISTRIES = (WORKSPACE, UNITY_CATALOG)


def use_registry(registry: str, model_name: str) -> None:
    """Point the MLflow registry at the workspace registry or at Unity Catalog.

    `workspace` means the tracking server's own registry: the sqlite store locally, the workspace
    registry on Databricks. Unity Catalog needs a three-level name `catalog.schema.model`.
    """
    if registry == UNITY_CATALOG:
        parts = model_name.split(".")
        if len(parts) != 3 or not all(parts):
            raise ParameterError(
                f"parameter 'model_name': Unity Catalog needs catalog.schema.model,"
                f" got {model_name!r}"
            )
        mlflow.set_registry_uri("databricks-uc")
    elif registry == WORKSPACE:
        if not model_name:
            raise ParameterError("parameter 'model_name' is empty; it needs a value")
        mlflow.set_registry_uri(mlflow.get_tracking_uri())
    else:
        require_choice("registry", registry, REGISTRIES)


def use_experiment(name: str) -> str:
    """Make `name` the active experiment (created when missing) and return its id."""
    if not name:
        raise ParameterError("parameter 'experiment_name' is empty; it needs a value")
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        root = os.environ.get(ARTIFACT_ROOT_ENV)
        location = f"{root.rstrip('/')}/{_slug(name)}" if root else None
        try:
            mlflow.create_experiment(name, artifact_location=location)
        except MlflowException:
            if mlflow.get_experiment_by_name(name) is None:  # not a lost creation race
                raise
    return mlflow.set_experiment(name).experiment_id


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "experiment"
