"""A target's `permissions:` in deploy.yml: who may do what on its jobs, serving endpoint,
experiment and registered model. Read and judged here, before anything is deployed; granted by
deploy/permissions.py.

    permissions:
      jobs: {CAN_VIEW: [group:data-scientists], CAN_MANAGE_RUN: [group:ml-ops]}
      serving_endpoint: {CAN_QUERY: [service_principal:1234abcd-...]}
      experiment: {CAN_READ: [group:data-scientists]}
      model: {EXECUTE: [group:apps], APPLY_TAG: [group:approvers]}

The levels are the Permissions API's for jobs (JobPermissionLevel), serving endpoints
(ServingEndpointPermissionLevel) and experiments (ExperimentPermissionLevel) in databricks-sdk
0.156.0, and Unity Catalog privileges for the registered model (catalog.Privilege; a model's
securable type is FUNCTION: the SDK's RegisteredModelsAPI). A principal is `user:<user name>`,
`group:<group name>` or `service_principal:<application id>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JOBS, ENDPOINT, EXPERIMENT, MODEL = "jobs", "serving_endpoint", "experiment", "model"
# Each object's levels, lowest first: a grant never lowers a higher level someone holds.
LEVELS: dict[str, tuple[str, ...]] = {
    JOBS: ("CAN_VIEW", "CAN_MANAGE_RUN", "CAN_MANAGE"),
    ENDPOINT: ("CAN_VIEW", "CAN_QUERY", "CAN_MANAGE"),
    EXPERIMENT: ("CAN_READ", "CAN_EDIT", "CAN_MANAGE"),
    MODEL: ("EXECUTE", "APPLY_TAG", "MANAGE"),  # privileges: a set, not an order
}
KINDS = ("user", "group", "service_principal")


@dataclass(frozen=True)
class Principal:
    kind: str  # user, group or service_principal
    name: str  # user name, group name, or a service principal's application id

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class Grant:
    on: str  # jobs, serving_endpoint, experiment or model
    level: str
    principal: Principal


def parse_permissions(spec: Any) -> tuple[list[Grant], list[str]]:
    """The grants a `permissions:` mapping asks for, and its problems (one phrase each; the
    caller names the file and target)."""
    if spec in (None, {}):
        return [], []
    if not isinstance(spec, dict):
        return [], [f"permissions must be a mapping of {', '.join(LEVELS)}, got {spec!r}"]
    grants, problems = [], []
    for on, levels in spec.items():
        if on not in LEVELS:
            problems.append(f"permissions: unknown object {on!r} (known: {', '.join(LEVELS)})")
            continue
        if not isinstance(levels, dict):
            problems.append(f"permissions.{on} must map levels to principals, got {levels!r}")
            continue
        for level, principals in levels.items():
            if level not in LEVELS[on]:
                problems.append(
                    f"permissions.{on}: unknown level {level!r} (known: {', '.join(LEVELS[on])})"
                )
                continue
            if not isinstance(principals, list):
                problems.append(f"permissions.{on}.{level} must be a list, got {principals!r}")
                continue
            for text in principals:
                principal = _principal(text)
                if principal is None:
                    problems.append(
                        f"permissions.{on}.{level}: {text!r} is not user:<name>,"
                        " group:<name> or service_principal:<application id>"
                    )
                elif on != MODEL and any(g.on == on and g.principal == principal for g in grants):
                    problems.append(
                        f"permissions.{on}: {principal} is named at two levels; name it once,"
                        " at the highest it should have"
                    )
                else:
                    grants.append(Grant(on, level, principal))
    return grants, problems


def _principal(text: Any) -> Principal | None:
    if not isinstance(text, str):
        return None
    kind, sep, name = text.partition(":")
    if not sep or kind not in KINDS or not name.strip():
        return None
    return Principal(kind, name.strip())
