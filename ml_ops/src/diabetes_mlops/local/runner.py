"""The local runner: execute a job spec's notebook tasks on this machine, in dependency order.

Each task runs its notebook file cell by cell, in a fresh namespace holding a local `dbutils`
(widgets filled from base_parameters and overrides, secrets from the environment, task values)
and a lazily created `spark`, the way a Databricks job would run the same file. MLflow goes to
a sqlite store under the local folder unless MLFLOW_TRACKING_URI says otherwise.
"""

from __future__ import annotations

import os
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow

from diabetes.schema import DataValidationError
from diabetes_mlops.deploy.serving import RolloutError
from diabetes_mlops.errors import ModelNotFoundError, ParameterError, TrackingStoreError
from diabetes_mlops.job_specs import (
    REFERENCE,
    TASK_VALUE,
    JobSpec,
    NotebookTask,
    SpecError,
    check_spec,
)
from diabetes_mlops.local.dbutils import LocalDbutils, NotebookExit
from diabetes_mlops.local.spark import LazySpark, local_spark_session
from diabetes_mlops.local.store import tracking_uri as store_uri
from diabetes_mlops.notebooks import NotebookError
from diabetes_mlops.preflight import check_job_parameters
from diabetes_mlops.tracking import ARTIFACT_ROOT_ENV

# Errors whose message says it all: printed as one line, no traceback.
USER_ERRORS = (
    DataValidationError,
    ParameterError,
    ModelNotFoundError,
    NotebookError,
    RolloutError,
    SpecError,
    TrackingStoreError,
)

SUCCESS, FAILED, SKIPPED = "SUCCESS", "FAILED", "SKIPPED"


@dataclass
class TaskRun:
    key: str
    notebook: Path
    status: str
    seconds: float = 0.0
    error: BaseException | None = None
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def error_line(self) -> str:
        return f"{type(self.error).__name__}: {self.error}" if self.error else ""


@dataclass
class JobRun:
    name: str
    run_id: str
    tasks: list[TaskRun]
    seconds: float

    @property
    def succeeded(self) -> bool:
        return all(t.status == SUCCESS for t in self.tasks)

    def task(self, key: str) -> TaskRun:
        return next(t for t in self.tasks if t.key == key)


