"""Job specs (Jobs API 2.1 JobSettings as JSON): loading, checking, task order, references.

`check_spec` is what `make validate` runs and what the local runner runs before a job: it knows
every JobSettings field from the databricks-sdk dataclasses (`spec_fields`), and it checks each
notebook task against the widgets its notebook declares. Condition and run_job tasks
(`control_tasks`) are checked too; `check_job_references` checks the specs of a folder together,
since a run_job task names another spec's job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diabetes_mlops.jobs.control_tasks import (
    JOB_ID,
    NOTEBOOK,
    RUN_JOB,
    ConditionTask,
    ControlTask,
    RunJobTask,
    control_task,
    dependencies,
    job_reference_problems,
    outcome_problems,
    task_kind,
)
from diabetes_mlops.jobs.fields import unknown_fields
from diabetes_mlops.jobs.notebooks import Notebook, parse_notebook
from diabetes_mlops.runtime.errors import InputRefused

# Placeholders resolved at deploy time; the specs never hold a literal cluster id or wheel path.
PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
KNOWN_PLACEHOLDERS = (
    "cluster_id",
    "notebooks_dir",
    "wheel.diabetes",
    "wheel.diabetes_mlops",
    "alert_email",
    "model_name",  # the job's model_name parameter, for a trigger on the model (securable_name)
)
REQUIRED_WHEELS = ("${wheel.diabetes}", "${wheel.diabetes_mlops}")
# Databricks dynamic value references, e.g. {{tasks.train.values.model_version}}.
REFERENCE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
TASK_VALUE = re.compile(r"tasks\.([A-Za-z0-9_-]+)\.values\.([A-Za-z0-9_-]+)$")
JOB_REFERENCES = ("job.id", "job.run_id", "task.name", "task.run_id")
TASK_FIELD = re.compile(r"'tasks\[(\d+)\]")


class SpecError(InputRefused, ValueError):
    """One or more problems in a spec; each line names the file and the problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class NotebookTask:
    key: str
    notebook: Notebook
    base_parameters: dict[str, str]
    depends_on: list[str] = field(default_factory=list)
    # Databricks pushes every job parameter down to every task (and a job parameter wins over a
    # task parameter of the same name); `dbutils.widgets.get` reads them, declared or not.
    job_parameters: dict[str, str] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)  # condition dependency -> "true"/"false"

    @property
    def parameters(self) -> dict[str, str]:
        """What the task receives when the job runs with its defaults."""
        return {**self.base_parameters, **self.job_parameters}

    @property
    def references(self) -> dict[str, str]:
        """Texts that may hold {{...}} references, by how a problem line names them."""
        return {f"parameter '{name}'": value for name, value in self.parameters.items()}


Task = NotebookTask | ConditionTask | RunJobTask


@dataclass
class JobSpec:
    path: Path
    settings: dict[str, Any]
    tasks: list[NotebookTask]  # the notebook tasks, in dependency order
    # Condition and run_job tasks: apart, so that every task in `tasks` has a notebook.
    control_tasks: list[ControlTask] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.settings.get("name", self.path.stem)

    @property
    def all_tasks(self) -> list[Task]:
        """Every task, in the order a run takes them (dependencies first, else spec order)."""
        position = {t.get("task_key"): i for i, t in enumerate(self.settings.get("tasks") or [])}
        tasks: list[Task] = [*self.tasks, *self.control_tasks]
        return task_order(sorted(tasks, key=lambda t: position.get(t.key, len(position))))

    @property
    def referenced_jobs(self) -> list[str]:
        """The names of the specs whose jobs its run_job tasks run."""
        return sorted({t.job for t in self.control_tasks if isinstance(t, RunJobTask)})

    @property
    def job_parameters(self) -> dict[str, str]:
        return job_parameters(self.settings)

    def overrides_by_task(self, overrides: Mapping[str, str]) -> dict[str, dict[str, str]]:
        """Per task key, the overrides it takes (the rule of the local runner, the deployer and
        the parameter checks): a job parameter's goes to every task, as Databricks pushes job
        parameters down; any other name to every task whose notebook declares it."""
        job = self.job_parameters
        return {
            task.key: {k: v for k, v in overrides.items() if k in job or k in task.notebook.widgets}
            for task in self.tasks
        }

    def task_parameters(self, overrides: Mapping[str, str]) -> dict[str, dict[str, str]]:
        """Per task key, every parameter the task receives when the job runs with `overrides`
        (names no task takes are ignored here)."""
        applied = self.overrides_by_task(overrides)
        return {task.key: task.parameters | applied[task.key] for task in self.tasks}


