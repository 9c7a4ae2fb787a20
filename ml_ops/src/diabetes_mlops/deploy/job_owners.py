"""Which job in the workspace is a target's job for a spec, and which are not ours to touch.

A job is found by name (`jobs/list?name=`, an exact match) and then judged by its owner tags
(runtime.owner): only a job tagged with this project and this target is reset, renamed or
deleted. Two kinds of job with the right name are never taken:
- another target's (its `target` tag names it): two targets in one workspace whose job names
  clash; refused before any change, naming both;
- one this project did not make (no `project` tag): someone else's.
A job of this project made before jobs carried a target tag counts as this target's when every
notebook it runs lies in this target's notebook folder; otherwise it is refused too, with how to
claim it.

Jobs/create has no idempotency token, so a create whose answer was lost and that the SDK sent
again makes two jobs. Such duplicates carry this target's tags and identical settings: all but
the oldest are deleted (`duplicates`), by the deploy that made them and by any later one, so that
no schedule runs twice. Duplicates whose settings differ were edited by hand: refused, naming
them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from databricks.sdk import WorkspaceClient
from databricks.sdk.service.jobs import Job

from diabetes_mlops.deploy.jobs import DeployError, comparable
from diabetes_mlops.jobs.targets import Target
from diabetes_mlops.runtime.owner import PROJECT, PROJECT_TAG, TARGET_TAG, Owner


@dataclass
class Claim:
    """This target's job for one spec."""

    name: str  # the name the target gives the job
    current: Job | None = None  # the job to reset (jobs/get), None: none yet
    # This target's jobs that must go: duplicates of `current` (same settings, a create sent
    # again), and its jobs under the bare spec name once one under the prefixed name exists.
    duplicates: list[Job] = field(default_factory=list)
    former: list[Job] = field(default_factory=list)
    note: str = ""  # how `current` was recognised, when not by its tags

    @property
    def job_id(self) -> int | None:
        return self.current.job_id if self.current else None


def claim_job(w: WorkspaceClient, target: Target, spec_name: str, strict: bool = True) -> Claim:
    """The target's job for the spec named `spec_name`: under the name the target gives it, or
    under the bare spec name (the name before the target had a job_name_prefix), which a reset
    then renames. `strict`: a job under the target's name that is not the target's is a
    DeployError (raised before anything changes); otherwise it is left out."""
    name = target.job_name_prefix + spec_name
    claim = Claim(name)
    named = _named(w, name)
    foreign = [j for j in named if not _is_targets(j, target)]
    if foreign and strict:
        raise DeployError(_not_ours(foreign[0], name, target))
    named = [j for j in named if j not in foreign]
    earlier = [] if spec_name == name else _named(w, spec_name)
    earlier = [j for j in earlier if _is_targets(j, target)]
    mine, former = (named, earlier) if named else (earlier, [])
    if mine:
        keep, *extra = sorted(mine, key=lambda j: (j.created_time or 0, j.job_id or 0))
        differ = [j for j in extra if not same_job(j, keep)]
        if differ:
            ids = ", ".join(str(j.job_id) for j in [keep, *differ])
            raise DeployError(
                f"{len(mine)} jobs of target '{target.name}' are named"
                f" '{job_name(keep)}' (ids {ids}) and their settings differ: delete all but one,"
                " then deploy again"
            )
        claim.current, claim.duplicates = keep, extra
        if Owner.of(_tags(keep)).target is None:
            claim.note = (
                f"made before jobs carried a {TARGET_TAG} tag; its notebooks are this"
                " target's: tagged now"
            )
    claim.former = former
    return claim


def duplicates_of(w: WorkspaceClient, target: Target, created: int, name: str) -> list[Job]:
    """Jobs named `name`, tagged for `target`, with the same settings as the job just created
    (`created`): made by the same create request sent again after its answer was lost."""
    jobs = [j for j in _named(w, name) if _is_targets(j, target)]
    kept = next((j for j in jobs if j.job_id == created), None)
    if kept is None:
        return []
    return [j for j in jobs if j.job_id != created and same_job(j, kept)]


def same_job(one: Job, other: Job) -> bool:
    """The same settings, as jobs/get returns them."""
    have = one.settings.as_dict() if one.settings else {}
    want = other.settings.as_dict() if other.settings else {}
    return comparable(have) == comparable(want)


def _named(w: WorkspaceClient, name: str) -> list[Job]:
    """Every job with exactly this name, as jobs/get returns it (with its tasks and tags)."""
    return [
        w.jobs.get(job.job_id)
        for job in w.jobs.list(name=name)
        if job.job_id is not None and job.settings and job.settings.name == name
    ]


def _is_targets(job: Job, target: Target) -> bool:
    owner = Owner.of(_tags(job))
    if owner.is_target(target.name):
        return True
    return owner.ours and owner.target is None and _runs_notebooks_of(job, target)


def _runs_notebooks_of(job: Job, target: Target) -> bool:
    """Every task runs a notebook in the target's notebook folder (workspace source)."""
    folder = target.notebooks_dir.rstrip("/") + "/"
    tasks = (job.settings.tasks if job.settings else None) or []
    paths = [t.notebook_task.notebook_path or "" for t in tasks if t.notebook_task]
    return bool(paths) and all(path.startswith(folder) for path in paths)


def _not_ours(job: Job, name: str, target: Target) -> str:
    owner = Owner.of(_tags(job))
    if owner.ours and owner.target:
        return (
            f"job '{name}' (id {job.job_id}) belongs to target '{owner.target}', and target"
            f" '{target.name}' would deploy a job of the same name: give the two targets"
            " distinct job_name_prefix values in deploy.yml"
        )
    if owner.ours:
        return (
            f"job '{name}' (id {job.job_id}) is a {PROJECT} job with no {TARGET_TAG} tag"
            f" whose notebooks are not in target '{target.name}''s folder"
            f" {target.notebooks_dir}: if it is this target's, add the tag"
            f" {TARGET_TAG}={target.name} to it; if it is another target's, give the targets"
            " distinct job_name_prefix values in deploy.yml"
        )
    return (
        f"job '{name}' (id {job.job_id}) was not made by {PROJECT} (it has no tag"
        f" {PROJECT_TAG}={PROJECT}), and a deploy takes over no job it did not make: rename it,"
        f" or give target '{target.name}' another job_name_prefix in deploy.yml"
    )


def _tags(job: Job) -> dict[str, str]:
    return (job.settings.tags if job.settings else None) or {}


def job_name(job: Job) -> str:
    return (job.settings.name if job.settings else None) or "?"
