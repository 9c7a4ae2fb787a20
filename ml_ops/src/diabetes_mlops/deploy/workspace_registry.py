"""MLflow pointed at a target's workspace: its tracking server and its model registry (Unity
Catalog or the workspace registry, as the target's `registry` parameter says), for the commands
that read or tag its model versions from a laptop or CI (approve, reject, history)."""

from __future__ import annotations

import os

import mlflow
from mlflow.tracking import MlflowClient

from diabetes_mlops.jobs.targets import Target
from diabetes_mlops.tracking.runs import use_registry


def registry_client(target: Target) -> MlflowClient:
    """A client on the target's workspace, authenticated as a deploy is (databricks-sdk's
    unified auth: DATABRICKS_HOST and its credentials, or the target's profile)."""
    mlflow.set_tracking_uri(workspace_uri("databricks", target))
    use_registry(target.parameters.get("registry", "workspace"), target.parameters["model_name"])
    registry = mlflow.get_registry_uri()
    mlflow.set_registry_uri(workspace_uri(registry.split("://")[0], target))
    return MlflowClient()


def workspace_uri(scheme: str, target: Target) -> str:
    """`scheme` ("databricks", "databricks-uc") for the target's workspace: its profile's,
    unless DATABRICKS_HOST is set."""
    if target.profile and not os.environ.get("DATABRICKS_HOST"):
        return f"{scheme}://{target.profile}"
    return scheme
