"""The all-purpose cluster a target's jobs run on: its deploy.yml spec (checked by
`diabetes_mlops.jobs.compute`) turned into a clusters/create request, and compared with the cluster
the workspace has.

Only the fields deploy.yml sets are compared, each normalised for what the server echoes
differently (numbers as numbers, Spark conf values as text, the legacy and new names of an access
mode, and the current worker count an autoscaling cluster reports): a cluster someone tuned by hand
is reported field by field, never changed.
"""

from __future__ import annotations

from typing import Any

from databricks.sdk.service.compute import AutoScale, DataSecurityMode

from diabetes_mlops.jobs.compute import FIELDS, MAPPINGS, TEXT

# The same access modes under their newer names (databricks-sdk 0.156 DataSecurityMode: legacy
# aliases), as a workspace may echo them.
_ALIASES = {
    "DATA_SECURITY_MODE_DEDICATED": "SINGLE_USER",
    "DATA_SECURITY_MODE_STANDARD": "USER_ISOLATION",
}


def create_args(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of `w.clusters.create` for a checked spec."""
    args: dict[str, Any] = {"cluster_name": name}
    for key, value in spec.items():
        if key == "autoscale":
            args[key] = AutoScale(
                min_workers=value["min_workers"], max_workers=value["max_workers"]
            )
        elif key == "data_security_mode":
            args[key] = DataSecurityMode(value)
        elif key in MAPPINGS:
            args[key] = {str(k): str(v) for k, v in value.items()}
        else:
            args[key] = value
    return args


def differences(spec: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """`field: ours X vs theirs Y` for each field deploy.yml sets that the cluster (its clusters/get
    or clusters/list JSON) has otherwise."""
    found = []

    def differ(field: str, ours: Any, their: Any) -> None:
        found.append(f"{field}: ours {_shown(ours)} vs theirs {_shown(their)}")

    for key, value in ((k, spec[k]) for k in FIELDS if k in spec):  # one order, whatever YAML's
        if key in TEXT:
            their = theirs.get(key)
            if key == "single_user_name":  # user names are e-mail addresses: any case
                value, their = str(value).lower(), None if their is None else str(their).lower()
            if value != their:
                differ(key, value, their)
        elif key == "num_workers":
            if "autoscale" in theirs:
                differ(key, value, f"autoscale {_range(theirs['autoscale'])}")
            elif _number(theirs.get(key, 0)) != value:  # the API leaves out num_workers: 0
                differ(key, value, theirs.get(key))
        elif key == "autotermination_minutes":
            if _number(theirs.get(key)) != value:
                differ(key, value, theirs.get(key))
        elif key == "autoscale":
            their = theirs.get("autoscale")
            if not isinstance(their, dict):
                differ(
                    key, _range(value), f"fixed size, num_workers {theirs.get('num_workers', 0)}"
                )
            elif _range(their) != _range(value):
                differ(key, _range(value), _range(their))
        elif key == "data_security_mode":
            their = theirs.get(key)
            if _ALIASES.get(str(their), their) != value:
                differ(key, value, their)
        elif key in MAPPINGS:
            their = theirs.get(key) or {}
            for name, ours in value.items():
                if str(name) not in their:
                    differ(f"{key}.{name}", str(ours), None)
                elif str(their[str(name)]) != str(ours):
                    differ(f"{key}.{name}", str(ours), their[str(name)])
    return found


def _number(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _range(scale: dict[str, Any]) -> str:
    return f"{_number(scale.get('min_workers'))}-{_number(scale.get('max_workers'))}"


def _shown(value: Any) -> str:
    return "(not set)" if value is None else repr(value) if isinstance(value, str) else str(value)
