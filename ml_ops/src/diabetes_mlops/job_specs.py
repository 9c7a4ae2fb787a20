"""Job specs (Jobs API 2.1 JobSettings as JSON): loading, checking, task order, references.

`check_spec` is what `make validate` runs and what the local runner runs before a job: it knows
every JobSettings field from the databricks-sdk dataclasses, and it checks each notebook task
against the widgets its notebook declares.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from databricks.sdk.service import jobs

from diabetes_mlops.notebooks import Notebook, NotebookError, parse_notebook

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


class SpecError(ValueError):
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

    @property
    def parameters(self) -> dict[str, str]:
        """What the task receives when the job runs with its defaults."""
        return {**self.base_parameters, **self.job_parameters}


@dataclass
class JobSpec:
    path: Path
    settings: dict[str, Any]
    tasks: list[NotebookTask]  # in dependency order

    @property
    def name(self) -> str:
        return self.settings.get("name", self.path.stem)

    @property
    def job_parameters(self) -> dict[str, str]:
        return {p["name"]: p.get("default", "") for p in self.settings.get("parameters") or []}

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


def check_spec(path: str | Path, notebooks_dir: str | Path) -> JobSpec:
    """Load and check one spec; raise SpecError listing every problem found."""
    path, notebooks_dir = Path(path), Path(notebooks_dir)
    settings = load_json(path)
    problems = [f"{path}: {p}" for p in unknown_fields(settings) or _structure(settings)]
    if problems:
        raise SpecError(problems)
    problems += [f"{path}: {p}" for p in _placeholder_problems(settings)]
    job_parameters = {p["name"]: p.get("default", "") for p in settings.get("parameters") or []}
    tasks: list[NotebookTask] = []
    for index, task in enumerate(settings.get("tasks") or []):
        where = f"{path}: task '{task.get('task_key', index)}'"
        try:
            tasks.append(_notebook_task(task, notebooks_dir, job_parameters))
        except (NotebookError, SpecError) as exc:
            problems.append(f"{where}: {exc}")
            continue
        problems += [f"{where}: {p}" for p in _task_problems(task, tasks[-1])]
    if not settings.get("tasks"):
        problems.append(f"{path}: no tasks")
    for name in job_parameters:
        if tasks and not any(name in t.notebook.widgets for t in tasks):
            problems.append(f"{path}: job parameter '{name}' is declared by no task's notebook")
    try:
        ordered = task_order(tasks)
    except SpecError as exc:
        problems += [f"{path}: {p}" for p in exc.problems]
        ordered = tasks
    problems += [f"{path}: {p}" for p in _reference_problems(ordered)]
    if problems:
        raise SpecError(problems)
    return JobSpec(path, settings, ordered)


def unknown_fields(settings: dict[str, Any]) -> list[str]:
    """Fields JobSettings does not know, and values the SDK cannot read (e.g. a bad enum)."""
    problems = _walk(settings, jobs.JobSettings, "")
    if problems:
        return problems
    roundtrip = jobs.JobSettings.from_dict(settings).as_dict()
    return [f"field '{p}': invalid value" for p in _dropped(settings, roundtrip, "")]


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
    return problems


def _repeated(items: list[Any]) -> list[Any]:
    return sorted({x for x in items if items.count(x) > 1}, key=str)


def _walk(value: Any, kind: Any, where: str) -> list[str]:
    kind = _unwrap(kind)
    origin = typing.get_origin(kind)
    expected = _scalar(kind)
    if expected is not None:
        types_, name = expected
        if isinstance(value, types_) and not (isinstance(value, bool) and bool not in types_):
            return []
        return [f"field '{where}': expected {name}, got {type(value).__name__} {value!r}"]
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            return [f"field '{where or 'JobSettings'}': expected an object"]
        hints = typing.get_type_hints(kind)
        problems = []
        for key, item in value.items():
            path = f"{where}.{key}" if where else key
            if key not in hints:
                problems.append(f"unknown field '{path}' (not in {kind.__name__})")
            else:
                problems += _walk(item, hints[key], path)
        return problems
    if origin is list:
        if not isinstance(value, list):
            return [f"field '{where}': expected a list"]
        (inner,) = typing.get_args(kind)
        return [p for i, item in enumerate(value) for p in _walk(item, inner, f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"field '{where}': expected an object"]
        inner = typing.get_args(kind)[1]
        return [p for k, item in value.items() for p in _walk(item, inner, f"{where}.{k}")]
    return []


def _scalar(kind: Any) -> tuple[tuple[type, ...], str] | None:
    if kind is str or (isinstance(kind, type) and issubclass(kind, enum.Enum)):
        return (str,), "a string"
    if kind is bool:
        return (bool,), "true or false"
    if kind is int:
        return (int,), "an integer"
    if kind is float:
        return (int, float), "a number"
    return None


def _unwrap(kind: Any) -> Any:
    """Optional[X] -> X."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return args[0] if len(args) == 1 else kind
    return kind


