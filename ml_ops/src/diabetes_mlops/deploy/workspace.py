"""Connecting to a workspace with databricks-sdk's unified auth, with one clear line on failure."""

from __future__ import annotations

import os

from databricks.sdk import WorkspaceClient

from diabetes_mlops.deploy.auth import auth_help
from diabetes_mlops.deploy.reachability import ProbedConfig, check_answers, check_reachable
from diabetes_mlops.jobs.targets import Target
from diabetes_mlops.runtime.errors import UserError, first_line


class AuthError(UserError, RuntimeError):
    """No usable workspace host or credentials."""


def connect(target: Target) -> WorkspaceClient:
    """A client for the target's workspace. The environment wins over the target's profile, so
    CI can deploy with DATABRICKS_HOST/DATABRICKS_TOKEN from its secret store. A host that does
    not resolve or accept connections raises reachability.Unreachable within seconds."""
    from_env = bool(os.environ.get("DATABRICKS_HOST"))
    profile = None if from_env else target.profile
    host = None if from_env else target.host
    try:
        config = ProbedConfig(
            profile=profile, host=host, retry_timeout_seconds=target.retry_timeout_seconds
        )
        client = WorkspaceClient(config=config)
        headers = config.authenticate()  # OAuth (github-oidc) gets its token now: one line
    except ValueError as exc:  # what the SDK raises, with long explanations, for missing auth
        raise AuthError(
            f"cannot connect to the workspace of target '{target.name}': "
            + auth_help(target.profile or target.name.upper())
            + f" ({first_line(exc, limit=200)})"
        ) from None
    if not client.config.host:
        raise AuthError(
            f"no workspace host for target '{target.name}': "
            + auth_help(target.profile or target.name.upper())
        )
    if not config.probed:  # an SDK without the step ProbedConfig hooks: probe now
        check_reachable(client.config.host)
    check_answers(client.config.host, headers)  # it answers as a workspace, authenticated
    return client


def for_current_user(w: WorkspaceClient, target: Target) -> Target:
    """The target with {user} filled by the user the client is authenticated as."""
    return target.for_user(w.current_user.me().user_name or "unknown")
