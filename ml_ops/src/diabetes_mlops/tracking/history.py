"""Every version of a model and what happened to it, read from the registry and the runs alone:
when and on what data it was trained (its training run's lineage tags), the validation verdict
and its numbers, who approved or rejected it in the target, when it became champion and when it
stopped (promote's tags on it and on the version that replaced it), and what the endpoint served
(deploy_serving's tags). Nothing is kept in a second store that could disagree with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from diabetes_mlops.tracking import approvals
from diabetes_mlops.tracking.registry import (
    PREVIOUS_CHAMPION,
    PROMOTED_AT,
    ROLLBACK_REASON_TAG,
    SERVED_BY_TAG,
    SERVED_SINCE_TAG,
    SERVED_UNTIL_TAG,
    VALIDATED_AGAINST,
    VALIDATION_REASON,
    VALIDATION_STATUS,
    champion,
)


@dataclass(frozen=True)
class VersionHistory:
    version: str
    trained: str
    validation: str
    approval: str
    champion: str
    serving: str

    def lines(self) -> list[str]:
        return [
            f"version {self.version}",
            f"  trained     {self.trained}",
            f"  validation  {self.validation}",
            f"  approval    {self.approval}",
            f"  champion    {self.champion}",
            f"  serving     {self.serving}",
        ]


def model_history(
    client: MlflowClient, model_name: str, target: str, approval_setting: str
) -> list[VersionHistory]:
    """Newest first. `approval_setting`: the target's (required or none)."""
    numbers = sorted(
        {int(v.version) for v in client.search_model_versions(f"name='{model_name}'")},
        reverse=True,
    )
    # Unity Catalog's search answers without tags: each version is read whole.
    versions = [client.get_model_version(model_name, str(n)) for n in numbers]
    current = champion(client, model_name)
    now = str(current.version) if current is not None else None
    return [
        VersionHistory(
            str(v.version),
            _trained(client, v),
            _validation(v.tags),
            _approval(v.tags, target, approval_setting),
            _champion(v, versions, now),
            _serving(v.tags),
        )
        for v in versions
    ]


def _trained(client: MlflowClient, version: ModelVersion) -> str:
    registered = _time(version.creation_timestamp)
    if not version.run_id:
        return f"registered {registered}, no training run recorded"
    try:
        run = client.get_run(version.run_id)
    except MlflowException as exc:
        return f"registered {registered}; run {version.run_id}: {exc.message}"
    tags = run.data.tags
    data = tags.get("data_path", "unknown data")
    fmt = f" ({tags['data_format']})" if tags.get("data_format") else ""
    delta = f", Delta version {tags['data_version']}" if tags.get("data_version") else ""
    return f"{_time(run.info.start_time)} on {data}{fmt}{delta} (run {version.run_id})"


def _validation(tags: dict[str, str]) -> str:
    status = tags.get(VALIDATION_STATUS)
    if status is None:
        return "not validated"
    numbers = ", ".join(f"{k} {v}" for k, v in sorted(tags.items()) if k.endswith("rmse"))
    against = tags.get(VALIDATED_AGAINST, "?")
    reason = tags.get(VALIDATION_REASON, "")
    return "; ".join(
        part for part in (f"{status} against champion {against}", numbers, reason) if part
    )


def _approval(tags: dict[str, str], target: str, setting: str) -> str:
    found = approvals.decision(tags, target)
    if found.verdict is None and setting != approvals.REQUIRED:
        return f"not required in target '{target}'"
    return f"{found.describe()} (target '{target}')"


def _champion(version: ModelVersion, versions: list[ModelVersion], now: str | None) -> str:
    since = version.tags.get(PROMOTED_AT)
    if since is None:
        held = now == str(version.version)
        return "champion now (since an unrecorded time)" if held else "never"
    successor = min(
        (
            v
            for v in versions
            if v.tags.get(PREVIOUS_CHAMPION) == str(version.version)
            and v.tags.get(PROMOTED_AT, "") > since
        ),
        key=lambda v: v.tags[PROMOTED_AT],
        default=None,
    )
    after = version.tags.get(PREVIOUS_CHAMPION, "none")
    previous = "" if after == "none" else f", after version {after}"
    if successor is not None:
        until = successor.tags[PROMOTED_AT]
        return f"{since} to {until}{previous}; replaced by version {successor.version}"
    state = "champion now" if now == str(version.version) else "no longer champion"
    return f"{state}, since {since}{previous}"


def _serving(tags: dict[str, str]) -> str:
    parts = []
    endpoint = tags.get(SERVED_BY_TAG)
    if endpoint:
        since = f" since {tags[SERVED_SINCE_TAG]}" if tags.get(SERVED_SINCE_TAG) else ""
        parts.append(f"served by {endpoint}{since}")
    elif tags.get(SERVED_UNTIL_TAG):
        since = f" from {tags[SERVED_SINCE_TAG]}" if tags.get(SERVED_SINCE_TAG) else ""
        parts.append(f"served{since} until {tags[SERVED_UNTIL_TAG]}, then replaced")
    else:
        parts.append("never served")
    if tags.get(ROLLBACK_REASON_TAG):
        parts.append(f"rolled back: {tags[ROLLBACK_REASON_TAG]}")
    return "; ".join(parts)


def _time(milliseconds: int | None) -> str:
    if not milliseconds:
        return "at an unknown time"
    return datetime.fromtimestamp(milliseconds / 1000, UTC).isoformat(timespec="seconds")
