"""Jobs that run jobs (run_job tasks) in a deploy: the order that creates a referenced job
before the job that names it, and the job ids filled in once those jobs exist.

A spec names the job it runs by ${job_id.<spec name>}: each target has its own copy of that job
(its name is the target's job_name_prefix + the spec's name), with its own id.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from diabetes_mlops.deploy.jobs import DeployError, fill_job_ids, job_id_placeholders
from diabetes_mlops.jobs.specs import JobSpec
from diabetes_mlops.jobs.targets import Target

PENDING = "<id of job '{}', created by this deploy>"


def deploy_order(specs: list[JobSpec]) -> list[JobSpec]:
    """The specs with every job a run_job task runs before the job that runs it (otherwise in
    the given order): on a first deploy the referenced job must exist for its id to be known.
    Validation refused cycles (check_job_references), so the order exists."""
    by_name = {spec.name: spec for spec in specs}
    ordered: list[JobSpec] = []

    def visit(spec: JobSpec) -> None:
        if spec.name in {done.name for done in ordered}:
            return
        for name in spec.referenced_jobs:
            visit(by_name[name])
        ordered.append(spec)

    for spec in specs:
        visit(spec)
    return ordered


def check_deployed(deployed: list[JobSpec], target: Target) -> None:
    """Each job a run_job task runs is one this target deploys (serving_trigger may leave a job
    out): otherwise DeployError, before anything in the workspace changes."""
    names = {spec.name for spec in deployed}
    for spec in deployed:
        missing = [name for name in spec.referenced_jobs if name not in names]
        if missing:
            raise DeployError(
                f"{spec.path.name}: job '{spec.name}' runs job(s) {', '.join(missing)}, which"
                f" target '{target.name}' does not deploy (serving_trigger:"
                f" {target.serving_trigger})"
            )


def with_job_ids(
    settings: dict[str, Any], job_ids: Mapping[str, int | None], job: str
) -> dict[str, Any]:
    """The settings to create or reset the job with: every ${job_id.X} an int. A job id still
    unknown here means the order went wrong: DeployError rather than a job that cannot run."""
    filled = fill_job_ids(settings, job_ids)
    unknown = sorted(name for _, name in job_id_placeholders(filled))
    if unknown:
        raise DeployError(
            f"job '{job}': the id of job(s) {', '.join(unknown)} is not known: deploy again"
        )
    return filled


def shown(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings as `deploy --plan` prints them: a job id the deploy will know only once it
    has created that job is shown as such."""
    settings = copy.deepcopy(settings)
    for run_job, name in job_id_placeholders(settings):
        run_job["job_id"] = PENDING.format(name)
    return settings
