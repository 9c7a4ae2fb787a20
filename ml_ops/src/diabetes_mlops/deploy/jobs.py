"""From a checked job spec to the JobSettings a target gets, and finding jobs by name."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from databricks.sdk import WorkspaceClient
from databricks.sdk.service.jobs import BaseJob, JobSettings

from diabetes_mlops.control_tasks import JOB_ID, RUN_JOB
from diabetes_mlops.deploy.config import Target
from diabetes_mlops.job_specs import PLACEHOLDER, JobSpec

SERVING_STEP = "deploy_serving"


class DeployError(RuntimeError):
    """Deploying cannot go on; nothing after the failing step was changed."""


def resolve_settings(
    spec: JobSpec,
    target: Target,
    values: dict[str, str],
    job_ids: Mapping[str, int | None] | None = None,
) -> dict[str, Any]:
    """The spec with the target's name prefix, schedule (or trigger) pause and parameters, and
    every ${placeholder} replaced by `values`; ${model_name} is the job's own model_name. A
    run_job task's ${job_id.<spec name>} becomes that job's id from `job_ids` (spec name -> id in
    this target); one not known yet (None: the deploy creates that job) stays a placeholder, for
    `fill_job_ids` once the job exists."""
    settings = copy.deepcopy(spec.settings)
    settings["name"] = target.job_name_prefix + spec.name
    for when in ("schedule", "trigger"):
        if target.paused and when in settings:
            settings[when]["pause_status"] = "PAUSED"
    for parameter in settings.get("parameters") or []:
        parameter["default"] = target.parameters.get(parameter["name"], parameter["default"])
        if parameter["name"] == "model_name":
            values = {**values, "model_name": parameter["default"]}
    job_parameters = {p["name"] for p in settings.get("parameters") or []}
    task_parameters = {k: v for k, v in target.parameters.items() if k not in job_parameters}
    applied = spec.overrides_by_task(task_parameters)
    for task in settings["tasks"]:
        if task["task_key"] in applied:  # a notebook task (control tasks take no parameters)
            notebook_task = task["notebook_task"]
            notebook_task.setdefault("base_parameters", {}).update(applied[task["task_key"]])
    settings = fill_job_ids(settings, job_ids or {})
    return fill_placeholders(settings, values, spec.path.name)


def job_id_placeholders(settings: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """(run_job_task, spec name) for each run_job task whose job_id is ${job_id.<spec name>}."""
    for task in settings.get("tasks") or []:
        run_job = task.get(RUN_JOB) or {}
        match = JOB_ID.fullmatch(str(run_job.get("job_id")))
        if match:
            yield run_job, match.group(1)


def fill_job_ids(settings: dict[str, Any], job_ids: Mapping[str, int | None]) -> dict[str, Any]:
    """A copy with each ${job_id.<spec name>} whose id is known replaced by that int: the Jobs
    API takes run_job_task.job_id as an integer."""
    settings = copy.deepcopy(settings)
    for run_job, name in job_id_placeholders(settings):
        if job_ids.get(name) is not None:
            run_job["job_id"] = job_ids[name]
    return settings


def fill_placeholders(value: Any, values: dict[str, str], source: str) -> Any:
    if isinstance(value, str):

        def fill(match) -> str:
            if JOB_ID.fullmatch(match.group(0)):  # a job this deploy creates: fill_job_ids
                return match.group(0)
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
    """Whether the job already has every value we set (the server may add defaults of its own).
    A job id still a placeholder (the job it names is yet to be created) is a change."""
    if current is None or any(job_id_placeholders(wanted)):
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


def model_triggered(spec: JobSpec) -> bool:
    """A job Unity Catalog starts when the model changes (JobSettings.trigger.model)."""
    return "model" in (spec.settings.get("trigger") or {})


def for_serving_trigger(specs: list[JobSpec], trigger: str) -> list[JobSpec]:
    """The jobs a target gets. `task`: the training job serves the champion in its
    deploy_serving task, and the model-triggered job is not deployed. `model`: the
    model-triggered job serves it, and the other jobs lose their deploy_serving tasks (and the
    job parameters only those took), so the champion is not rolled out twice."""
    if trigger == "task":
        return [spec for spec in specs if not model_triggered(spec)]
    return [spec if model_triggered(spec) else _without_serving(spec) for spec in specs]


def _without_serving(spec: JobSpec) -> JobSpec:
    drop = {task.key for task in spec.tasks if SERVING_STEP in task.notebook.steps}
    if not drop:
        return spec
    tasks = [task for task in spec.tasks if task.key not in drop]
    kept = [task for task in spec.all_tasks if task.key not in drop]
    needing = sorted(task.key for task in kept if set(task.depends_on) & drop)
    if needing:
        raise DeployError(
            f"{spec.path.name}: task(s) {', '.join(needing)} depend on {SERVING_STEP}, which"
            " serving_trigger: model removes from this job"
        )
    taken = {name for task in tasks for name in task.notebook.widgets}
    settings = copy.deepcopy(spec.settings)
    settings["tasks"] = [t for t in settings["tasks"] if t["task_key"] not in drop]
    settings["parameters"] = [p for p in settings.get("parameters") or [] if p["name"] in taken]
    job_parameters = {p["name"]: p.get("default", "") for p in settings["parameters"]}
    tasks = [dataclasses.replace(task, job_parameters=dict(job_parameters)) for task in tasks]
    return JobSpec(spec.path, settings, tasks, list(spec.control_tasks))
