"""The local runner: execute a job spec's tasks on this machine, in dependency order.

Each notebook task runs its notebook file cell by cell, in a fresh namespace holding a local
`dbutils` (widgets filled from base_parameters and overrides, secrets from the environment, task
values) and a lazily created `spark`, the way a Databricks job would run the same file. A
condition task compares its operands and its dependents run or are EXCLUDED by its outcome, as on
Databricks; a run_job task runs the spec of the same folder that it names, nested. MLflow goes to
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
from mlflow.tracking import MlflowClient

from diabetes_mlops.data.locations import OutputFolder
from diabetes_mlops.jobs.control_tasks import ConditionTask, RunJobTask
from diabetes_mlops.jobs.notebooks import NotebookError
from diabetes_mlops.jobs.preflight import check_job_parameters
from diabetes_mlops.jobs.specs import (
    NOTEBOOKS_FOLDER,
    JobSpec,
    NotebookTask,
    SpecError,
    Task,
    check_job_references,
    check_spec,
)
from diabetes_mlops.local import run_records
from diabetes_mlops.local.databricks_connect import RemoteCompute, remote_session
from diabetes_mlops.local.databricks_connect import describe as describe_remote
from diabetes_mlops.local.dbutils import LocalDbutils, NotebookExit
from diabetes_mlops.local.references import condition_outcome, resolve_references
from diabetes_mlops.local.spark import SPARK_LOG, LazySpark, describe, local_spark_session
from diabetes_mlops.local.store import tracking_uri as store_uri
from diabetes_mlops.runtime.errors import ParameterError, UserError
from diabetes_mlops.runtime.parameters import declared_parameters
from diabetes_mlops.steps import STEPS
from diabetes_mlops.tracking.runs import ARTIFACT_ROOT_ENV, redacted, use_registry


class JobFailed(UserError):
    """A run_job task's job failed; the message names its first failed task and why."""

    def __init__(self, job: JobRun) -> None:
        failed = next(t for t in job.tasks if t.status == FAILED)
        super().__init__(f"job '{job.name}' FAILED: task {failed.key}: {failed.error_line}")
        self.job = job


# EXCLUDED: a condition upstream did not hold (not a failure: the job still succeeds).
SUCCESS, FAILED, SKIPPED, EXCLUDED = "SUCCESS", "FAILED", "SKIPPED", "EXCLUDED"
# A cycle of run_job tasks is refused by check_job_references; this only stops a runaway.
MAX_JOB_DEPTH = 10


@dataclass
class TaskRun:
    key: str
    notebook: Path | None  # None for a condition or run_job task
    status: str
    seconds: float = 0.0
    error: BaseException | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    outcome: str | None = None  # a condition task's "true" / "false"
    job: JobRun | None = None  # the run a run_job task started
    what: str = ""  # what a task without a notebook ran, for error lines

    @property
    def error_line(self) -> str:
        return f"{type(self.error).__name__}: {self.error}" if self.error else ""

    @property
    def source(self) -> str:
        """The notebook it ran, or what kind of task it is."""
        return str(self.notebook) if self.notebook is not None else self.what


@dataclass
class JobRun:
    name: str
    run_id: str
    tasks: list[TaskRun]
    seconds: float

    @property
    def succeeded(self) -> bool:
        return all(t.status in (SUCCESS, EXCLUDED) for t in self.tasks)

    def task(self, key: str) -> TaskRun:
        return next(t for t in self.tasks if t.key == key)


