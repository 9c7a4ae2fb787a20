"""Promote step: move alias `champion` to the version, only if its validation passed against the
champion that is current now."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from mlflow.tracking import MlflowClient

from diabetes_mlops.steps.approval import ApprovalSetting
from diabetes_mlops.steps.common import ModelName, ModelRef, Registry
from diabetes_mlops.tracking import approvals
from diabetes_mlops.tracking.registry import (
    CHAMPION,
    NO_CHAMPION,
    PASSED,
    PREVIOUS_CHAMPION,
    PROMOTED_AT,
    VALIDATED_AGAINST,
    VALIDATION_REASON,
    VALIDATION_STATUS,
    champion,
    get_version,
    set_alias,
    set_version_tags,
)
from diabetes_mlops.tracking.runs import use_registry

log = logging.getLogger(__name__)


def promote(
    model_name: ModelName,
    model_version: ModelRef,
    registry: Registry = "workspace",
    approval: ApprovalSetting = approvals.NOT_REQUIRED,
    deploy_target: str = "",
) -> dict[str, str]:
    """The verdicts are read from the registry (the version's tags), not passed in, so a version
    that was never validated, failed, was validated against an older champion, or (where the
    target requires approval) was not approved in `deploy_target`, never becomes champion."""
    use_registry(registry, model_name)
    client = MlflowClient()
    version = get_version(client, model_name, model_version)
    previous = champion(client, model_name)
    current = str(previous.version) if previous else NO_CHAMPION
    if current == str(version.version):
        log.info("%s version %s is the champion already", model_name, version.version)
        return {"promoted": "false", "champion_version": current}
    refusal = _refusal(version.tags, current) or _unapproved(version.tags, approval, deploy_target)
    if refusal:
        log.warning(
            "not promoting %s version %s: %s; champion stays %s",
            model_name,
            version.version,
            refusal,
            current,
        )
        return {"promoted": "false", "champion_version": "" if previous is None else current}
    set_alias(client, model_name, CHAMPION, str(version.version))
    set_version_tags(
        client,
        version,
        {
            PROMOTED_AT: datetime.now(UTC).isoformat(timespec="seconds"),
            PREVIOUS_CHAMPION: current,
        },
    )
    log.info("%s version %s is now %s (was %s)", model_name, version.version, CHAMPION, current)
    return {"promoted": "true", "champion_version": str(version.version)}


def _unapproved(tags: dict[str, str], approval: str, target: str) -> str | None:
    if approval == approvals.NOT_REQUIRED:
        return None
    found = approvals.decision(tags, target)
    if found.verdict != approvals.APPROVED:
        return f"target '{target}' requires approval, and it is {found.describe()}"
    return None


def _refusal(tags: dict[str, str], current_champion: str) -> str | None:
    status = tags.get(VALIDATION_STATUS)
    if status is None:
        return "it was never validated"
    if status != PASSED:
        return f"validation {status} ({tags.get(VALIDATION_REASON, 'no reason recorded')})"
    against = tags.get(VALIDATED_AGAINST)
    if against != current_champion:
        return (
            f"it was validated against champion {against}, but the champion is now"
            f" {current_champion}: validate it again"
        )
    return None
