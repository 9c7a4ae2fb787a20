"""Deploy targets read from deploy.yml: where things go in a workspace, and how jobs differ."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from diabetes_mlops.jobs.compute import CLUSTER, compute_problem, spec_problems
from diabetes_mlops.jobs.permissions import Grant, parse_permissions
from diabetes_mlops.jobs.sources import settings_problem
from diabetes_mlops.runtime.errors import InputRefused
from diabetes_mlops.runtime.owner import LOCAL_TARGET
from diabetes_mlops.serving.names import user_slug
from diabetes_mlops.tracking.approvals import APPROVAL_SETTINGS, NOT_REQUIRED

DEFAULT_CONFIG = Path("deploy.yml")
LOCAL = LOCAL_TARGET
REQUIRED = ("root_dir", "wheel_dir", "cluster_name", "secret_scope", "alert_email")
# A serverless target has no cluster to name.
NOT_SERVERLESS = ("cluster_name",)
# Who runs the deploy_serving step: the training job's task, or a job the model's champion alias
# starts (a Jobs model trigger).
SERVING_TRIGGERS = ("task", "model")


class ConfigError(InputRefused, ValueError):
    """deploy.yml is unreadable, or names no such target, or has a field we do not know."""


@dataclass(frozen=True)
class Target:
    name: str
    root_dir: str
    wheel_dir: str
    cluster_name: str
    secret_scope: str
    alert_email: str
    paused: bool = False
    job_name_prefix: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    profile: str | None = None
    host: str | None = None
    retry_timeout_seconds: int = 300  # how long the SDK retries 429/503 and network errors
    # The target's own data folder; parameter values name it {data_dir}, so each target reads and
    # writes its own data, as it has its own model name.
    data_dir: str = ""
    serving_trigger: str = "task"
    # The all-purpose cluster's clusters/create fields, for `databricks-init` to create it (by
    # cluster_name) when missing, or to report how the existing one differs.
    cluster: dict[str, Any] = field(default_factory=dict)
    # What the jobs run on: `cluster` (cluster_name's all-purpose cluster) or `serverless` (no
    # cluster; the wheels go into a job environment of this serverless environment version).
    compute: str = CLUSTER
    serverless_environment_version: str = ""
    # `required`: a validated version becomes champion only once a person approved it in this
    # target (steps/approval.py); `none`: promote goes on once validation passed.
    approval: str = NOT_REQUIRED
    # Who may do what on the target's jobs, endpoint, experiment and model (jobs/permissions.py);
    # deploy grants what is missing and never removes or lowers anything.
    permissions: dict[str, Any] = field(default_factory=dict)
    # The group whose members run the jobs: `databricks-init` grants it what the jobs use.
    run_as_group: str = ""
    # Who the jobs run as, sent with every create and reset so that a reset restores it: a user
    # name, or a service principal's application id. Default: whoever deploys.
    run_as: str = "{user}"
    # Where the jobs' notebooks come from: `workspace` (imported under root_dir) or `git` (the
    # repository at the checkout's commit, branch or tag: git_source.py). git_url and
    # git_provider default to the `origin` remote and its host.
    source: str = "workspace"
    git_ref: str = "commit"
    git_url: str = ""
    git_provider: str = ""

    @property
    def notebooks_dir(self) -> str:
        return f"{self.root_dir.rstrip('/')}/notebooks"

    @property
    def grants(self) -> list[Grant]:
        return parse_permissions(self.permissions)[0]

    @property
    def experiment_name(self) -> str | None:
        return self.parameters.get("experiment_name")

    def for_user(self, user: str) -> Target:
        """Fill {user} and {user_slug} (the deploying user, known only once connected)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        filled = {k: _fill(v, user=user, user_slug=user_slug(user)) for k, v in values.items()}
        return Target(**filled)


def target_names(path: str | Path = DEFAULT_CONFIG) -> list[str]:
    return list(_read(Path(path)).get("targets") or {})


