"""Where a model version's reference profile (diabetes.drift) lives in MLflow.

The train step logs the profile of its training data, and of the model's predictions on it, as
an artifact of the training run, and tags the registered version with the artifact's path: any
later run finds a version's reference from the version alone (`load`). Versions registered
before drift monitoring have no such tag: `load` returns None and the monitor says so.
"""

from __future__ import annotations

import mlflow
from mlflow.entities.model_registry import ModelVersion

from diabetes.drift import Profile, ProfileError

ARTIFACT = "monitoring/reference_profile.json"
TAG = "reference_profile"  # on the model version: the artifact path within its training run


def log(profile: Profile) -> str:
    """Log `profile` in the active run; the path to tag the version with."""
    mlflow.log_text(profile.to_json(), ARTIFACT)
    return ARTIFACT


def load(version: ModelVersion) -> Profile | None:
    """The version's reference profile, None when it has none (logged before monitoring).

    A tag that points at a missing or unreadable artifact is an error, not "no reference": the
    version was meant to be monitored and something removed or damaged its profile."""
    path = (version.tags or {}).get(TAG)
    if not path:
        return None
    uri = f"runs:/{version.run_id}/{path}"
    where = f"model {version.name} version {version.version}: reference profile {uri}"
    try:
        text = mlflow.artifacts.load_text(uri)
    except Exception as exc:  # MlflowException, OSError: the artifact store's own errors
        raise ProfileError(f"{where} cannot be read: {exc}") from None
    try:
        return Profile.from_json(text)
    except ProfileError as exc:
        raise ProfileError(f"{where}: {exc}") from None
