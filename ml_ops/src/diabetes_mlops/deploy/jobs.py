"""From a checked job spec to the JobSettings a target gets, and comparing them with a job's."""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Iterator, Mapping
from typing import Any

from databricks.sdk.service.jobs import JobSettings

from diabetes_mlops.jobs.compute import for_compute
from diabetes_mlops.jobs.control_tasks import JOB_ID, RUN_JOB
from diabetes_mlops.jobs.specs import PLACEHOLDER, JobSpec, job_parameters
from diabetes_mlops.jobs.targets import Target
from diabetes_mlops.runtime.errors import UserError
from diabetes_mlops.runtime.owner import owner_tags

SERVING_STEP = "deploy_serving"


class DeployError(UserError, RuntimeError):
    """Deploying cannot go on; nothing after the failing step was changed."""


def resolve_settings(
    spec: JobSpec,
    target: Target,
    values: dict[str, str],
    job_ids: Mapping[str, int | None] | None = None,
) -> dict[str, Any]:
    """The spec with the target's name prefix, owner tags, identity, schedule (or trigger) pause,
    parameters and compute (jobs/compute.py), and every ${placeholder} replaced by `values`;
    ${model_name} is the job's own model_name. A run_job task's ${job_id.<spec name>} becomes
    that job's id from `job_ids` (spec name -> id in this target); one not known yet (None: the
    deploy creates that job) stays a placeholder, for `fill_job_ids` once the job exists."""
    settings = copy.deepcopy(spec.settings)
    settings["name"] = target.job_name_prefix + spec.name
    settings["run_as"] = run_as(target.run_as)
    settings["tags"] = {**(settings.get("tags") or {}), **owner_tags(target.name)}
    if target.paused:
        settings = paused(settings)
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
    settings = for_compute(settings, target.compute, target.serverless_environment_version)
    settings = fill_job_ids(settings, job_ids or {})
    return fill_placeholders(settings, values, spec.path.name)


def paused(settings: dict[str, Any]) -> dict[str, Any]:
    """A copy of the settings with the schedule and trigger paused (the rest as they are)."""
    settings = copy.deepcopy(settings)
    for when in ("schedule", "trigger"):
        if when in settings:
            settings[when]["pause_status"] = "PAUSED"
    return settings


# A service principal's application id, which is also its user name in the workspace.
_APPLICATION_ID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def run_as(identity: str) -> dict[str, str]:
    """JobSettings.run_as for a user name or a service principal's application id. Sent on
    every create and reset: a reset without it leaves whatever identity the job had (the Jobs
    API keeps run_as when new_settings omit it), so a hand-set identity would survive."""
    if _APPLICATION_ID.fullmatch(identity):
        return {"service_principal_name": identity}
    return {"user_name": identity}


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


# What jobs/get returns for a setting the request left out: the Jobs API's documented default,
# which is no change of ours. A value other than the default (edited by hand) is a change.
# Sources: databricks-sdk 0.156 JobSettings/Task docstrings (format "is always set to MULTI_TASK"
# with API 2.1+; timeout_seconds "0 means no timeout"; max_retries "0 means to never retry";
# retry_on_timeout and min_retry_interval_millis: no retry, immediately); max_concurrent_runs
# "The default behavior is to allow only 1 concurrent run" (the Jobs API text, as quoted in
# https://databrickslabs.github.io/brickster/reference/db_jobs_create.html); email
# notifications: "The default behavior is to not send any emails" (Jobs API text, as quoted in
# https://docs.prefect.io/integrations/prefect-databricks/jobs/); queue enabled by default for jobs
# created with API 2.2 (https://docs.databricks.com/jobs/jobs-api-updates.html); run_if "All
# succeeded ... is the default" (https://docs.databricks.com/workflows/jobs/conditional-tasks.html);
# notebook source WORKSPACE without git_source (NotebookTask.source).
JOB_DEFAULTS: dict[str, Any] = {
    "format": "MULTI_TASK",
    "max_concurrent_runs": 1,
    "timeout_seconds": 0,
    "email_notifications": {},
    "webhook_notifications": {},
    "notification_settings": {},
    "queue": {"enabled": True},
}
TASK_DEFAULTS: dict[str, Any] = {
    "timeout_seconds": 0,
    "max_retries": 0,
    "min_retry_interval_millis": 0,
    "retry_on_timeout": False,
    "run_if": "ALL_SUCCESS",
    "email_notifications": {},
    "webhook_notifications": {},
    "notification_settings": {},
}
NOTEBOOK_TASK_DEFAULTS: dict[str, Any] = {"source": "WORKSPACE"}


def same_settings(
    wanted: dict[str, Any], current: JobSettings | None, creator: str | None = None
) -> bool:
    """Whether the job's settings (jobs/get) are exactly what a reset would send, once both are
    read as the SDK reads them (unknown fields and empty values dropped) and the defaults the
    server fills in are set aside. A field set by hand, a task added or removed, a changed value:
    all are changes. `run_as` naming the job's creator is the default too (a job runs as its
    creator unless run_as says otherwise). A job id still a placeholder (the job it names is yet
    to be created) is a change."""
    if current is None or any(job_id_placeholders(wanted)):
        return False
    want = comparable(JobSettings.from_dict(wanted).as_dict())
    have = comparable(current.as_dict())
    _drop_defaults(have, want, JOB_DEFAULTS)
    as_creator = ({"user_name": creator}, {"service_principal_name": creator})
    if "run_as" not in want and creator and have.get("run_as") in as_creator:
        del have["run_as"]  # a user's job, or a service principal's (keyless CI deploys)
    for key, task in have.get("tasks", {}).items():
        wanted_task = want.get("tasks", {}).get(key, {})
        _drop_defaults(task, wanted_task, TASK_DEFAULTS)
        if "notebook_task" in task:
            _drop_defaults(
                task["notebook_task"], wanted_task.get("notebook_task", {}), NOTEBOOK_TASK_DEFAULTS
            )
    return have == want


def comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings whose lists the server may return in another order keyed instead: tasks by
    task_key, job parameters by name, each task's depends_on by task_key."""
    settings = copy.deepcopy(settings)
    if "tasks" in settings:
        tasks = {task["task_key"]: task for task in settings["tasks"]}
        for task in tasks.values():
            if "depends_on" in task:
                task["depends_on"] = sorted(task["depends_on"], key=lambda d: d["task_key"])
        settings["tasks"] = tasks
    if "parameters" in settings:
        settings["parameters"] = {p["name"]: p for p in settings["parameters"]}
    return settings


def _drop_defaults(have: dict[str, Any], want: dict[str, Any], defaults: dict[str, Any]) -> None:
    for key, default in defaults.items():
        if key not in want and key in have and have[key] == default:
            del have[key]


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
    defaults = job_parameters(settings)
    tasks = [dataclasses.replace(task, job_parameters=dict(defaults)) for task in tasks]
    return JobSpec(spec.path, settings, tasks, list(spec.control_tasks))