def load_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError([f"{path}: cannot read spec: {exc.strerror}"]) from None
    except json.JSONDecodeError as exc:
        raise SpecError([f"{path}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}"]) from None
    if not isinstance(data, dict):
        raise SpecError([f"{path}: a job spec is a JSON object (JobSettings)"])
    return data


# Where a repository keeps its job specs and the notebooks their tasks run, from its root.
SPECS_FOLDER = "job_specs"
NOTEBOOKS_FOLDER = "orchestrator_notebooks"


def load_specs(repo: str | Path) -> list[JobSpec]:
    """Every job spec of the repository, each checked alone (SpecError otherwise)."""
    repo = Path(repo)
    paths = sorted((repo / SPECS_FOLDER).glob("*.json"))
    return [check_spec(path, repo / NOTEBOOKS_FOLDER) for path in paths]


def check_spec(path: str | Path, notebooks_dir: str | Path) -> JobSpec:
    """Load and check one spec; raise SpecError listing every problem found."""
    path, notebooks_dir = Path(path), Path(notebooks_dir)
    settings = load_json(path)
    found = unknown_fields(settings) or _structure(settings)
    problems = [f"{path}: {_in_task(p, settings)}" for p in found]
    if problems:
        raise SpecError(problems)
    problems += [f"{path}: {p}" for p in _placeholder_problems(settings)]
    defaults = job_parameters(settings)
    tasks: list[NotebookTask] = []
    every: list[Task] = []
    for index, task in enumerate(settings.get("tasks") or []):
        where = f"{path}: task '{task.get('task_key', index)}'"
        kind, problem = task_kind(task)
        if kind != NOTEBOOK:
            control, wrong = control_task(task) if problem is None else (None, [problem])
            problems += [f"{where}: {p}" for p in wrong]
            every += [control] if control else []
            continue
        try:
            tasks.append(_notebook_task(task, notebooks_dir, defaults))
        except InputRefused as exc:
            problems.append(f"{where}: {exc}")
            continue
        every.append(tasks[-1])
        problems += [f"{where}: {p}" for p in _task_problems(task, tasks[-1])]
    if not settings.get("tasks"):
        problems.append(f"{path}: no tasks")
    for name in defaults:
        if tasks and not any(name in t.notebook.widgets for t in tasks):
            problems.append(f"{path}: job parameter '{name}' is declared by no task's notebook")
    try:
        ordered = task_order(every)
    except SpecError as exc:
        problems += [f"{path}: {p}" for p in exc.problems]
        ordered = every
    problems += [f"{path}: {p}" for p in _reference_problems(ordered)]
    for key, wrong in outcome_problems(ordered).items():
        problems += [f"{path}: task '{key}': {p}" for p in wrong]
    if problems:
        raise SpecError(problems)
    notebook_tasks = [t for t in ordered if isinstance(t, NotebookTask)]
    controls = [t for t in ordered if not isinstance(t, NotebookTask)]
    return JobSpec(path, settings, notebook_tasks, controls)


def check_job_references(specs: list[JobSpec]) -> None:
    """Check checked specs together (those of one job_specs folder): every ${job_id.X} names a
    spec of the same folder and no job runs itself through run_job tasks; raise SpecError."""
    problems = job_reference_problems(specs)
    if problems:
        raise SpecError(problems)


