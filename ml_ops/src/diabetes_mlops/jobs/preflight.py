"""Checks before a job starts: every parameter value its tasks would receive, and that deploy
targets keep their data apart.

`check_job_parameters` judges each task's values by the rules its step declares (see
`diabetes_mlops.runtime.parameters`), so a value that a later task would refuse is refused before
the first task writes anything. It runs in `make validate` (the specs, and each deploy.yml target's
parameters applied to them), in deploy and `deploy --plan`, in the local runner, and in
`diabetes-mlops run` for the values given. Paths are judged by their text only: nothing here
touches a file system or a workspace. Values holding `{{...}}` references are known only when
the job runs, and are judged then (by `run_step`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path

from diabetes_mlops.jobs.specs import REFERENCE, JobSpec, NotebookTask
from diabetes_mlops.jobs.targets import LOCAL, load_target, target_names
from diabetes_mlops.runtime.context import fuse_path
from diabetes_mlops.runtime.parameters import declared_parameters, read_arguments
from diabetes_mlops.steps import STEPS


def check_job_parameters(spec: JobSpec, overrides: Mapping[str, str] | None = None) -> list[str]:
    """One line per problem, naming the job, the task and the parameter; [] when all is well.

    Each task is judged on what it would receive: every job parameter, its base parameters, the
    overrides that reach it, and its notebook's widget defaults for the rest."""
    received = spec.task_parameters(overrides or {})
    problems: list[str] = []
    seen: set[str] = set()
    for task in spec.tasks:
        where = f"job '{spec.name}' task '{task.key}'"
        texts = task_texts(task, received[task.key])
        dynamic = {name for name, value in texts.items() if REFERENCE.search(value)}
        for name in task.notebook.steps:
            step = STEPS.get(name)
            if step is None:
                problem = (
                    f"{task.notebook.path.name} runs '{name}', which is not a step of"
                    f" diabetes_mlops.steps ({', '.join(STEPS)})"
                )
                found = [problem]
            else:
                _, found = read_arguments(step, texts.get, unknown=dynamic)
            for problem in found:
                if problem not in seen:  # a job parameter judged by several tasks: said once
                    seen.add(problem)
                    problems.append(f"{where}: {problem}")
    return problems


def task_texts(task: NotebookTask, received: Mapping[str, str]) -> dict[str, str]:
    """What `dbutils.widgets.get` answers in the task: a passed value, else the widget default."""
    return {w.name: w.default for w in task.notebook.widgets.values()} | dict(received)


def check_targets(config: str | Path, specs: list[JobSpec]) -> list[str]:
    """The specs' parameter values with each deploy.yml target's parameters applied, then
    whether the targets keep their data apart; one line per problem."""
    config = Path(config)
    problems: list[str] = []
    own = {p for spec in specs for p in check_job_parameters(spec)}
    for name in target_names(config):
        target = load_target(name, config)
        for spec in specs:
            problems += [
                f"{config}: target '{name}': {p}"
                for p in check_job_parameters(spec, target.parameters)
                if p not in own  # the spec's own problem, reported without a target
            ]
    return problems + data_location_clashes(config, specs)


def data_location_clashes(config: str | Path, specs: list[JobSpec]) -> list[str]:
    """Deploy targets (`local` aside: the local runner maps paths under its own folder) whose
    data locations are the same, or one inside the other: a dev run would read or overwrite
    what prod wrote. Every path parameter of every task counts, resolved for each target."""
    config = Path(config)
    used: dict[str, dict[str, str]] = {}  # target -> location -> what uses it
    for name in target_names(config):
        if name != LOCAL:
            used[name] = data_locations(specs, load_target(name, config).parameters)
    problems = []
    for (first, mine), (second, theirs) in itertools.combinations(used.items(), 2):
        for here, there in itertools.product(sorted(mine), sorted(theirs)):
            if here == there:
                users = " and ".join(sorted({mine[here], theirs[there]}))
                shared = f"both use {here} ({users})"
            elif _inside(here, there) or _inside(there, here):
                shared = (
                    f"overlap: {here} ({mine[here]} in '{first}') and {there}"
                    f" ({theirs[there]} in '{second}')"
                )
            else:
                continue
            problems.append(
                f"{config}: targets '{first}' and '{second}' {shared}; give each target its own"
                " data_dir"
            )
    return problems


def data_locations(specs: list[JobSpec], parameters: Mapping[str, str]) -> dict[str, str]:
    """Every path a task of the specs reads or writes with these parameters -> who uses it."""
    found: dict[str, str] = {}
    for spec in specs:
        received = spec.task_parameters(parameters)
        for task in spec.tasks:
            texts = task_texts(task, received[task.key])
            for step in (STEPS[s] for s in task.notebook.steps if s in STEPS):
                for name, declared in declared_parameters(step).items():
                    value = texts.get(name, "").strip()
                    if declared.is_path and value and not REFERENCE.search(value):
                        found.setdefault(_normal(value), f"job '{spec.name}' parameter '{name}'")
    return found


def _normal(location: str) -> str:
    return fuse_path(location).rstrip("/") or "/"


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip("/") + "/")