def _read(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read deploy config: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(config, dict) or not isinstance(config.get("targets") or {}, dict):
        raise ConfigError(f"{path}: expected a mapping with 'defaults' and 'targets'")
    return config


# The job parameter that tells a job's steps which target they run for: the deploy_serving step
# tags the endpoint it creates with it and serves only on an endpoint that target owns.
OWNER_PARAMETER = "deploy_target"
# The job parameter that carries the target's `approval` setting to the approval and promote steps.
APPROVAL_PARAMETER = "approval"


def load_target(name: str, path: str | Path = DEFAULT_CONFIG) -> Target:
    path = Path(path)
    config = _read(path)
    targets = config.get("targets") or {}
    if name not in targets:
        raise ConfigError(
            f"{path}: unknown target '{name}' (targets: {', '.join(targets) or 'none'})"
        )
    defaults = config.get("defaults") or {}
    merged = {**defaults, **(targets[name] or {})}
    merged["parameters"] = {
        **(defaults.get("parameters") or {}),
        **((targets[name] or {}).get("parameters") or {}),
    }
    known = {f.name for f in fields(Target)} - {"name"}
    unknown = sorted(set(merged) - known)
    if unknown:
        raise ConfigError(f"{path}: target '{name}': unknown field(s) {', '.join(unknown)}")
    trigger = merged.get("serving_trigger", "task")
    if trigger not in SERVING_TRIGGERS:
        raise ConfigError(
            f"{path}: target '{name}': serving_trigger must be one of"
            f" {', '.join(SERVING_TRIGGERS)}, got {trigger!r}"
        )
    git_problem = settings_problem(
        merged.get("source", "workspace"),
        merged.get("git_ref", "commit"),
        merged.get("git_provider"),
    )
    if git_problem:
        raise ConfigError(f"{path}: target '{name}': {git_problem}")
    cluster_problems = spec_problems(merged.get("cluster") or {})
    if cluster_problems:  # the first: one line
        raise ConfigError(f"{path}: target '{name}': {cluster_problems[0]}")
    merged["cluster"] = merged.get("cluster") or {}
    merged["compute"] = merged.get("compute", CLUSTER)
    version = merged.get("serverless_environment_version")
    merged["serverless_environment_version"] = "" if version is None else str(version)
    problem = compute_problem(merged["compute"], version)
    if problem:
        raise ConfigError(f"{path}: target '{name}': {problem}")
    required = [f for f in REQUIRED if merged["compute"] == CLUSTER or f not in NOT_SERVERLESS]
    missing = [f for f in required if not merged.get(f)]
    if missing and name != LOCAL:  # the local runner needs only the parameters
        raise ConfigError(f"{path}: target '{name}' does not set {', '.join(missing)}")
    merged = {k: _fill(v, target=name) for k, v in merged.items()}
    merged["parameters"] = {str(k): str(v) for k, v in merged["parameters"].items()}
    uses = sorted(k for k, v in merged["parameters"].items() if "{data_dir}" in v)
    if uses and not merged.get("data_dir"):
        raise ConfigError(
            f"{path}: target '{name}': parameter(s) {', '.join(uses)} use {{data_dir}},"
            " which the target does not set"
        )
    data_dir = str(merged.get("data_dir", "")).rstrip("/")
    merged["parameters"] = _fill(merged["parameters"], data_dir=data_dir)
    merged["permissions"] = merged.get("permissions") or {}
    permission_problems = parse_permissions(merged["permissions"])[1]
    if permission_problems:
        raise ConfigError(f"{path}: target '{name}': {permission_problems[0]}")
    setting = merged.get("approval", NOT_REQUIRED)
    if setting not in APPROVAL_SETTINGS:
        raise ConfigError(
            f"{path}: target '{name}': approval must be one of {', '.join(APPROVAL_SETTINGS)},"
            f" got {setting!r}"
        )
    merged["approval"] = setting
    given_approval = merged["parameters"].setdefault(APPROVAL_PARAMETER, setting)
    if given_approval != setting:
        raise ConfigError(
            f"{path}: target '{name}': set approval: {given_approval} on the target, not as a"
            f" parameter (the target's approval setting is the job parameter {APPROVAL_PARAMETER})"
        )
    given = merged["parameters"].setdefault(OWNER_PARAMETER, name)
    if given != name:
        raise ConfigError(
            f"{path}: target '{name}': parameters.{OWNER_PARAMETER} is always the target's own"
            f" name (the owner tag of the endpoint its jobs serve on), got {given!r}"
        )
    for text_field in REQUIRED:
        merged.setdefault(text_field, "")
    return Target(name=name, **merged)


def _fill(value: Any, **names: str) -> Any:
    """Replace {name} markers in strings (recursively in dicts and lists); other braces stay."""
    if isinstance(value, str):
        for key, text in names.items():
            value = value.replace("{" + key + "}", text)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, **names) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, **names) for v in value]
    return value
