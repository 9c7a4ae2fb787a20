"""Approval step: where the target requires it, a validated version waits here for a person's
approval before promote may make it champion.

The task fails, saying what it waits for and how to approve, until the version's approval tag
for this target (tracking/approvals.py) says Approved; the run is then repaired (`diabetes-mlops
approve` does it) and goes on to promote. Rejected: the task fails and the version is never
promoted. A version that failed validation has nothing to approve: promote refuses it anyway.
"""

from __future__ import annotations

import logging
from typing import Annotated

from mlflow.tracking import MlflowClient

from diabetes_mlops.runtime.errors import UserError
from diabetes_mlops.runtime.owner import LOCAL_TARGET as LOCAL
from diabetes_mlops.runtime.parameters import OneOf
from diabetes_mlops.steps.common import ModelName, ModelRef, Registry
from diabetes_mlops.tracking import approvals
from diabetes_mlops.tracking.registry import PASSED, VALIDATION_STATUS, champion, get_version
from diabetes_mlops.tracking.runs import use_registry

log = logging.getLogger(__name__)

ApprovalSetting = Annotated[str, OneOf(*approvals.APPROVAL_SETTINGS)]


class ApprovalPending(UserError, RuntimeError):
    """The version waits for a person's decision; the message says how to give it."""


class ApprovalRejected(UserError, RuntimeError):
    """A person rejected the version in this target."""


def approval(
    model_name: ModelName,
    model_version: ModelRef,
    registry: Registry = "workspace",
    approval: ApprovalSetting = approvals.NOT_REQUIRED,
    deploy_target: str = "",
    job_run_id: str = "",
) -> dict[str, str]:
    """Pass when the target requires no approval, when the version has nothing to approve
    (it is the champion already: training found nothing new to learn; or validation did not
    pass), or when a person approved it in `deploy_target`; otherwise fail,
    recording `job_run_id` as the run that waits."""
    if approval == approvals.NOT_REQUIRED:
        return {"approval": "not required"}
    if not deploy_target:
        raise ApprovalPending(
            "approval: required, but the job names no deploy_target to approve in"
        )
    use_registry(registry, model_name)
    client = MlflowClient()
    version = get_version(client, model_name, model_version)
    current = champion(client, model_name)
    if current is not None and str(current.version) == str(version.version):
        log.info(
            "%s version %s is the champion already: nothing to approve", model_name, version.version
        )
        return {"approval": "not asked: the champion already"}
    status = version.tags.get(VALIDATION_STATUS)
    if status != PASSED:
        log.info(
            "%s version %s: validation %s, nothing to approve", model_name, version.version, status
        )
        return {"approval": f"not asked: validation {status or 'not run'}"}
    found = approvals.decision(version.tags, deploy_target)
    what = f"model {model_name} version {version.version}"
    if found.verdict == approvals.APPROVED:
        log.info("%s: %s in target %s", what, found.describe(), deploy_target)
        return {"approval": approvals.APPROVED, "approved_by": found.by}
    if found.verdict == approvals.REJECTED:
        raise ApprovalRejected(
            f"{what} was {found.describe()} in target '{deploy_target}': it will not be promoted"
        )
    approvals.mark_waiting(client, version, deploy_target, job_run_id)
    raise ApprovalPending(waiting_message(what, deploy_target, str(version.version)))


def waiting_message(what: str, target: str, version: str) -> str:
    """What the run waits for, and the commands that decide it."""
    where = " --local" if target == LOCAL else ""
    tag = approvals.keys(target).verdict
    return (
        f"waiting for approval: {what} passed validation and needs a person's approval in target"
        f" '{target}' before it becomes champion. Approve: diabetes-mlops approve {target}"
        f' {version}{where} --reason "..." (tags the version and repairs this run), or set tag'
        f" {tag}=Approved on the version in Catalog Explorer and repair the run. Reject:"
        f' diabetes-mlops reject {target} {version}{where} --reason "..."'
    )
