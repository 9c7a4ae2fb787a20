"""The job context: the one interface steps use for parameters, secrets, paths and task values.

On Databricks it is backed by the notebook's `dbutils`. The local runner hands notebooks a local
`dbutils` with the same surface whose `job_context` maps Databricks paths to a local folder, so the
very same notebook line `run_step(train, dbutils)` works in both places.
"""

from __future__ import annotations

from typing import Any, NewType, Protocol

# A step parameter annotated FilePath names a file; the context turns it into a path that local
# file APIs (pandas, open) can use: dbfs:/x -> /dbfs/x on Databricks, a local folder locally.
FilePath = NewType("FilePath", str)
# A SparkPath names a location Spark reads or writes: unchanged on Databricks, mapped locally.
SparkPath = NewType("SparkPath", str)


class JobContext(Protocol):
    def get_param(self, name: str) -> str | None:
        """The widget's value, or None when the notebook declares no such widget."""

    def get_secret(self, scope: str, key: str) -> str: ...

    def resolve_path(self, path: str) -> str: ...

    def resolve_spark_path(self, path: str) -> str: ...

    def spark_session(self) -> Any:
        """The SparkSession steps annotated with a SparkSession parameter receive."""

    def set_task_value(self, key: str, value: Any) -> None: ...


class DatabricksJobContext:
    """JobContext over a Databricks `dbutils` (or anything with the same surface)."""

    def __init__(self, dbutils: Any) -> None:
        self.dbutils = dbutils

    def get_param(self, name: str) -> str | None:
        """A job parameter reaches every notebook task of its job ("Job parameter pushdown",
        https://docs.databricks.com/jobs/job-parameters.html) and `dbutils.widgets.get` reads a
        passed parameter whether or not the notebook declares a widget for it."""
        try:
            return self.dbutils.widgets.get(name)
        except Exception:  # Databricks raises a Py4J InputWidgetNotDefined error
            return None

    def get_secret(self, scope: str, key: str) -> str:
        return self.dbutils.secrets.get(scope=scope, key=key)

    def resolve_path(self, path: str) -> str:
        return fuse_path(path)

    def resolve_spark_path(self, path: str) -> str:
        return path

    def spark_session(self) -> Any:
        from pyspark.sql import SparkSession

        return SparkSession.builder.getOrCreate()

    def set_task_value(self, key: str, value: Any) -> None:
        self.dbutils.jobs.taskValues.set(key=key, value=value)


def fuse_path(path: str) -> str:
    """dbfs:/x -> /dbfs/x, where Databricks mounts DBFS for local file APIs."""
    if path.startswith("dbfs:/"):
        return "/dbfs/" + path[len("dbfs:/") :].lstrip("/")
    return path


def context_for(dbutils: Any) -> JobContext:
    """The local runner's dbutils carries its own context; a real one gets the Databricks one."""
    return getattr(dbutils, "job_context", None) or DatabricksJobContext(dbutils)