def _structure(settings: dict[str, Any]) -> list[str]:
    """Keys the Jobs API requires, which the SDK's dataclasses leave optional."""
    problems = []
    keys = []
    for index, task in enumerate(settings.get("tasks") or []):
        if not task.get("task_key"):
            problems.append(f"field 'tasks[{index}].task_key' is missing")
        keys.append(task.get("task_key"))
        for number, dependency in enumerate(task.get("depends_on") or []):
            if not dependency.get("task_key"):
                problems.append(f"field 'tasks[{index}].depends_on[{number}].task_key' is missing")
    problems += [f"task_key '{k}' is used by more than one task" for k in _repeated(keys) if k]
    names = [p.get("name") for p in settings.get("parameters") or []]
    problems += [f"field 'parameters[{i}].name' is missing" for i, n in enumerate(names) if not n]
    problems += [f"job parameter '{n}' is declared more than once" for n in _repeated(names) if n]
    # Deprecated in the Jobs API for notification_settings.no_alert_for_skipped_runs (databricks-sdk
    # JobEmailNotifications/TaskEmailNotifications; https://databricks.github.io/sdk-js/api/
    # interfaces/_databricks_sdk-jobs.v2.JobEmailNotifications.html), for the job and each task.
    owners = [("", settings)] + [
        (f"tasks[{i}].", t) for i, t in enumerate(settings.get("tasks") or [])
    ]
    problems += [
        f"field '{at}email_notifications.no_alert_for_skipped_runs' is deprecated: use"
        f" '{at}notification_settings.no_alert_for_skipped_runs'"
        for at, owner in owners
        if "no_alert_for_skipped_runs" in (owner.get("email_notifications") or {})
    ]
    return problems


def _in_task(problem: str, settings: dict[str, Any]) -> str:
    """A problem with a field of tasks[i], prefixed with that task's key when it has one."""
    match = TASK_FIELD.search(problem)
    tasks = settings.get("tasks")
    if match and isinstance(tasks, list) and int(match.group(1)) < len(tasks):
        task = tasks[int(match.group(1))]
        if isinstance(task, dict) and isinstance(task.get("task_key"), str):
            return f"task '{task['task_key']}': {problem}"
    return problem


def _repeated(items: list[Any]) -> list[Any]:
    return sorted({x for x in items if items.count(x) > 1}, key=str)


def _placeholder_problems(settings: dict[str, Any]) -> list[str]:
    """Unknown placeholders, and ${job_id.X} anywhere but run_job_task.job_id (the deployer fills
    it there only, with an int)."""
    names = sorted(set(PLACEHOLDER.findall(json.dumps(settings))))
    problems = [
        f"unknown placeholder '${{{name}}}' (known: {', '.join(KNOWN_PLACEHOLDERS)})"
        for name in names
        if name not in KNOWN_PLACEHOLDERS and not JOB_ID.fullmatch(f"${{{name}}}")
    ]
    job = {key: value for key, value in settings.items() if key != "tasks"}
    problems += [f"{p} belongs in run_job_task.job_id only" for p in _job_ids_in(job)]
    for index, task in enumerate(settings.get("tasks") or []):
        run_job = {k: v for k, v in (task.get(RUN_JOB) or {}).items() if k != "job_id"}
        rest = [{k: v for k, v in task.items() if k != RUN_JOB}, run_job]
        problems += [
            f"task '{task.get('task_key', index)}': {p} belongs in run_job_task.job_id only"
            for p in _job_ids_in(rest)
        ]
    return problems


def _job_ids_in(value: Any) -> list[str]:
    names = sorted(set(JOB_ID.findall(json.dumps(value))))
    return [f"placeholder '${{job_id.{name}}}'" for name in names]


def job_parameters(settings: Mapping[str, Any]) -> dict[str, str]:
    """A job's parameters (JobSettings.parameters) with their default values."""
    return {p["name"]: p.get("default", "") for p in settings.get("parameters") or []}


def notebook_name(notebook_path: str) -> str:
    """The notebook a task's notebook_path names: its last part (the file's stem here)."""
    return notebook_path.rstrip("/").rsplit("/", 1)[-1]


def _notebook_task(
    task: dict[str, Any], notebooks_dir: Path, job_parameters: dict[str, str]
) -> NotebookTask:
    notebook_task = task.get("notebook_task")
    if not notebook_task or not notebook_task.get("notebook_path"):
        raise SpecError(["only notebook tasks are supported (notebook_task.notebook_path)"])
    name = notebook_name(notebook_task["notebook_path"])
    notebook_file = notebooks_dir / f"{name}.py"
    if not notebook_file.is_file():
        raise SpecError([f"notebook '{name}' is not in {notebooks_dir}/"])
    parameters = notebook_task.get("base_parameters") or {}
    notebook = parse_notebook(notebook_file)
    depends_on, outcomes = dependencies(task)
    return NotebookTask(
        key=task["task_key"],
        notebook=notebook,
        base_parameters=dict(parameters),
        depends_on=depends_on,
        job_parameters=dict(job_parameters),
        outcomes=outcomes,
    )


