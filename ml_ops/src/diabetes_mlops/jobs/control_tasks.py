"""Control tasks of a job spec: condition tasks (If/else) and run_job tasks.

Neither runs a notebook or needs a cluster. A condition task compares two texts and decides
which of its dependents run; a run_job task starts another job of this project and succeeds when
that run succeeds. They are kept apart from the notebook tasks (`JobSpec.control_tasks` beside
`JobSpec.tasks`), so the code that works with notebooks (parameters, steps, serving) never meets
a task without one. This module knows nothing of JobSpec: `jobs/specs.py` builds on it.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from diabetes_mlops.runtime.errors import InputRefused

# ${job_id.<spec name>}: the id, in the target being deployed, of the job a spec of the same
# folder defines. A literal id would be one workspace's id, wrong in every other target.
JOB_ID = re.compile(r"\$\{job_id\.([^{}]+)\}")
# The one place a job_id placeholder, a string, stands where the SDK expects an int.
JOB_ID_FIELD = re.compile(r"tasks\[\d+\]\.run_job_task\.job_id")
OUTCOMES = ("true", "false")
NOTEBOOK, CONDITION, RUN_JOB = "notebook_task", "condition_task", "run_job_task"
SUPPORTED = (NOTEBOOK, CONDITION, RUN_JOB)
# Compute a control task must not name: it runs on none (Jobs API ConditionTask: "does not
# require a cluster"; a run_job task's compute is that of the job it starts).
COMPUTE = ("existing_cluster_id", "job_cluster_key", "new_cluster", "environment_key", "libraries")
# run_job_task fields besides job_id and job_parameters are the legacy per-task-type parameters
# of jobs without job parameters; the local runner could not pass them on, so they are refused.
RUN_JOB_KEPT = ("job_id", "job_parameters")
# A decimal number as the ordering operators read it (no "nan", "inf" or "1_000").
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
ORDERING = {
    "GREATER_THAN": operator.gt,
    "GREATER_THAN_OR_EQUAL": operator.ge,
    "LESS_THAN": operator.lt,
    "LESS_THAN_OR_EQUAL": operator.le,
}


class ConditionError(InputRefused, ValueError):
    """A condition that cannot be evaluated; the message says which operand and why."""


@dataclass
class ConditionTask:
    key: str
    op: str
    left: str
    right: str
    depends_on: list[str] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)  # dependency -> "true" / "false"

    @property
    def references(self) -> dict[str, str]:
        """Texts that may hold {{...}} references, by how a problem line names them."""
        return {
            "field 'condition_task.left'": self.left,
            "field 'condition_task.right'": self.right,
        }


@dataclass
class RunJobTask:
    key: str
    job: str  # the `name` of the spec whose job it runs
    job_parameters: dict[str, str] = field(default_factory=dict)
    depends_on: list[str] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)

    @property
    def references(self) -> dict[str, str]:
        return {
            f"field 'run_job_task.job_parameters.{name}'": value
            for name, value in self.job_parameters.items()
        }


ControlTask = ConditionTask | RunJobTask


def task_kind(task: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(kind, None), or (None, problem) when the task has no kind we run, or more than one."""
    kinds = [key for key in task if key.endswith("_task")]  # every Task field *_task is a kind
    if len(kinds) > 1:
        return None, f"sets {' and '.join(kinds)}: a task has exactly one kind"
    if not kinds or kinds[0] not in SUPPORTED:
        return None, (
            "only notebook tasks (notebook_task.notebook_path), condition tasks (condition_task)"
            " and run_job tasks (run_job_task) are supported"
        )
    return kinds[0], None


