"""From a checked job spec to the JobSettings a target gets, and finding jobs by name."""

from __future__ import annotations

import copy
from typing import Any

from databricks.sdk import WorkspaceClient
from databricks.sdk.service.jobs import BaseJob, JobSettings

from diabetes_mlops.deploy.config import Target
from diabetes_mlops.job_specs import PLACEHOLDER, JobSpec


class DeployError(RuntimeError):
    """Deploying cannot go on; nothing after the failing step was changed."""


def resolve_settings(spec: JobSpec, target: Target, values: dict[str, str]) -> dict[str, Any]:
    """The spec with the target's name prefix, schedule pause and parameters, and every
    ${placeholder} replaced by `values`."""
    settings = copy.deepcopy(spec.settings)
    settings["name"] = target.job_name_prefix + spec.name
    if target.paused and "schedule" in settings:
        settings["schedule"]["pause_status"] = "PAUSED"
    for parameter in settings.get("parameters") or []:
        parameter["default"] = target.parameters.get(parameter["name"], parameter["default"])
    job_parameters = {p["name"] for p in settings.get("parameters") or []}
    task_parameters = {k: v for k, v in target.parameters.items() if k not in job_parameters}
    applied = spec.overrides_by_task(task_parameters)
    for task in settings["tasks"]:
        task["notebook_task"].setdefault("base_parameters", {}).update(applied[task["task_key"]])
    return fill_placeholders(settings, values, spec.path.name)


def fill_placeholders(value: Any, values: dict[str, str], source: str) -> Any:
    if isinstance(value, str):

        def fill(match) -> str:
            if match.group(1) not in values:
                raise DeployError(f"{source}: unresolved placeholder ${{{match.group(1)}}}")
            return values[match.group(1)]

        return PLACEHOLDER.sub(fill, value)
    if isinstance(value, list):
        return [fill_placeholders(v, values, source) for v in value]
    if isinstance(value, dict):
        return {k: fill_placeholders(v, values, source) for k, v in value.items()}
    return value


def find_job(w: WorkspaceClient, name: str) -> BaseJob | None:
    """The one job with exactly this name, None when there is none; several is an error."""
    jobs = [job for job in w.jobs.list(name=name) if job.settings and job.settings.name == name]
    if len(jobs) > 1:
        ids = ", ".join(str(job.job_id) for job in jobs)
        raise DeployError(
            f"{len(jobs)} jobs are named '{name}' (ids {ids}); delete or rename all but one,"
            " then deploy again"
        )
    return jobs[0] if jobs else None


def same_settings(wanted: dict[str, Any], current: JobSettings | None) -> bool:
    """Whether the job already has every value we set (the server may add defaults of its own)."""
    if current is None:
        return False
    return _contains(current.as_dict(), JobSettings.from_dict(wanted).as_dict())


def _contains(have: Any, want: Any) -> bool:
    if isinstance(want, dict):
        return isinstance(have, dict) and all(_contains(have.get(k), v) for k, v in want.items())
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(have) == len(want)
            and all(_contains(h, w) for h, w in zip(have, want, strict=True))
        )
    return have == want