def _task_problems(task: dict[str, Any], parsed: NotebookTask) -> list[str]:
    problems = []
    widgets = parsed.notebook.widgets
    notebook = parsed.notebook.path.name
    for name in parsed.base_parameters:
        if name not in widgets:
            problems.append(f"passes parameter '{name}' that {notebook} does not declare")
        if name in parsed.job_parameters:
            problems.append(f"parameter '{name}' is both a job and a task parameter")
    for widget in widgets.values():  # a value passed, even "", is judged by the step's rules
        if widget.required and widget.name not in parsed.parameters:
            problems.append(
                f"omits parameter '{widget.name}', which {notebook} declares with no default"
            )
    for name, value in parsed.parameters.items():
        widget = widgets.get(name)
        dropdown = widget is not None and widget.kind == "dropdown"
        if dropdown and value not in widget.choices and not REFERENCE.search(value):
            problems.append(f"parameter '{name}'={value!r} is not one of {widget.choices}")
    cluster = task.get("existing_cluster_id")
    if cluster is not None and not PLACEHOLDER.fullmatch(cluster):
        problems.append("existing_cluster_id must be a placeholder such as ${cluster_id}")
    if cluster is None and not task.get("job_cluster_key"):
        problems.append("names no cluster (existing_cluster_id or job_cluster_key)")
    wheels = [lib.get("whl") for lib in task.get("libraries") or []]
    for wheel in REQUIRED_WHEELS:
        if wheel not in wheels:
            problems.append(f"does not attach the wheel {wheel} as a library")
    return problems


def task_order(tasks: list[Task]) -> list[Task]:
    """Dependency order, keeping the spec's order among tasks that are ready together."""
    by_key = {t.key: t for t in tasks}
    problems = [
        f"task '{t.key}' depends on unknown task '{d}'"
        for t in tasks
        for d in t.depends_on
        if d not in by_key
    ]
    if problems:
        raise SpecError(problems)
    done: list[Task] = []
    pending = list(tasks)
    while pending:
        ready = [t for t in pending if all(d in {x.key for x in done} for d in t.depends_on)]
        if not ready:
            raise SpecError([f"tasks {[t.key for t in pending]} depend on each other (a cycle)"])
        done += ready
        pending = [t for t in pending if t not in ready]
    return done


def upstream(task: Task, tasks: list[Task]) -> set[str]:
    by_key = {t.key: t for t in tasks}
    seen: set[str] = set()
    stack = list(task.depends_on)
    while stack:
        key = stack.pop()
        if key not in seen and key in by_key:
            seen.add(key)
            stack += by_key[key].depends_on
    return seen


def _reference_problems(tasks: list[Task]) -> list[str]:
    """Each {{tasks.X.values.k}} reads a task upstream of the reader, and one that sets values:
    a notebook task (condition and run_job tasks set none)."""
    problems = []
    notebooks = {t.key for t in tasks if isinstance(t, NotebookTask)}
    for task in tasks:
        before = upstream(task, tasks)
        for name, value in task.references.items():
            for reference in REFERENCE.findall(value):
                match = TASK_VALUE.match(reference)
                if match and match.group(1) not in before:
                    problems.append(
                        f"task '{task.key}' {name} reads a value of task"
                        f" '{match.group(1)}', which is not upstream of it"
                    )
                elif match and match.group(1) not in notebooks:
                    problems.append(
                        f"task '{task.key}' {name} reads a value of task '{match.group(1)}',"
                        " which sets no values (only notebook tasks do)"
                    )
                elif not match and reference not in JOB_REFERENCES:
                    problems.append(
                        f"task '{task.key}' {name}: unsupported reference" f" '{{{{{reference}}}}}'"
                    )
    return problems
