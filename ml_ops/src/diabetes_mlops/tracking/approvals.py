"""A person's approval of a model version for one deploy target, kept as model-version tags.

Databricks' MLflow 3 deployment jobs gate a deployment the same way: an approval task checks a
Unity Catalog model-version tag and fails until its value is "approved" (case-insensitive), and
the run is then repaired and goes on (the approval notebook of
https://docs.databricks.com/aws/en/mlflow/deployment-job, notebooks/source/mlflow/deployment-jobs/
approval.html: `tags.get(tag_name).lower() == "approved"`). Here the tag's key names the target,
so an approval given in one target never counts in another, and the tags beside it record who
decided, when and why (a tag itself records neither). Unity Catalog tag keys may not contain
`. , - = / :`, so the target's name is written with underscores.

A person sets the decision in Catalog Explorer (key `approval_<target>`, value `Approved` or
`Rejected`) or with `diabetes-mlops approve|reject TARGET VERSION --reason ...`, which also fills
in who and when. The version's tags are the only record: nothing is kept elsewhere that could
disagree with the registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow.entities.model_registry import ModelVersion
from mlflow.tracking import MlflowClient

from diabetes_mlops.runtime.errors import UserError
from diabetes_mlops.tracking.registry import PASSED, VALIDATION_STATUS, get_version

APPROVED = "approved"
REJECTED = "rejected"
VERDICTS = (APPROVED, REJECTED)
REQUIRED = "required"
NOT_REQUIRED = "none"
APPROVAL_SETTINGS = (REQUIRED, NOT_REQUIRED)


@dataclass(frozen=True)
class Keys:
    """The tag keys of one target's approval."""

    verdict: str
    by: str
    at: str
    reason: str
    run: str  # the job run waiting for the decision (set by the approval gate)


def keys(target: str) -> Keys:
    base = "approval_" + re.sub(r"[^A-Za-z0-9_]", "_", target)
    return Keys(base, f"{base}_by", f"{base}_at", f"{base}_reason", f"{base}_run")


@dataclass(frozen=True)
class Decision:
    verdict: str | None  # approved, rejected, or None: nobody has decided
    by: str = ""
    at: str = ""
    reason: str = ""
    run: str = ""  # the job run that waits for it, when one does

    def describe(self) -> str:
        if self.verdict is None:
            return "not decided"
        who = f" by {self.by}" if self.by else ""
        when = f" at {self.at}" if self.at else ""
        why = f": {self.reason}" if self.reason else ""
        return f"{self.verdict}{who}{when}{why}"


def decision(tags: dict[str, str], target: str) -> Decision:
    """The target's decision as the tags say it; any value other than approved or rejected
    (case aside) is no decision."""
    k = keys(target)
    value = tags.get(k.verdict, "").strip().lower()
    verdict = value if value in VERDICTS else None
    return Decision(
        verdict, tags.get(k.by, ""), tags.get(k.at, ""), tags.get(k.reason, ""), tags.get(k.run, "")
    )


def record(
    client: MlflowClient, version: ModelVersion, target: str, verdict: str, by: str, reason: str
) -> Decision:
    """Write a decision: the previous verdict removed first, then who, when and why, the verdict
    last, so that a reader (or a crash at any point) never leaves a verdict beside another
    decision's who and why: at worst no verdict, which counts as none."""
    k = keys(target)
    at = datetime.now(UTC).isoformat(timespec="seconds")
    if k.verdict in version.tags:
        client.delete_model_version_tag(version.name, str(version.version), k.verdict)
    for key, value in ((k.by, by), (k.at, at), (k.reason, reason), (k.verdict, verdict.title())):
        client.set_model_version_tag(version.name, str(version.version), key, value)
    return Decision(verdict, by, at, reason, version.tags.get(k.run, ""))


def mark_waiting(client: MlflowClient, version: ModelVersion, target: str, run_id: str) -> None:
    """Name the job run that waits for the decision: `approve` repairs it."""
    if run_id:
        client.set_model_version_tag(version.name, str(version.version), keys(target).run, run_id)


class ApprovalRefused(UserError, ValueError):
    """A decision that cannot be recorded: the message says why."""


def record_decision(
    client: MlflowClient, model_name: str, version: str, target: str, verdict: str, reason: str,
    by: str,
) -> Decision:  # fmt: skip
    """Record a person's decision on a version; only a version that passed validation can be
    approved (one that did not has nothing to approve: promote refuses it anyway), and a
    rejection is final (an approval may still be withdrawn by a rejection)."""
    if verdict not in VERDICTS:
        raise ApprovalRefused(f"a decision is one of {', '.join(VERDICTS)}, got {verdict!r}")
    if not reason.strip():
        raise ApprovalRefused("--reason: say why (it is recorded on the version with your name)")
    found = get_version(client, model_name, version)
    previous = decision(found.tags, target)
    if previous.verdict == REJECTED:
        raise ApprovalRefused(
            f"model {model_name} version {found.version} was {previous.describe()} in target"
            f" '{target}': a rejection is final; train a new version"
        )
    status = found.tags.get(VALIDATION_STATUS)
    if verdict == APPROVED and status != PASSED:
        raise ApprovalRefused(
            f"model {model_name} version {found.version}: validation {status or 'not run'};"
            " only a version that passed validation can be approved"
        )
    return record(client, found, target, verdict, by, reason)
