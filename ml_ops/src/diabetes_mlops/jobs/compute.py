"""The compute a target's jobs run on, as deploy.yml declares it: an all-purpose cluster (the
`cluster:` mapping of clusters/create fields and its rules, judged before anything is deployed),
or serverless compute, whose form of a job spec `for_compute` gives.

The job specs are written for a cluster: each notebook task names `existing_cluster_id` and
attaches the two wheels as `libraries`. A serverless job has no cluster; its tasks take their
Python packages from a job environment instead. The Jobs API: JobSettings.environments is "a list
of task execution environment specifications that can be referenced by tasks that use serverless
compute"; "for notebook tasks that use serverless compute [...], if the environment_key is not
specified, the notebook environment will be used if present. If a jobs environment is specified,
it will override the notebook environment" (databricks-sdk 0.156.0, jobs.JobSettings.environments;
https://docs.databricks.com/api/workspace/jobs/create#environments). An environment's spec
(compute.Environment) holds `environment_version` ("each version comes with a specific Python
version and a set of Python packages") and `dependencies` ("a valid pip requirements file line
[...] a local project path (such as WSFS or UC Volumes in Databricks)"): the wheels' paths.
Omitting the cluster is what makes a notebook task serverless ("you can either omit the clusters
setting for a job with a notebook task, or you can specify an environment":
https://docs.databricks.com/dev-tools/bundles/resource-examples.html).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from diabetes_mlops.runtime.errors import InputRefused

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


CLUSTER = "cluster"
SERVERLESS = "serverless"
COMPUTES = (CLUSTER, SERVERLESS)
# The one job environment a serverless form has (keys are unique within a job).
ENVIRONMENT_KEY = "diabetes_mlops"
TASK_COMPUTE = ("existing_cluster_id", "job_cluster_key", "new_cluster")
_VERSION = re.compile(r"[1-9][0-9]*")


def compute_problem(compute: Any, environment_version: Any) -> str | None:
    """What is wrong with a target's `compute` and `serverless_environment_version`, if anything."""
    if compute not in COMPUTES:
        return f"compute must be one of {', '.join(COMPUTES)}, got {compute!r}"
    if compute == SERVERLESS and not _VERSION.fullmatch(str(environment_version or "")):
        return (
            "serverless_environment_version must be a serverless environment version number"
            f' such as "5" (quoted), got {environment_version!r}'
        )
    return None


def for_compute(settings: dict[str, Any], compute: str, environment_version: str) -> dict[str, Any]:
    """The job settings for `compute`: as written for a cluster; for serverless, every task that
    names a cluster names the job environment instead, whose dependencies are the libraries the
    tasks attached (each once, in order), and job clusters go."""
    if compute == CLUSTER:
        return settings
    settings = copy.deepcopy(settings)
    dependencies: list[str] = []
    for task in settings.get("tasks") or []:
        if not any(key in task for key in TASK_COMPUTE):
            continue  # a control task, which runs on no compute
        for key in TASK_COMPUTE:
            task.pop(key, None)
        for library in task.pop("libraries", None) or []:
            requirement = _requirement(task["task_key"], library)
            if requirement not in dependencies:
                dependencies.append(requirement)
        task["environment_key"] = ENVIRONMENT_KEY
    settings.pop("job_clusters", None)
    spec = {"environment_version": environment_version, "dependencies": dependencies}
    settings["environments"] = [{"environment_key": ENVIRONMENT_KEY, "spec": spec}]
    return settings


class ServerlessError(InputRefused, ValueError):
    """A task's library has no form a serverless environment can install."""


def _requirement(task_key: str, library: dict[str, Any]) -> str:
    """A task library as a pip requirement line: a wheel's path, a PyPI package's specifier."""
    if isinstance(library.get("whl"), str):
        return library["whl"]
    package = (library.get("pypi") or {}).get("package")
    if isinstance(package, str) and not (library["pypi"].get("repo")):
        return package
    raise ServerlessError(
        f"task '{task_key}': library {library!r} cannot go into a serverless environment"
        " (its dependencies take wheel paths and PyPI requirements)"
    )


def describe(compute: str, cluster_name: str, cluster_id: str, environment_version: str) -> str:
    """The compute a target's jobs run on, as deploy-plan shows it."""
    if compute == SERVERLESS:
        return f"serverless, environment version {environment_version} (no cluster)"
    return f"cluster '{cluster_name}' (id {cluster_id})"
