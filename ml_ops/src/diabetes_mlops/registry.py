"""Model registry helpers: versions by number or alias, the champion, tags, loading a version."""

from __future__ import annotations

import mlflow.sklearn
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from diabetes_mlops.errors import ModelNotFoundError

CHAMPION = "champion"
CHALLENGER = "challenger"

# Model-version tags written by the validate step and read by promote.
VALIDATION_STATUS = "validation_status"
PASSED = "passed"
FAILED = "failed"

# What stores answer for a missing model, version or alias (sqlite: the latter for an alias).
_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


def get_version(client: MlflowClient, name: str, version_or_alias: str) -> ModelVersion:
    """A version given as a number ("3") or an alias ("champion")."""
    ref = str(version_or_alias).strip()
    try:
        if ref.isdigit():
            return client.get_model_version(name, ref)
        return client.get_model_version_by_alias(name, ref)
    except MlflowException as exc:
        if exc.error_code not in _NOT_FOUND:
            raise
        what = f"version {ref}" if ref.isdigit() else f"version with alias '{ref}'"
        hint = " (run the training job first)" if ref == CHAMPION else ""
        raise ModelNotFoundError(
            f"registered model '{name}' has no {what}{hint}: {exc.message}"
        ) from None


def champion(client: MlflowClient, name: str) -> ModelVersion | None:
    """The current champion, or None when there is none yet (or no such model yet)."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code not in _NOT_FOUND:
            raise
        return None


def load_version(version: ModelVersion):
    """Load by number, never by alias, so the model is the one whose number we report."""
    return mlflow.sklearn.load_model(f"models:/{version.name}/{version.version}")


def set_version_tags(client: MlflowClient, version: ModelVersion, tags: dict) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(version.name, version.version, key, str(value))
