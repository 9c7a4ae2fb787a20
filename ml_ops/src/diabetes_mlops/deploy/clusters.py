"""The all-purpose cluster a target's jobs run on: its spec in deploy.yml, checked, turned into a
clusters/create request, and compared with the cluster the workspace has.

Only the fields deploy.yml sets are compared, each normalised for what the server echoes
differently (numbers as numbers, Spark conf values as text, the legacy and new names of an access
mode, and the current worker count an autoscaling cluster reports): a cluster someone tuned by hand
is reported field by field, never changed.
"""

from __future__ import annotations

from typing import Any

from databricks.sdk.service.compute import AutoScale, DataSecurityMode

# Unity Catalog needs a cluster in dedicated (SINGLE_USER) or standard (USER_ISOLATION) access mode;
# the ML runtime runs only in dedicated mode: "Databricks Runtime for ML is not supported" on
# standard compute (https://learn.microsoft.com/en-sg/azure/Databricks/compute/standard-limitations);
# dedicated compute "can only be used by the single user or group assigned to it"
# (https://docs.databricks.com/aws/compute/dedicated-overview).
ACCESS_MODES = ("SINGLE_USER", "USER_ISOLATION")
# The same access modes under their newer names (databricks-sdk 0.156 DataSecurityMode: legacy
# aliases), as a workspace may echo them.
_ALIASES = {
    "DATA_SECURITY_MODE_DEDICATED": "SINGLE_USER",
    "DATA_SECURITY_MODE_STANDARD": "USER_ISOLATION",
}
TEXT = ("spark_version", "node_type_id", "driver_node_type_id", "single_user_name")
NUMBERS = ("num_workers", "autotermination_minutes")
MAPPINGS = ("spark_conf", "custom_tags", "spark_env_vars")
_BOUNDS = ("min_workers", "max_workers")
FIELDS = (*TEXT, *NUMBERS, *MAPPINGS, "autoscale", "data_security_mode")


def spec_problems(spec: Any) -> list[str]:
    """What is wrong with a `cluster:` mapping of deploy.yml, one phrase per problem (the caller
    names the file and target)."""
    if not isinstance(spec, dict):
        return [f"cluster must be a mapping of clusters/create fields, got {spec!r}"]
    if not spec:
        return []
    problems = []
    unknown = sorted(set(spec) - set(FIELDS))
    if unknown:
        problems.append(
            f"cluster: unknown field(s) {', '.join(unknown)} (known: {', '.join(FIELDS)})"
        )
    for name in ("spark_version", "node_type_id"):
        if not isinstance(spec.get(name), str) or not spec[name]:
            problems.append(f"cluster.{name} must be set")
    if ("num_workers" in spec) == ("autoscale" in spec):
        problems.append("cluster sets exactly one of num_workers and autoscale")
    for name in NUMBERS:
        if name in spec and (not isinstance(spec[name], int) or spec[name] < 0):
            problems.append(f"cluster.{name} must be a whole number >= 0, got {spec[name]!r}")
    if "autoscale" in spec:
        scale = spec["autoscale"]
        bounds = [scale.get(k) for k in _BOUNDS] if isinstance(scale, dict) else []
        whole = len(bounds) == 2 and all(isinstance(b, int) and b >= 0 for b in bounds)
        if not whole or bounds[0] > bounds[1]:
            problems.append(f"cluster.autoscale needs min_workers <= max_workers, got {scale!r}")
    mode = spec.get("data_security_mode")
    if mode not in ACCESS_MODES:
        problems.append(
            f"cluster.data_security_mode must be one of {', '.join(ACCESS_MODES)}"
            f" (Unity Catalog needs one), got {mode!r}"
        )
    elif mode == "USER_ISOLATION" and "-ml-" in str(spec.get("spark_version", "")):
        problems.append(
            "cluster: an ML runtime does not run in USER_ISOLATION (standard) access mode:"
            " use SINGLE_USER"
        )
    elif mode == "SINGLE_USER" and not spec.get("single_user_name"):
        problems.append(
            "cluster.single_user_name must name the user or group the SINGLE_USER cluster is for"
        )
    for name in MAPPINGS:
        if name in spec and not isinstance(spec[name], dict):
            problems.append(f"cluster.{name} must be a mapping, got {spec[name]!r}")
    return problems


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
