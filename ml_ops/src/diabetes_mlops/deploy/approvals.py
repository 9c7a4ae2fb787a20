"""`diabetes-mlops approve|reject TARGET VERSION`: a person's decision on a model version in a
workspace target, recorded on the version (tracking/approvals.py), and the job run that waits
for it repaired through the Jobs API, as Databricks' deployment jobs do after an approval.

The run is repaired only when it is this target's job (its owner tags) and it failed at the
approval task: the approval task and the tasks after it run again (`rerun_tasks` with
`rerun_dependent_tasks`; jobs/runs/repair, https://docs.databricks.com/api/workspace/jobs/repairrun,
`latest_repair_id` for a run repaired before). A rejected version's run is left as it failed.
"""

from __future__ import annotations

from collections.abc import Callable

from databricks.sdk import WorkspaceClient
from databricks.sdk.service.jobs import Run, RunResultState

from diabetes_mlops.deploy.jobs import DeployError
from diabetes_mlops.deploy.workspace_registry import registry_client
from diabetes_mlops.jobs.targets import Target
from diabetes_mlops.runtime.owner import Owner
from diabetes_mlops.tracking import approvals
from diabetes_mlops.tracking.registry import champion, get_version

APPROVAL_TASK = "approval"  # the training job's task that waits (job_specs/...training.json)


def decide(
    w: WorkspaceClient,
    target: Target,
    version: str,
    verdict: str,
    reason: str,
    report: Callable[[str], None] = print,
) -> approvals.Decision:
    """Record the decision on the target's model version, then repair the run that waits for
    it (approved only)."""
    if target.approval != approvals.REQUIRED:
        raise DeployError(
            f"target '{target.name}' requires no approval (approval: {target.approval} in"
            " deploy.yml): nothing waits for one"
        )
    model_name = target.parameters["model_name"]
    with registry_client(target) as client:
        waiting = approvals.decision(get_version(client, model_name, version).tags, target.name)
        run = None
        if verdict == approvals.APPROVED and waiting.run:
            run = repairable_run(w, target, waiting.run)  # refused before anything is written
        found = approvals.record_decision(
            client, model_name, version, target.name, verdict, reason, _me(w)
        )
        report(
            f"model {model_name} version {version} in target '{target.name}': {found.describe()}"
        )
        current = champion(client, model_name) if verdict == approvals.REJECTED else None
    if verdict == approvals.REJECTED:
        if current is not None and str(current.version) == str(version):
            report(
                f"version {version} is the champion: rejecting it does not demote it; promote"
                " another version to replace it"
            )
        return found
    if run is None:
        report("no job run waits for it: the approval task will pass when the job reaches it")
        return found
    repair(w, run, report)
    return found


def repairable_run(w: WorkspaceClient, target: Target, run_tag: str) -> Run:
    """The run a version's tag names, if it is this target's job's and it failed at its approval
    task; a DeployError otherwise."""
    if not run_tag.isdigit():
        raise DeployError(
            f"the version's tag names run {run_tag!r}, which is no job run id of a workspace:"
            " repair the run by hand"
        )
    run = w.jobs.get_run(int(run_tag), include_history=True)
    job = w.jobs.get(run.job_id or 0)
    owner = Owner.of((job.settings.tags if job.settings else None) or {})
    if not owner.is_target(target.name):
        raise DeployError(
            f"run {run_tag} is of job id {run.job_id}, which is not target '{target.name}''s:"
            " not repaired"
        )
    task = next((t for t in run.tasks or [] if t.task_key == APPROVAL_TASK), None)
    result = task.state.result_state if task and task.state else None
    if result != RunResultState.FAILED:
        raise DeployError(
            f"run {run_tag}: its {APPROVAL_TASK} task is {result.value if result else 'not run'},"
            " not waiting: nothing to repair"
        )
    return run


def repair(w: WorkspaceClient, run: Run, report: Callable[[str], None]) -> int:
    """Repair the run from its approval task on; its repair id."""
    latest = (run.repair_history or [])[-1].id if run.repair_history else None
    repair_id = w.jobs.repair_run(
        run.run_id or 0,
        rerun_tasks=[APPROVAL_TASK],
        rerun_dependent_tasks=True,
        latest_repair_id=latest,
    ).response.repair_id
    where = f": {run.run_page_url}" if run.run_page_url else ""
    report(
        f"run {run.run_id} repaired from its {APPROVAL_TASK} task (repair id {repair_id}){where}"
    )
    return repair_id or 0


def _me(w: WorkspaceClient) -> str:
    me = w.current_user.me()
    return me.user_name or me.display_name or str(me.id)
