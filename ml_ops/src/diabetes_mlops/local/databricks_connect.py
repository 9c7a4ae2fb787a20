"""Spark from a deploy target's compute, through Databricks Connect: the local runner's notebooks
and steps run on this machine, their Spark queries on the target's cluster (found by its
cluster_name) or on serverless compute, for data too big for a laptop.

databricks-connect ships its own pyspark and cannot share an environment with the pyspark of
requirements.txt ("the databricks-connect package conflicts with PySpark":
https://docs.databricks.com/en/dev-tools/databricks-connect/python/install.html). It lives in an
environment of its own, .venv-dbconnect (`make dbconnect-env`, requirements-dbconnect.txt).

How a session is asked for (databricks-connect's DatabricksSession.builder): an SDK Config with
the target's credentials and `cluster_id`, or `serverless_compute_id = "auto"` ("Databricks
Connect ignores any configured cluster_id" then:
https://docs.databricks.com/dev-tools/databricks-connect/cluster-config). With SPARK_REMOTE set,
the session is that Spark Connect server's instead: Databricks Connect's documented way to run
against a Spark Connect server (https://docs.databricks.com/aws/en/dev-tools/databricks-connect/advanced),
which the tests use as a stand-in for a workspace's compute.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from diabetes_mlops.local.spark import REMOTE_ENV, check_answers
from diabetes_mlops.runtime.errors import UserError

INSTALL = (
    "Spark from a target's compute needs Databricks Connect, which this Python environment"
    " lacks: `make dbconnect-env` makes .venv-dbconnect with it, and"
    " `make run-local-training SPARK_TARGET=<target>` runs there"
    " (docs/local-runner.md#spark-from-a-targets-compute-databricks-connect)"
)


class DatabricksConnectError(UserError, RuntimeError):
    """No session can come from the target's compute; the message says why and what to do."""


@dataclass(frozen=True)
class RemoteCompute:
    """Where a target's jobs run, as Databricks Connect reaches it."""

    target: str
    config: Any  # databricks.sdk.config.Config: the target's workspace and credentials
    cluster_name: str = ""
    cluster_id: str | None = None  # None: serverless compute

    def describe(self) -> str:
        if self.cluster_id is None:
            return f"serverless compute of target '{self.target}'"
        return f"cluster '{self.cluster_name}' (id {self.cluster_id}) of target '{self.target}'"


def require_databricks_connect() -> None:
    """Before anything runs: this environment has Databricks Connect (.venv-dbconnect)."""
    try:
        import databricks.connect  # noqa: F401
    except ImportError:
        raise DatabricksConnectError(INSTALL) from None


def remote_session(compute: RemoteCompute) -> Any:
    """A Databricks Connect session on the compute (module docstring), or on SPARK_REMOTE's
    server when that is set."""
    require_databricks_connect()
    from databricks.connect import DatabricksSession

    remote = os.environ.get(REMOTE_ENV, "").strip()
    if remote:
        if not remote.startswith("sc://"):
            raise DatabricksConnectError(
                f"{REMOTE_ENV}={remote!r}: with a target's compute, give sc://host:port (a Spark"
                f" Connect server standing in for it) or unset {REMOTE_ENV}"
            )
        check_answers(remote)
        return DatabricksSession.builder.remote(remote).getOrCreate()
    from databricks.sdk.config import Config

    # A new Config (Config.copy shares its attributes with the original), the target's
    # credentials and host as resolved, and the compute.
    settings = {**compute.config.as_dict(), "cluster_id": None, "serverless_compute_id": None}
    if compute.cluster_id is None:
        settings["serverless_compute_id"] = "auto"
    else:
        settings["cluster_id"] = compute.cluster_id
    config = Config(**{k: v for k, v in settings.items() if v is not None})
    return DatabricksSession.builder.sdkConfig(config).getOrCreate()


def describe(compute: RemoteCompute) -> str:
    """The runner's `Spark:` line for a session from the compute."""
    remote = os.environ.get(REMOTE_ENV, "").strip()
    standing_in = f" ({REMOTE_ENV}={remote} stands in for it)" if remote else ""
    return f"Databricks Connect to the {compute.describe()}{standing_in}"