class LocalRunner:
    def __init__(
        self,
        local_root: str | Path = ".local",
        tracking_uri: str | None = None,
        environ: Mapping[str, str] | None = None,
        report: Callable[[str], None] = print,
    ) -> None:
        self.root = Path(local_root).absolute()
        self.environ = os.environ if environ is None else environ
        self.tracking_uri = (
            tracking_uri or self.environ.get("MLFLOW_TRACKING_URI") or store_uri(self.root)
        )
        self.report = report
        self.spark = LazySpark(lambda: local_spark_session(self.root))

    def run(
        self,
        spec_path: str | Path,
        overrides: Mapping[str, str] | None = None,
        notebooks_dir: str | Path | None = None,
        defaults: Mapping[str, str] | None = None,
    ) -> JobRun:
        """Run the spec's tasks with `overrides` (each must reach some task) on top of
        `defaults` (a deploy target's parameters: applied where a task takes them).

        Every value any task would receive is judged against its step's rules first: a bad one
        is a ParameterError before the first task starts, so nothing is written.
        """
        spec_path = Path(spec_path)
        notebooks = Path(
            notebooks_dir or spec_path.absolute().parent.parent / "orchestrator_notebooks"
        )
        spec = check_spec(spec_path, notebooks)
        overrides = {**_taken(spec, defaults or {}), **(overrides or {})}
        parameters = task_parameters(spec, overrides)
        problems = check_job_parameters(spec, overrides)
        if problems:
            raise ParameterError("\n".join(problems))
        run_id = uuid.uuid4().hex[:12]
        task_values: dict[str, dict[str, Any]] = {}
        runs: list[TaskRun] = []
        started = time.perf_counter()
        self.root.mkdir(parents=True, exist_ok=True)
        with self._mlflow_environment():
            for task in spec.tasks:
                if any(r.status != SUCCESS for r in runs):  # a failing task stops the job
                    runs.append(TaskRun(task.key, task.notebook.path, SKIPPED))
                    self.report(f"- task {task.key}: skipped (an earlier task failed)")
                    continue
                runs.append(self._run_task(spec, task, parameters[task.key], task_values, run_id))
        return JobRun(spec.name, run_id, runs, time.perf_counter() - started)

    def _run_task(
        self,
        spec: JobSpec,
        task: NotebookTask,
        parameters: dict[str, str],
        task_values: dict[str, dict[str, Any]],
        run_id: str,
    ) -> TaskRun:
        path = task.notebook.path
        self.report(f"> task {task.key}: {path.name}")
        started = time.perf_counter()
        try:
            resolved = {
                name: resolve_references(value, task_values, task.key, run_id)
                for name, value in parameters.items()
            }
            dbutils = LocalDbutils(
                resolved, self.root, task_values, task.key, self.environ, self.spark
            )
            execute_notebook(task, dbutils, self.spark)
        except Exception as error:  # a failing notebook fails its task, like on Databricks
            seconds = time.perf_counter() - started
            if not isinstance(error, USER_ERRORS):
                self.report("".join(traceback.format_exception(error)).rstrip())
            run = TaskRun(task.key, path, FAILED, seconds, error)
            self.report(f"x task {task.key} FAILED after {seconds:.1f} s")
            return run
        seconds = time.perf_counter() - started
        self.report(f"v task {task.key} succeeded in {seconds:.1f} s")
        return TaskRun(task.key, path, SUCCESS, seconds, outputs=task_values.get(task.key, {}))

    @contextmanager
    def _mlflow_environment(self) -> Iterator[None]:
        """Point MLflow at the local store for the run; restore the caller's settings after."""
        settings = {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            ARTIFACT_ROOT_ENV: str(self.root / "mlartifacts"),
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        saved = {key: os.environ.get(key) for key in settings}
        os.environ.update(settings)
        mlflow.set_tracking_uri(self.tracking_uri)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"] or "")


def task_parameters(spec: JobSpec, overrides: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Parameters per task, with the overrides applied; one that no task declares is an error."""
    unused = set(overrides) - set(_taken(spec, overrides))
    if unused:
        raise ParameterError(
            f"no task of job '{spec.name}' declares parameter(s) {', '.join(sorted(unused))}"
        )
    return spec.task_parameters(overrides)


def _taken(spec: JobSpec, parameters: Mapping[str, str]) -> dict[str, str]:
    """The parameters some task of the job takes."""
    applied = spec.overrides_by_task(parameters)
    return {k: v for k, v in parameters.items() if any(k in taken for taken in applied.values())}


def resolve_references(
    value: str, task_values: Mapping[str, Mapping[str, Any]], task_key: str, run_id: str
) -> str:
    """Fill Databricks dynamic value references such as {{tasks.train.values.model_version}}."""

    def fill(match) -> str:
        reference = match.group(1)
        task_value = TASK_VALUE.match(reference)
        if task_value:
            upstream, key = task_value.groups()
            if key not in task_values.get(upstream, {}):
                raise ParameterError(f"task '{upstream}' did not set value '{key}'")
            return str(task_values[upstream][key])
        known = {"job.id": "local", "job.run_id": run_id, "task.name": task_key}
        known["task.run_id"] = f"{run_id}-{task_key}"
        if reference not in known:
            raise ParameterError(f"unsupported reference {match.group(0)}")
        return known[reference]

    return REFERENCE.sub(fill, value)


def execute_notebook(task: NotebookTask, dbutils: LocalDbutils, spark: LazySpark) -> None:
    """Run the notebook's Python cells in one fresh namespace; tracebacks point at file lines."""
    path = task.notebook.path
    namespace: dict[str, Any] = {
        "__name__": "__main__",
        "__file__": str(path),
        "dbutils": dbutils,
        "spark": spark,
        "display": print,
        "displayHTML": print,
    }
    for cell in task.notebook.cells:
        if cell.magic == "%md":
            continue
        if cell.magic is not None:
            raise NotebookError(
                f"{path}:{cell.first_line}: the local runner does not run {cell.magic} cells"
            )
        code = compile("\n" * (cell.first_line - 1) + cell.source, str(path), "exec")
        try:
            exec(code, namespace)
        except NotebookExit:
            return
