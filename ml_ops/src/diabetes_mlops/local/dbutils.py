"""A local `dbutils` with the parts the notebooks use: widgets, secrets, task values, exit.

It mirrors the Databricks surface (names and argument names) so notebooks run unchanged, and it
carries a `job_context` that maps Databricks paths into a local folder.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from diabetes_mlops.runtime.context import DatabricksJobContext
from diabetes_mlops.runtime.errors import ParameterError, UserError

SECRET_ENV_PREFIX = "SECRET__"
_MISSING = object()


class InputWidgetNotDefined(KeyError):
    """Like Databricks: reading a widget the notebook never declared."""


class NotebookExit(Exception):
    """Raised by dbutils.notebook.exit to end the notebook early, successfully."""

    def __init__(self, value: str) -> None:
        super().__init__(value)
        self.value = value


class Widgets:
    def __init__(self, parameters: Mapping[str, str]) -> None:
        self._parameters = dict(parameters)
        self._defaults: dict[str, str] = {}

    def text(self, name: str, defaultValue: str, label: str | None = None) -> None:
        self._defaults[name] = defaultValue

    def dropdown(self, name: str, defaultValue: str, choices: list[str], label=None) -> None:
        for value in (defaultValue, self._parameters.get(name, defaultValue)):
            if value not in choices:
                raise ParameterError(f"parameter '{name}': {value!r} is not one of {choices}")
        self._defaults[name] = defaultValue

    def combobox(self, name: str, defaultValue: str, choices: list[str], label=None) -> None:
        self._defaults[name] = defaultValue

    def multiselect(self, name: str, defaultValue: str, choices: list[str], label=None) -> None:
        self._defaults[name] = defaultValue

    def get(self, name: str) -> str:
        """A passed value, declared or not, else the widget's default. In a Databricks job every
        job parameter is pushed down to every notebook task and `dbutils.widgets.get` reads it
        even where no widget declares it ("Job parameter pushdown",
        https://docs.databricks.com/jobs/job-parameters.html; notebook parameters "Retrieve
        these parameters in a notebook using dbutils.widgets.get", Jobs API NotebookTask)."""
        if name in self._parameters:
            return self._parameters[name]
        if name not in self._defaults:
            raise InputWidgetNotDefined(f"No input widget named {name} is defined")
        return self._defaults[name]

    def getAll(self) -> dict[str, str]:
        return {name: self.get(name) for name in self._defaults}

    def remove(self, name: str) -> None:
        self._defaults.pop(name, None)

    def removeAll(self) -> None:
        self._defaults.clear()


class Secrets:
    """Secrets from environment variables: scope `s`, key `k` -> SECRET__S__K (upper case)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    @staticmethod
    def variable(scope: str, key: str) -> str:
        clean = lambda s: re.sub(r"[^A-Za-z0-9]", "_", s).upper()  # noqa: E731
        return f"{SECRET_ENV_PREFIX}{clean(scope)}__{clean(key)}"

    def get(self, scope: str, key: str) -> str:
        variable = self.variable(scope, key)
        if variable not in self._environ:
            raise SecretNotSet(
                f"secret '{key}' of scope '{scope}' is not set locally: export {variable}"
            )
        return self._environ[variable]

    def getBytes(self, scope: str, key: str) -> bytes:
        return self.get(scope, key).encode("utf-8")


class SecretNotSet(UserError, KeyError):
    """A secret the task reads has no environment variable here."""

    def __str__(self) -> str:  # KeyError would show its message quoted
        return str(self.args[0])


class TaskValueMissing(UserError, ValueError):
    """A task reads a value an earlier task did not set."""


class TaskValues:
    """Values tasks publish for later tasks of the same job run."""

    def __init__(self, store: dict[str, dict[str, Any]], task_key: str) -> None:
        self._store = store
        self._task_key = task_key

    def set(self, key: str, value: Any) -> None:
        json.dumps(value)  # Databricks accepts JSON-serializable values only
        self._store.setdefault(self._task_key, {})[key] = value

    def get(self, taskKey: str, key: str, default: Any = _MISSING, debugValue: Any = _MISSING):
        values = self._store.get(taskKey, {})
        if key in values:
            return values[key]
        if default is not _MISSING:
            return default
        raise TaskValueMissing(f"task '{taskKey}' set no value '{key}'")


class _Jobs:
    def __init__(self, task_values: TaskValues) -> None:
        self.taskValues = task_values


class _Notebook:
    def exit(self, value: str = "") -> None:
        raise NotebookExit(str(value))


class LocalJobContext(DatabricksJobContext):
    """The Databricks context, except that workspace paths land in a local folder."""

    def __init__(
        self, dbutils: LocalDbutils, root: Path, spark: Any = None, spark_paths_local: bool = True
    ) -> None:
        super().__init__(dbutils)
        self.root = root
        self.spark = spark
        # False when Spark runs on a target's compute: its paths are that workspace's.
        self.spark_paths_local = spark_paths_local

    def resolve_path(self, path: str) -> str:
        return str(local_path(path, self.root))

    def resolve_spark_path(self, path: str) -> str:
        """A location mapped like a path; a name with no '/' (a table, catalog.schema.table, for
        input_format or data_format `table`) is left as it is: Spark resolves it, not a folder.
        With Spark on a target's compute, every location is that compute's, left as it is."""
        if not self.spark_paths_local:
            return path
        if "/" not in path and not path.startswith(".") and ":" not in path:
            return path
        return str(local_path(path, self.root))

    def spark_session(self) -> Any:
        """The runner's lazily created local session (created on first use, not here)."""
        return self.spark if self.spark is not None else super().spark_session()


def local_path(path: str, root: Path) -> Path:
    """dbfs:/x and /dbfs/x -> ROOT/dbfs/x; /Volumes/x -> ROOT/Volumes/x; others unchanged.

    A mapped path stays inside its folder: `/Volumes/../../x` would land outside ROOT (and on
    Databricks means something else entirely), so it is refused.
    """
    for prefix, folder in (("dbfs:/", "dbfs"), ("/dbfs/", "dbfs"), ("/Volumes/", "Volumes")):
        if path.startswith(prefix):
            inside = posixpath.normpath(path[len(prefix) :].lstrip("/") or ".")
            if inside == ".." or inside.startswith("../"):
                raise ParameterError(f"path {path!r} climbs out of {prefix} with '..'")
            return root / folder / inside
    return Path(path).absolute()


class LocalDbutils:
    def __init__(
        self,
        parameters: Mapping[str, str],
        root: Path,
        task_values: dict[str, dict[str, Any]],
        task_key: str,
        environ: Mapping[str, str] | None = None,
        spark: Any = None,
        spark_paths_local: bool = True,
    ) -> None:
        self.widgets = Widgets(parameters)
        self.secrets = Secrets(environ)
        self.jobs = _Jobs(TaskValues(task_values, task_key))
        self.notebook = _Notebook()
        self.job_context = LocalJobContext(self, root, spark, spark_paths_local)
