"""Permissions as code: the grants a target's `permissions:` asks for (jobs/permissions.py),
given on its jobs, serving endpoint, experiment and registered model by every deploy.

Only ever added: a principal that holds a level at or above the one asked for (directly or
inherited) is left as it is, and nothing is removed, so a permission someone else granted is
never touched and a re-deploy changes nothing ("unchanged"). The Permissions API's PATCH
(`update_permissions`) sets the named principals' levels and leaves the others; a Unity Catalog
grant is `w.grants.update("function", <model>, changes=[PermissionsChange(principal, add=...)])`
(a model's securable type is FUNCTION: the SDK's RegisteredModelsAPI). Every principal is looked
up first (SCIM filters `userName eq`, `displayName eq`, `applicationId eq`): one that does not
exist is one line, before any change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound
from databricks.sdk.service import jobs, ml, serving
from databricks.sdk.service.catalog import PermissionsChange, Privilege

from diabetes_mlops.deploy.grants import held_privileges
from diabetes_mlops.deploy.jobs import DeployError
from diabetes_mlops.jobs.permissions import (
    ENDPOINT,
    EXPERIMENT,
    JOBS,
    LEVELS,
    MODEL,
    Grant,
    Principal,
)
from diabetes_mlops.jobs.targets import Target

GRANTED, UNCHANGED, LATER = "granted", "unchanged", "later"
MODEL_SECURABLE = "function"


@dataclass
class PermissionPlan:
    what: str  # "job 'x'", "serving endpoint 'y'", ...
    grant: Grant
    state: str  # to grant, unchanged, later (the object does not exist yet)
    note: str = ""

    def line(self, done: bool = False) -> str:
        action = {GRANTED: "granted" if done else "to grant", UNCHANGED: "unchanged"}
        state = action.get(self.state, self.note)
        held = f" ({self.note})" if self.note and self.state != LATER else ""
        return (
            f"permissions: {self.what}: {self.grant.level} for {self.grant.principal}:"
            f" {state}{held}"
        )


def check_principals(w: WorkspaceClient, grants: list[Grant], target: str) -> None:
    """Every principal the grants name exists in the workspace; the first that does not is a
    DeployError naming it, before any change."""
    for principal in dict.fromkeys(g.principal for g in grants):
        if not _exists(w, principal):
            raise DeployError(
                f"target '{target}': permissions name {principal}, which does not exist in"
                f" {w.config.host} (deploy.yml permissions:)"
            )


def _exists(w: WorkspaceClient, principal: Principal) -> bool:
    name = principal.name.replace('"', '\\"')
    if principal.kind == "user":
        return any(w.users.list(filter=f'userName eq "{name}"', attributes="userName"))
    if principal.kind == "group":
        return any(w.groups.list(filter=f'displayName eq "{name}"', attributes="displayName"))
    return any(w.service_principals.list(filter=f'applicationId eq "{name}"'))


@dataclass(frozen=True)
class _Kind:
    """How one object type's permissions are read and granted."""

    read: Callable[[WorkspaceClient, str], Any]
    write: Callable[[WorkspaceClient, str, list[Any]], Any]
    request: type
    level: type


_KINDS = {
    JOBS: _Kind(
        lambda w, i: w.jobs.get_permissions(i),
        lambda w, i, acl: w.jobs.update_permissions(i, access_control_list=acl),
        jobs.JobAccessControlRequest,
        jobs.JobPermissionLevel,
    ),
    ENDPOINT: _Kind(
        lambda w, i: w.serving_endpoints.get_permissions(i),
        lambda w, i, acl: w.serving_endpoints.update_permissions(i, access_control_list=acl),
        serving.ServingEndpointAccessControlRequest,
        serving.ServingEndpointPermissionLevel,
    ),
    EXPERIMENT: _Kind(
        lambda w, i: w.experiments.get_permissions(i),
        lambda w, i, acl: w.experiments.update_permissions(i, access_control_list=acl),
        ml.ExperimentAccessControlRequest,
        ml.ExperimentPermissionLevel,
    ),
}
_FIELD = {"user": "user_name", "group": "group_name", "service_principal": "service_principal_name"}