class LocalRunner:
    def __init__(
        self,
        local_root: str | Path = ".local",
        tracking_uri: str | None = None,
        environ: Mapping[str, str] | None = None,
        report: Callable[[str], None] = print,
        compute: RemoteCompute | None = None,
    ) -> None:
        self.root = Path(local_root).absolute()
        # Spark from a target's compute (Databricks Connect) instead of this machine's.
        self.compute = compute
        self.environ = os.environ if environ is None else environ
        from_environment = self.environ.get("MLFLOW_TRACKING_URI")
        self.tracking_uri = tracking_uri or from_environment or store_uri(self.root)
        self.report = report
        if not tracking_uri and from_environment and from_environment != store_uri(self.root):
            report(
                f"MLflow store: {redacted(from_environment)}, from MLFLOW_TRACKING_URI, not"
                f" {store_uri(self.root).removeprefix('sqlite:///')}: runs and models go there"
                " (unset MLFLOW_TRACKING_URI to keep them under the local root)"
            )
        self.spark = LazySpark(self._start_spark)

    def _start_spark(self) -> Any:
        """The session the first Spark step asks for, announced: classic, or Spark Connect
        (SPARK_REMOTE), as serverless compute runs the same notebooks."""
        if self.compute is not None:
            session = remote_session(self.compute)
            self.report(f"  Spark: {describe_remote(self.compute)}")
            return session
        session = local_spark_session(self.root)
        self.report(f"  Spark: {describe(session)}")
        return session

    def run(
        self,
        spec_path: str | Path,
        overrides: Mapping[str, str] | None = None,
        notebooks_dir: str | Path | None = None,
        defaults: Mapping[str, str] | None = None,
    ) -> JobRun:
        """Run the spec's tasks with `overrides` (each must reach some task) on top of
        `defaults` (a deploy target's parameters: applied where a task takes them).

        Every value any task would receive is judged against its step's rules first, those of
        the jobs its run_job tasks run included: a bad one is a ParameterError before the first
        task starts, so nothing is written. A spec with run_job tasks is checked with the other
        specs of its folder (check_job_references), where the jobs it runs are found by name.
        """
        spec_path = Path(spec_path)
        notebooks = Path(notebooks_dir or spec_path.absolute().parent.parent / NOTEBOOKS_FOLDER)
        spec = check_spec(spec_path, notebooks)
        jobs = _runnable_jobs(spec, notebooks)
        defaults = dict(defaults or {})
        overrides = {**_taken(spec, defaults), **(overrides or {})}
        parameters = task_parameters(spec, overrides)
        problems = check_job_parameters(spec, overrides) + _nested_problems(spec, jobs, defaults)
        if self.compute is not None:
            problems += _outputs_apart(spec, jobs, self.compute)
        if problems:
            raise ParameterError("\n".join(problems))
        self.root.mkdir(parents=True, exist_ok=True)
        with self._mlflow_environment():
            return self._run_job(spec, parameters, _Nesting(jobs, defaults), self.report)

    def _run_job(
        self,
        spec: JobSpec,
        parameters: dict[str, dict[str, str]],
        nesting: _Nesting,
        report: Callable[[str], None],
        repairing: run_records.RunRecord | None = None,
    ) -> JobRun:
        """Run the job's tasks in order. `repairing`: a failed run of it, whose succeeded (and
        excluded) tasks are kept with their task values, and the others run again. A run that
        fails is recorded (run_records.py), so that it can be repaired."""
        run_id = repairing.run_id if repairing else uuid.uuid4().hex[:12]
        task_values: dict[str, dict[str, Any]] = dict(repairing.task_values) if repairing else {}
        kept = {
            key: status
            for key, status in (repairing.statuses if repairing else {}).items()
            if status in (SUCCESS, EXCLUDED)
        }
        runs: dict[str, TaskRun] = {}
        started = time.perf_counter()
        for task in spec.all_tasks:
            notebook = task.notebook.path if isinstance(task, NotebookTask) else None
            excluded = _excluded_by(task, runs)
            if task.key in kept:
                outcome = repairing.outcomes.get(task.key) if repairing else None
                runs[task.key] = TaskRun(
                    task.key, notebook, kept[task.key], outcome=outcome, what=_what(task),
                    outputs=task_values.get(task.key, {}),
                )  # fmt: skip
                report(f"- task {task.key}: {kept[task.key].lower()} in the run repaired, kept")
            elif any(r.status == FAILED for r in runs.values()):  # a failing task stops the job
                runs[task.key] = TaskRun(task.key, notebook, SKIPPED, what=_what(task))
                report(f"- task {task.key}: skipped (an earlier task failed)")
            elif excluded:
                runs[task.key] = TaskRun(task.key, notebook, EXCLUDED, what=_what(task))
                report(f"- task {task.key}: excluded ({excluded})")
            else:
                work = {
                    NotebookTask: lambda t: self._notebook(t, parameters, task_values, run_id),
                    ConditionTask: lambda t: _condition(t, task_values, run_id),
                    RunJobTask: lambda t: self._nested_job(t, task_values, run_id, nesting, report),
                }[type(task)]
                runs[task.key] = self._attempt(task, notebook, report, work)
        run = JobRun(spec.name, run_id, list(runs.values()), time.perf_counter() - started)
        if not run.succeeded or repairing:
            notebooks = next(t.notebook.path.parent for t in spec.tasks)
            record = run_records.RunRecord(
                run_id, spec.name, str(spec.path.absolute()), str(notebooks.absolute()),
                parameters, dict(nesting.defaults), task_values,
                {t.key: t.status for t in run.tasks}, {t.key: t.outcome for t in run.tasks},
            )  # fmt: skip
            run_records.save(self.root, record)
        return run

    @contextmanager
    def registry(self, model_name: str, registry: str) -> Iterator[MlflowClient]:
        """A client on the local store's registry (approve --local, history --local)."""
        with self._mlflow_environment():
            use_registry(registry, model_name)
            yield MlflowClient()

    def repair(self, run_id: str) -> JobRun:
        """Run a failed local run's failed and skipped tasks again, as Databricks repairs a run:
        the same run id, parameters and task values of the tasks that succeeded."""
        record = run_records.load(self.root, run_id)
        notebooks = Path(record.notebooks)
        spec = check_spec(Path(record.spec), notebooks)
        jobs = _runnable_jobs(spec, notebooks)
        self.report(f"repairing run {run_id} of job '{record.job}'")
        with self._mlflow_environment():
            nesting = _Nesting(jobs, record.defaults)
            return self._run_job(spec, record.parameters, nesting, self.report, repairing=record)

    def _attempt(
        self,
        task: Task,
        notebook: Path | None,
        report: Callable[[str], None],
        work: Callable[[Any], tuple[dict[str, Any], str]],
    ) -> TaskRun:
        """Run one task; an exception fails it (and only it), like on Databricks. `work` returns
        what the TaskRun records (outputs, outcome, job) and a note for the report line."""
        report(f"> task {task.key}: {notebook.name if notebook else _what(task)}")
        started = time.perf_counter()
        try:
            recorded, note = work(task)
        except Exception as error:
            seconds = time.perf_counter() - started
            if not isinstance(error, UserError):  # its message says it all: no traceback
                report("".join(traceback.format_exception(error)).rstrip())
            job = error.job if isinstance(error, JobFailed) else None
            report(f"x task {task.key} FAILED after {seconds:.1f} s")
            if self.spark.started and (self.root / SPARK_LOG).exists():  # not a remote server's
                report(f"  Spark's own log, with its stack traces: {self.root / SPARK_LOG}")
            return TaskRun(task.key, notebook, FAILED, seconds, error, job=job, what=_what(task))
        seconds = time.perf_counter() - started
        report(f"v task {task.key} succeeded in {seconds:.1f} s{note}")
        return TaskRun(task.key, notebook, SUCCESS, seconds, what=_what(task), **recorded)

    def _notebook(
        self,
        task: NotebookTask,
        parameters: dict[str, dict[str, str]],
        task_values: dict[str, dict[str, Any]],
        run_id: str,
    ) -> tuple[dict[str, Any], str]:
        resolved = {
            name: resolve_references(value, task_values, task.key, run_id)
            for name, value in parameters[task.key].items()
        }
        dbutils = LocalDbutils(
            resolved, self.root, task_values, task.key, self.environ, self.spark,
            spark_paths_local=self.compute is None,
        )  # fmt: skip
        execute_notebook(task, dbutils, self.spark)
        return {"outputs": task_values.get(task.key, {})}, ""

    def _nested_job(
        self,
        task: RunJobTask,
        task_values: dict[str, dict[str, Any]],
        run_id: str,
        nesting: _Nesting,
        report: Callable[[str], None],
    ) -> tuple[dict[str, Any], str]:
        """Run the job the task names, with the target's defaults and the task's job_parameters
        (references filled); its lines are indented under the task's. It fails the task when it
        fails, as a run_job task fails with the run it started."""
        if nesting.depth >= MAX_JOB_DEPTH:
            raise SpecError(
                [f"task '{task.key}': run_job tasks nest more than {MAX_JOB_DEPTH} deep"]
            )
        job = nesting.jobs[task.job]
        given = {
            name: resolve_references(value, task_values, task.key, run_id)
            for name, value in task.job_parameters.items()
        }
        overrides = {**_taken(job, nesting.defaults), **given}
        parameters = task_parameters(job, overrides)
        problems = check_job_parameters(job, overrides)
        if problems:
            raise ParameterError("\n".join(problems))
        inner = nesting.deeper()
        run = self._run_job(job, parameters, inner, lambda text: report(_indented(text)))
        if not run.succeeded:
            raise JobFailed(run)
        return {"job": run}, f": job '{job.name}' succeeded"

    @contextmanager
    def _mlflow_environment(self) -> Iterator[None]:
        """Point MLflow at the local store for the run; restore the caller's settings after."""
        settings = {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            # the steps' use_registry sets it (in the environment too, for subprocesses)
            "MLFLOW_REGISTRY_URI": self.tracking_uri,
            ARTIFACT_ROOT_ENV: str(self.root / "mlartifacts"),
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        saved = {key: os.environ.get(key) for key in settings}
        os.environ.update(settings)
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"] or "")
            # "" leaves the registry to MLFLOW_REGISTRY_URI as restored, else the tracking URI
            mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"] or "")


@dataclass(frozen=True)
class _Nesting:
    """What a run_job task needs: the specs of its folder by name, the target's defaults, and
    how deep in run_job tasks the job runs."""

    jobs: Mapping[str, JobSpec]
    defaults: Mapping[str, str]
    depth: int = 0

    def deeper(self) -> _Nesting:
        return _Nesting(self.jobs, self.defaults, self.depth + 1)


def _runnable_jobs(spec: JobSpec, notebooks: Path) -> dict[str, JobSpec]:
    """The specs of the spec's folder by name, checked together, when it has run_job tasks; {}
    otherwise (a job that runs no other reads no other spec)."""
    if not spec.referenced_jobs:
        return {}
    specs = [check_spec(path, notebooks) for path in sorted(spec.path.parent.glob("*.json"))]
    check_job_references(specs)
    return {s.name: s for s in specs}


def _nested_problems(
    spec: JobSpec, jobs: Mapping[str, JobSpec], defaults: Mapping[str, str], depth: int = 0
) -> list[str]:
    """The values each job its run_job tasks run would receive, judged before anything runs
    (values with {{...}} references are judged when the task runs)."""
    problems = []
    for task in spec.control_tasks:
        if not isinstance(task, RunJobTask) or depth >= MAX_JOB_DEPTH:
            continue
        job = jobs[task.job]  # its job_parameters are its job's: check_job_references
        problems += check_job_parameters(job, {**_taken(job, defaults), **task.job_parameters})
        problems += _nested_problems(job, jobs, defaults, depth + 1)
    return problems


def _outputs_apart(spec: JobSpec, jobs: Mapping[str, JobSpec], compute: RemoteCompute) -> list[str]:
    """Tasks (of the job, and of the jobs it runs) whose steps write an output folder: an output
    is written through Spark and through this machine's file system (its manifest, the atomic
    swap, the monitoring table's files), which must be the same place, and a remote compute's
    storage is not a folder here. Refused before anything runs."""
    problems, reached, pending = [], [], [spec]
    while pending:  # the job, and each job a run_job task of a reached job runs
        job = pending.pop(0)
        if job.name in {j.name for j in reached}:
            continue
        reached.append(job)
        pending += [jobs[t.job] for t in job.control_tasks if isinstance(t, RunJobTask)]
    for job in reached:
        for task in job.tasks:
            for step_name in task.notebook.steps:
                declared = declared_parameters(STEPS[step_name])
                writes = [
                    name
                    for name, declaration in declared.items()
                    if any(isinstance(rule, OutputFolder) for rule in declaration.rules)
                ]
                if writes:
                    problems.append(
                        f"job '{job.name}' task '{task.key}' writes {', '.join(writes)} through"
                        " Spark and through this machine's files at once, which the"
                        f" {compute.describe()} does not share: run this job on Databricks"
                        " (make run-<job> TARGET=...), or locally without SPARK_TARGET"
                    )
    return problems


def _excluded_by(task: Task, runs: Mapping[str, TaskRun]) -> str | None:
    """Why the task is EXCLUDED, or None: a dependency was excluded, or a condition it depends on
    with an `outcome` came out the other way."""
    for key in task.depends_on:
        run = runs[key]
        if run.status == EXCLUDED:
            return f"{key} was excluded"
        wanted = task.outcomes.get(key)
        if wanted is not None and run.outcome != wanted:
            return f"{key} is {run.outcome}"
    return None


def _indented(text: str) -> str:
    """A nested job's report (a traceback too), indented under its run_job task's line."""
    return "\n".join(f"    {line}" for line in text.splitlines())


def _what(task: Task) -> str:
    if isinstance(task, ConditionTask):
        return f"condition {task.op}"
    if isinstance(task, RunJobTask):
        return f"run job '{task.job}'"
    return ""


def _condition(
    task: ConditionTask, task_values: Mapping[str, Mapping[str, Any]], run_id: str
) -> tuple[dict[str, Any], str]:
    left, right, outcome = condition_outcome(task, task_values, run_id)
    return {"outcome": outcome}, f": {left!r} {task.op} {right!r} is {outcome}"


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