def _dropped(given: Any, kept: Any, where: str) -> list[str]:
    """Paths whose non-empty value did not survive from_dict/as_dict."""
    if isinstance(given, dict):
        kept = kept if isinstance(kept, dict) else {}
        return [
            p
            for key, item in given.items()
            for p in (
                _dropped(item, kept[key], f"{where}.{key}" if where else key)
                if key in kept
                else ([f"{where}.{key}" if where else key] if item not in ({}, [], None) else [])
            )
        ]
    if isinstance(given, list):
        kept = kept if isinstance(kept, list) else []
        return [
            p
            for i, item in enumerate(given)
            for p in (
                _dropped(item, kept[i], f"{where}[{i}]") if i < len(kept) else [f"{where}[{i}]"]
            )
        ]
    return []


def _placeholder_problems(settings: dict[str, Any]) -> list[str]:
    text = json.dumps(settings)
    return [
        f"unknown placeholder '${{{name}}}' (known: {', '.join(KNOWN_PLACEHOLDERS)})"
        for name in sorted(set(PLACEHOLDER.findall(text)))
        if name not in KNOWN_PLACEHOLDERS
    ]


def _notebook_task(
    task: dict[str, Any], notebooks_dir: Path, job_parameters: dict[str, str]
) -> NotebookTask:
    notebook_task = task.get("notebook_task")
    if not notebook_task or not notebook_task.get("notebook_path"):
        raise SpecError(["only notebook tasks are supported (notebook_task.notebook_path)"])
    name = notebook_task["notebook_path"].rstrip("/").rsplit("/", 1)[-1]
    notebook_file = notebooks_dir / f"{name}.py"
    if not notebook_file.is_file():
        raise SpecError([f"notebook '{name}' is not in {notebooks_dir}/"])
    parameters = notebook_task.get("base_parameters") or {}
    notebook = parse_notebook(notebook_file)
    return NotebookTask(
        key=task["task_key"],
        notebook=notebook,
        base_parameters=dict(parameters),
        depends_on=[d["task_key"] for d in task.get("depends_on") or []],
        job_parameters=dict(job_parameters),
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


def task_order(tasks: list[NotebookTask]) -> list[NotebookTask]:
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
    done: list[NotebookTask] = []
    pending = list(tasks)
    while pending:
        ready = [t for t in pending if all(d in {x.key for x in done} for d in t.depends_on)]
        if not ready:
            raise SpecError([f"tasks {[t.key for t in pending]} depend on each other (a cycle)"])
        done += ready
        pending = [t for t in pending if t not in ready]
    return done


def upstream(task: NotebookTask, tasks: list[NotebookTask]) -> set[str]:
    by_key = {t.key: t for t in tasks}
    seen: set[str] = set()
    stack = list(task.depends_on)
    while stack:
        key = stack.pop()
        if key not in seen and key in by_key:
            seen.add(key)
            stack += by_key[key].depends_on
    return seen


def _reference_problems(tasks: list[NotebookTask]) -> list[str]:
    problems = []
    for task in tasks:
        before = upstream(task, tasks)
        for name, value in task.parameters.items():
            for reference in REFERENCE.findall(value):
                match = TASK_VALUE.match(reference)
                if match and match.group(1) not in before:
                    problems.append(
                        f"task '{task.key}' parameter '{name}' reads a value of task"
                        f" '{match.group(1)}', which is not upstream of it"
                    )
                elif not match and reference not in JOB_REFERENCES:
                    problems.append(
                        f"task '{task.key}' parameter '{name}': unsupported reference"
                        f" '{{{{{reference}}}}}'"
                    )
    return problems