def plan_object(
    w: WorkspaceClient, on: str, what: str, object_id: str | None, grants: list[Grant],
    missing: str = "",
) -> list[PermissionPlan]:  # fmt: skip
    """The grants on one object: unchanged where a principal holds the level or a higher one,
    to grant otherwise; `later` (with `missing`, saying when) when the object does not exist."""
    mine = [g for g in grants if g.on == on]
    if not mine:
        return []
    if object_id is None:
        return [PermissionPlan(what, g, LATER, missing) for g in mine]
    if on == MODEL:
        return [_model_plan(w, what, object_id, g) for g in mine]
    acl = _KINDS[on].read(w, object_id).access_control_list or []
    plans = []
    for grant in mine:
        held = _levels_held(acl, grant.principal)
        order = LEVELS[on]
        top = max((order.index(h) for h in held if h in order), default=-1)
        if "IS_OWNER" in held or top >= order.index(grant.level):
            note = "" if grant.level in held else f"holds {order[top] if top >= 0 else 'IS_OWNER'}"
            plans.append(PermissionPlan(what, grant, UNCHANGED, note))
        else:
            plans.append(PermissionPlan(what, grant, GRANTED))
    return plans


def _levels_held(acl: list[Any], principal: Principal) -> set[str]:
    field = _FIELD[principal.kind]
    return {
        permission.permission_level.value
        for entry in acl
        if getattr(entry, field, None) == principal.name
        for permission in entry.all_permissions or []
        if permission.permission_level is not None
    }


def _model_plan(w: WorkspaceClient, what: str, full_name: str, grant: Grant) -> PermissionPlan:
    held = held_privileges(w, MODEL_SECURABLE, full_name, grant.principal.name)
    if Privilege.ALL_PRIVILEGES in held or Privilege(grant.level) in held:
        note = "" if Privilege(grant.level) in held else "holds ALL_PRIVILEGES"
        return PermissionPlan(what, grant, UNCHANGED, note)
    return PermissionPlan(what, grant, GRANTED)


def apply(w: WorkspaceClient, plans: list[PermissionPlan], ids: dict[str, str]) -> None:
    """Grant what the plans mark to grant; `ids`: object (PermissionPlan.what) -> id or model."""
    for plan in plans:
        if plan.state != GRANTED:
            continue
        grant, object_id = plan.grant, ids[plan.what]
        if grant.on == MODEL:
            change = PermissionsChange(principal=grant.principal.name, add=[Privilege(grant.level)])
            w.grants.update(MODEL_SECURABLE, object_id, changes=[change])
            continue
        kind = _KINDS[grant.on]
        request = kind.request(
            permission_level=kind.level(grant.level),
            **{_FIELD[grant.principal.kind]: grant.principal.name},
        )
        kind.write(w, object_id, [request])


def objects(
    w: WorkspaceClient, target: Target, job_ids: dict[str, int | None], experiment_id: str | None
) -> list[tuple[str, str, str | None, str]]:
    """(object kind, what, id or None, when it will exist) for each object the target has."""
    found: list[tuple[str, str, str | None, str]] = [
        (
            JOBS,
            f"job '{name}'",
            None if job_id is None else str(job_id),
            "the job this deploy creates",
        )
        for name, job_id in job_ids.items()
    ]
    found.append(
        (EXPERIMENT, f"experiment {target.experiment_name}", experiment_id,
         "granted once the experiment exists")
    )  # fmt: skip
    endpoint = target.parameters.get("serving_endpoint", "")
    if endpoint:
        found.append(
            (ENDPOINT, f"serving endpoint '{endpoint}'",
             _id_if_found(lambda: w.serving_endpoints.get(endpoint).id),
             "the first rollout creates it; granted by the next deploy")
        )  # fmt: skip
    model = target.parameters.get("model_name", "")
    if target.parameters.get("registry") == "unity_catalog" and model:
        found.append(
            (MODEL, f"model {model}",
             _id_if_found(lambda: w.registered_models.get(model).full_name),
             "the first training registers it; granted by the next deploy")
        )  # fmt: skip
    return found


def _id_if_found(get: Callable[[], str | None]) -> str | None:
    """The object's id (or name), None when the workspace has no such object yet."""
    try:
        return get()
    except NotFound:
        return None


def plans_for(
    w: WorkspaceClient,
    target: Target,
    job_ids: dict[str, int | None],
    experiment_id: str | None,
    planned: Sequence[PermissionPlan] = (),
) -> tuple[list[PermissionPlan], dict[str, str]]:
    """Every grant of the target, planned on the objects that exist; and their ids. An object
    `planned` already planned (it existed then) keeps those plans: its permissions are not read
    twice in one deploy; only what did not exist yet (a job the deploy created) is read now."""
    grants = target.grants
    plans: list[PermissionPlan] = []
    ids: dict[str, str] = {}
    if not grants:
        return plans, ids
    known = {p.what for p in planned if p.state != LATER}
    for on, what, object_id, missing in objects(w, target, job_ids, experiment_id):
        if what in known:
            plans += [p for p in planned if p.what == what]
        else:
            plans += plan_object(w, on, what, object_id, grants, missing)
        if object_id is not None:
            ids[what] = object_id
    return plans, ids
