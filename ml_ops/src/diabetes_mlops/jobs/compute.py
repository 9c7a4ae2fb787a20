"""The compute a target's jobs run on, as deploy.yml declares it: the `cluster:` mapping of
clusters/create fields and its rules, judged before anything is deployed."""

from __future__ import annotations

from typing import Any

# Unity Catalog needs a cluster in dedicated (SINGLE_USER) or standard (USER_ISOLATION) access mode;
# the ML runtime runs only in dedicated mode: "Databricks Runtime for ML is not supported" on
# standard compute (https://learn.microsoft.com/en-sg/azure/Databricks/compute/standard-limitations);
# dedicated compute "can only be used by the single user or group assigned to it"
# (https://docs.databricks.com/aws/compute/dedicated-overview).
ACCESS_MODES = ("SINGLE_USER", "USER_ISOLATION")
TEXT = ("spark_version", "node_type_id", "driver_node_type_id", "single_user_name")
NUMBERS = ("num_workers", "autotermination_minutes")
MAPPINGS = ("spark_conf", "custom_tags", "spark_env_vars")
BOUNDS = ("min_workers", "max_workers")
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
        bounds = [scale.get(k) for k in BOUNDS] if isinstance(scale, dict) else []
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
