"""Promote step: move alias `champion` to the version, only if its validation passed."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from mlflow.tracking import MlflowClient

from diabetes_mlops.registry import (
    CHAMPION,
    PASSED,
    VALIDATION_STATUS,
    champion,
    get_version,
    set_version_tags,
)
from diabetes_mlops.tracking import use_registry

log = logging.getLogger(__name__)


def promote(model_name: str, model_version: str, registry: str = "workspace") -> dict[str, str]:
    """The verdict is read from the registry (the version's tag), not passed in, so a version that
    was never validated, or failed, can never become champion."""
    use_registry(registry, model_name)
    client = MlflowClient()
    version = get_version(client, model_name, model_version)
    status = version.tags.get(VALIDATION_STATUS, "not validated")
    previous = champion(client, model_name)
    if status != PASSED:
        reason = version.tags.get("validation_reason", "")
        log.warning(
            "not promoting %s version %s: validation %s %s; champion stays %s",
            model_name,
            version.version,
            status,
            f"({reason})" if reason else "",
            previous.version if previous else "unset",
        )
        return {"promoted": "false", "champion_version": str(previous.version) if previous else ""}
    client.set_registered_model_alias(model_name, CHAMPION, version.version)
    set_version_tags(
        client,
        version,
        {
            "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "previous_champion_version": previous.version if previous else "none",
        },
    )
    log.info(
        "%s version %s is now %s (was %s)",
        model_name,
        version.version,
        CHAMPION,
        previous.version if previous else "unset",
    )
    return {"promoted": "true", "champion_version": str(version.version)}
