"""What `make deploy-plan` shows of the serving endpoint a target's jobs will manage: the
settings the deploy_serving task will run with (the target's parameters applied to the spec,
read by the step's own rules) and what the endpoint serves in the workspace now."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError
from databricks.sdk.service.serving import EndpointStateConfigUpdate

from diabetes_mlops.deploy.jobs import SERVING_STEP, DeployError
from diabetes_mlops.jobs.preflight import step_calls
from diabetes_mlops.jobs.specs import JobSpec
from diabetes_mlops.runtime.errors import sdk_error_line
from diabetes_mlops.serving.endpoint_config import (
    EndpointSettings,
    owner_problem,
    served,
    served_in,
)
from diabetes_mlops.serving.rollout import find_endpoint
from diabetes_mlops.steps.deploy_serving import endpoint_settings


@dataclass(frozen=True)
class ServingPlan:
    job: str  # the job name as the target deploys it
    task: str
    settings: EndpointSettings | None  # None: the target serves no endpoint
    state: str = ""  # what the endpoint serves now

    def lines(self) -> list[str]:
        where = f"job '{self.job}' task {self.task}"
        if self.settings is None:
            return [f"serving: none for this target (serving_endpoint is empty; {where})"]
        return [
            f"serving endpoint '{self.settings.name}' ({where}): {self.state}",
            f"  {self.settings.describe()}",
        ]


def serving_plans(
    w: WorkspaceClient,
    specs: list[JobSpec],
    parameters: Mapping[str, str],
    job_name_prefix: str = "",
) -> list[ServingPlan]:
    """One plan per task of the specs that runs deploy_serving, with `parameters` (a target's)
    applied. The values were judged before (Deployer._specs), so they parse here."""
    plans = []
    wanted = inspect.signature(endpoint_settings).parameters
    for call in step_calls(specs, parameters):
        if call.step_name != SERVING_STEP:
            continue
        arguments, _ = call.arguments()
        job, task = job_name_prefix + call.spec.name, call.task.key
        if not arguments.get("serving_endpoint"):
            plans.append(ServingPlan(job, task, None))
            continue
        settings = endpoint_settings(**{k: v for k, v in arguments.items() if k in wanted})
        plans.append(ServingPlan(job, task, settings, endpoint_state(w, settings)))
    return plans


def endpoint_state(w: WorkspaceClient, settings: EndpointSettings) -> str:
    """What `make deploy-plan` shows of the endpoint now. Deploy does not manage the endpoint, so
    an endpoint it may not read (403, ...) is shown as unknown, and the plan goes on. One that
    another target owns is a DeployError: its jobs would fail at their first rollout."""
    name = settings.name
    try:
        endpoint = find_endpoint(w, name)
    except DatabricksError as exc:
        message = sdk_error_line(exc)
        return (
            f"unknown ({exc.error_code}: {message})" if exc.error_code else f"unknown ({message})"
        )
    if endpoint is None:
        return "absent (created with the first champion)"
    problem = owner_problem(endpoint, settings)
    if problem:
        raise DeployError(problem)
    text = f"serving {served(endpoint).describe()}"
    state = endpoint.state
    if state and state.config_update and state.config_update.value != "NOT_UPDATING":
        text += f", config update {state.config_update.value}"
        if state.config_update == EndpointStateConfigUpdate.IN_PROGRESS and endpoint.pending_config:
            text += f" to {served_in(endpoint.pending_config).describe()}"
    if state and state.ready:
        text += f", {state.ready.value}"
    return text
