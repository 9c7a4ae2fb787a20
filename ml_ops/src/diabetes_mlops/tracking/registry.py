"""Model registry helpers: versions by number or alias, the champion, tags, loading a version.

Unity Catalog and MLflow's own stores have aliases. MLflow's client for the Databricks workspace
registry refuses every alias call, so there an alias is kept as a registered-model tag
`alias.<name>` holding the version number; the steps see the same `set_alias`/`get_version`.
"""

from __future__ import annotations

import mlflow
import mlflow.sklearn
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from diabetes_mlops.runtime import model_refs
from diabetes_mlops.runtime.errors import ModelNotFoundError

CHAMPION = "champion"
CHALLENGER = "challenger"
ALIAS_TAG_PREFIX = "alias."

# Model-version tags written by the validate step and read by promote.
VALIDATION_STATUS = "validation_status"
VALIDATION_REASON = "validation_reason"
VALIDATED_AGAINST = "validation_champion_version"
# Written by promote: when the version became champion, and which one it replaced.
PROMOTED_AT = "promoted_at"
PREVIOUS_CHAMPION = "previous_champion_version"
# Written by deploy_serving: the endpoint serving the version at 100 %, since when, until when
# another replaced it there, and why a rollout of it was rolled back.
ROLLBACK_REASON_TAG = "serving_rollback_reason"
SERVED_BY_TAG = "serving_endpoint"
SERVED_SINCE_TAG = "serving_since"
SERVED_UNTIL_TAG = "serving_until"
PASSED = "passed"
FAILED = "failed"
NO_CHAMPION = "none"

# What stores answer for a missing model, version or alias (sqlite: the latter for an alias).
_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


def native_aliases(registry_uri: str | None = None) -> bool:
    """False for the Databricks workspace registry ("databricks", "databricks://profile")."""
    uri = registry_uri if registry_uri is not None else mlflow.get_registry_uri()
    return not (uri == "databricks" or uri.startswith("databricks://"))


def set_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    if native_aliases():
        client.set_registered_model_alias(name, alias, version)
    else:
        client.set_registered_model_tag(name, ALIAS_TAG_PREFIX + alias, str(version))


def get_version(client: MlflowClient, name: str, version_or_alias: str) -> ModelVersion:
    """A version given as a number ("3") or an alias ("champion")."""
    ref = str(version_or_alias).strip()
    number = model_refs.is_version_number(ref)
    if not number and not model_refs.is_alias(ref):
        raise ModelNotFoundError(f"registered model '{name}': '{ref}' {model_refs.PROBLEM}")
    try:
        if number:
            return client.get_model_version(name, ref)
        if native_aliases():
            return client.get_model_version_by_alias(name, ref)
        number = client.get_registered_model(name).tags.get(ALIAS_TAG_PREFIX + ref)
        if number is not None:
            return client.get_model_version(name, number)
        problem = f"tag {ALIAS_TAG_PREFIX}{ref} is not set"
    except MlflowException as exc:
        if exc.error_code not in _NOT_FOUND:
            raise
        problem = exc.message
    what = f"version {ref}" if number else f"version with alias '{ref}'"
    hint = " (run the training job first)" if ref == CHAMPION else ""
    raise ModelNotFoundError(f"registered model '{name}' has no {what}{hint}: {problem}")


def champion(client: MlflowClient, name: str) -> ModelVersion | None:
    """The current champion, or None when there is none yet (or no such model yet)."""
    try:
        return get_version(client, name, CHAMPION)
    except ModelNotFoundError:
        return None


def load_version(version: ModelVersion):
    """Load by number, never by alias, so the model is the one whose number we report."""
    return mlflow.sklearn.load_model(version_uri(version))


def version_uri(version: ModelVersion) -> str:
    """`models:/<name>/<number>`: one version, whatever its aliases say later."""
    return f"models:/{version.name}/{version.version}"


def register_challenger(name: str, version: str, tags: dict) -> ModelVersion:
    """A newly registered version becomes the challenger, with its tags."""
    client = MlflowClient()
    set_alias(client, name, CHALLENGER, version)
    registered = client.get_model_version(name, version)
    set_version_tags(client, registered, tags)
    return registered


def set_version_tags(client: MlflowClient, version: ModelVersion, tags: dict) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(version.name, version.version, key, str(value))
