"""MLflow pointed at a target's workspace: its tracking server and its model registry (Unity
Catalog or the workspace registry, as the target's `registry` parameter says), for the commands
that read or tag its model versions from a laptop or CI (approve, reject, history)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
from mlflow.tracking import MlflowClient

from diabetes_mlops.jobs.targets import Target
from diabetes_mlops.tracking.runs import use_registry


@contextmanager
def registry_client(target: Target) -> Iterator[MlflowClient]:
    """Inside, MLflow on the target's workspace, authenticated as a deploy is (databricks-sdk's
    unified auth: DATABRICKS_HOST and its credentials, or the target's profile); after, MLflow
    as it was."""
    tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        mlflow.set_tracking_uri(workspace_uri("databricks", target))
        use_registry(
            target.parameters.get("registry", "workspace"), target.parameters["model_name"]
        )
        mlflow.set_registry_uri(workspace_uri(mlflow.get_registry_uri().split("://")[0], target))
        yield MlflowClient()
    finally:
        mlflow.set_tracking_uri(tracking)
        # "": the registry follows the tracking URI again, as it did when it was that
        mlflow.set_registry_uri("" if registry == tracking else registry)


def workspace_uri(scheme: str, target: Target) -> str:
    """`scheme` ("databricks", "databricks-uc") for the target's workspace: its profile's,
    unless DATABRICKS_HOST is set."""
    if target.profile and not os.environ.get("DATABRICKS_HOST"):
        return f"{scheme}://{target.profile}"
    return scheme