def dependencies(task: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The task keys it depends on, and the outcome wanted of those that name one."""
    entries = task.get("depends_on") or []
    outcomes = {d["task_key"]: d["outcome"] for d in entries if d.get("outcome") is not None}
    return [d["task_key"] for d in entries], outcomes


def control_task(task: Mapping[str, Any]) -> tuple[ControlTask | None, list[str]]:
    """The parsed condition or run_job task, and its problems (the task is None if it has any)."""
    problems = [
        f"a {_noun(task)} runs on no cluster: remove {key}" for key in COMPUTE if key in task
    ]
    depends_on, outcomes = dependencies(task)
    if CONDITION in task:
        condition = task[CONDITION]
        missing = [key for key in ("op", "left", "right") if key not in condition]
        if missing:
            problems.append(
                f"condition_task needs op, left and right; missing: {', '.join(missing)}"
            )
        if problems:
            return None, problems
        key, op, left, right = (task["task_key"], *(condition[k] for k in ("op", "left", "right")))
        return ConditionTask(key, op, left, right, depends_on, outcomes), []
    run_job = task[RUN_JOB]
    job_id = run_job.get("job_id")
    if job_id is None:
        problems.append("run_job_task needs job_id: ${job_id.<spec name>}")
    elif isinstance(job_id, int):
        problems.append(
            f"run_job_task.job_id is the literal id {job_id}: name the job by placeholder,"
            " ${job_id.<spec name>}, so that every target resolves its own job"
        )
    problems += [
        f"run_job_task.{key}: pass values as run_job_task.job_parameters"
        for key in run_job
        if key not in RUN_JOB_KEPT
    ]
    if problems:
        return None, problems
    name = JOB_ID.fullmatch(job_id).group(1)  # the type walk let only this string through
    parameters = dict(run_job.get("job_parameters") or {})
    return RunJobTask(task["task_key"], name, parameters, depends_on, outcomes), []


def _noun(task: Mapping[str, Any]) -> str:
    return "condition task" if CONDITION in task else "run_job task"


def outcome_problems(tasks: Sequence[Any]) -> dict[str, list[str]]:
    """Per task key, its dependencies whose `outcome` is misplaced or not "true"/"false". The
    Jobs API takes an outcome only on a dependency on a condition task (its result)."""
    conditions = {t.key for t in tasks if isinstance(t, ConditionTask)}
    known = {t.key for t in tasks}
    problems: dict[str, list[str]] = {}
    for task in tasks:
        for key, outcome in task.outcomes.items():
            if key not in known:
                continue  # an unknown dependency: said once, by the task order
            if key not in conditions:
                problem = (
                    f"depends on '{key}' with outcome {outcome!r}, but '{key}' is not a condition"
                    " task (only a dependency on a condition task takes an outcome)"
                )
            elif outcome not in OUTCOMES:
                problem = f"depends on '{key}' with outcome {outcome!r}: it is 'true' or 'false'"
            else:
                continue
            problems.setdefault(task.key, []).append(problem)
    return problems


def evaluate(op: str, left: str, right: str) -> bool:
    """A condition task's result, with both operands' references already filled in.

    Databricks: "The == and != operators perform string comparison of their operands. For
    example, 12.0 == 12 evaluates to false. The >, >=, <, and <= operators perform numeric
    comparisons of their operands. For example, 12.0 >= 12 evaluates to true"
    (https://docs.databricks.com/jobs/if-else.html; the same in databricks-sdk's
    ConditionTaskOp docstring). What an ordering operator does with a non-number is not
    documented: here it fails the task, rather than guess an order."""
    if op == "EQUAL_TO":
        return left == right
    if op == "NOT_EQUAL":
        return left != right
    if op not in ORDERING:
        raise ConditionError(f"unknown condition operator {op!r}")
    numbers = []
    for side, text in (("left", left), ("right", right)):
        if not NUMBER.fullmatch(text.strip()):
            raise ConditionError(f"{op} compares numbers; the {side} operand is {text!r}")
        numbers.append(float(text))
    return ORDERING[op](*numbers)


def operand_value_problem(value: Any) -> str | None:
    """Databricks: "Only numeric, string, and boolean values are allowed when referencing task
    values in an operand. Any other types will cause the condition expression to fail."""
    if isinstance(value, str | int | float | bool):
        return None
    return f"a condition operand reads a task value of type {type(value).__name__}"


class _Spec(Protocol):
    path: Path
    control_tasks: list[ControlTask]

    @property
    def name(self) -> str: ...

    @property
    def job_parameters(self) -> dict[str, str]: ...


def job_reference_problems(specs: Iterable[_Spec]) -> list[str]:
    """Across the specs of one deploy (a job_specs folder): each ${job_id.X} names a spec of the
    same folder, passes only job parameters that job declares, and no job runs itself through a
    chain of run_job tasks (on Databricks each run would start the next, without end)."""
    specs = list(specs)
    problems = []
    by_folder: dict[Path, dict[str, list[_Spec]]] = {}
    for spec in specs:
        by_folder.setdefault(spec.path.parent, {}).setdefault(spec.name, []).append(spec)
    for folder, named in by_folder.items():
        for name, same in sorted(named.items()):
            if len(same) > 1:
                files = ", ".join(sorted(s.path.name for s in same))
                problems.append(
                    f"{folder}: job name '{name}' is used by more than one spec: {files}"
                )
    for spec in specs:
        named = by_folder[spec.path.parent]
        for task in spec.control_tasks:
            if not isinstance(task, RunJobTask):
                continue
            where = f"{spec.path}: task '{task.key}'"
            if task.job not in named:
                problems.append(
                    f"{where}: ${{job_id.{task.job}}} names no spec in {spec.path.parent}/"
                    f" (job names: {', '.join(sorted(named))})"
                )
                continue
            declared = named[task.job][0].job_parameters
            for parameter in sorted(set(task.job_parameters) - set(declared)):
                problems.append(
                    f"{where}: passes job parameter '{parameter}', which job '{task.job}' does not"
                    f" declare (it has: {', '.join(sorted(declared)) or 'none'})"
                )
    return problems + _cycle_problems(specs)


def _cycle_problems(specs: list[_Spec]) -> list[str]:
    runs = {
        (spec.path.parent, spec.name): sorted(
            {t.job for t in spec.control_tasks if isinstance(t, RunJobTask)}
        )
        for spec in specs
    }
    paths = {(spec.path.parent, spec.name): spec.path for spec in specs}
    problems = []
    reported: set[frozenset] = set()
    for start in runs:
        stack = [(start, [start[1]])]
        while stack:
            (folder, name), chain = stack.pop()
            for nxt in runs.get((folder, name), []):
                if nxt == start[1]:
                    cycle = frozenset(chain)
                    if cycle not in reported:
                        reported.add(cycle)
                        problems.append(
                            f"{paths[start]}: job '{start[1]}' runs itself through run_job tasks:"
                            f" {' -> '.join([*chain, nxt])}"
                        )
                elif nxt not in chain:
                    stack.append(((folder, nxt), [*chain, nxt]))
    return problems
