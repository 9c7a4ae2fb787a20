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
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diabetes_mlops.data.locations import SAME, nesting
from diabetes_mlops.jobs.compute import SERVERLESS, ServerlessError, for_compute
from diabetes_mlops.jobs.fields import unknown_fields
from diabetes_mlops.jobs.specs import REFERENCE, JobSpec, NotebookTask
from diabetes_mlops.jobs.targets import LOCAL, load_target, target_names
from diabetes_mlops.runtime.context import fuse_path
from diabetes_mlops.runtime.parameters import OneOf, declared_parameters, read_arguments
from diabetes_mlops.steps import STEPS


def check_job_parameters(spec: JobSpec, overrides: Mapping[str, str] | None = None) -> list[str]:
    """One line per problem, naming the job, the task and the parameter; [] when all is well.

    Each task is judged on what it would receive: every job parameter, its base parameters, the
    overrides that reach it, and its notebook's widget defaults for the rest."""
    problems: list[str] = _overridden_references(spec, overrides or {})
    seen: set[str] = set()
    for call in step_calls([spec], overrides or {}):
        if call.step is None:
            found = [
                f"{call.task.notebook.path.name} runs '{call.step_name}', which is not a step of"
                f" diabetes_mlops.steps ({', '.join(STEPS)})"
            ]
        else:
            _, found = call.arguments()
            found += _dropdown_problems(call)
        for problem in found:
            if problem not in seen:  # a job parameter judged by several tasks: said once
                seen.add(problem)
                problems.append(f"job '{spec.name}' task '{call.task.key}': {problem}")
    return problems


def _overridden_references(spec: JobSpec, overrides: Mapping[str, str]) -> list[str]:
    """A value the job sets while it runs (a task parameter `{{tasks.train.values...}}`) cannot
    be given from outside: the given value would replace it, and the job would act on another
    model version than the one it just trained, after its first writes."""
    problems = []
    applied = spec.overrides_by_task(overrides)
    for task in spec.tasks:
        for name in applied[task.key]:
            value = task.base_parameters.get(name, "")
            if REFERENCE.search(value):
                problems.append(
                    f"job '{spec.name}' task '{task.key}': parameter '{name}' is set by the job"
                    f" as it runs ({value}); it cannot be given"
                )
    return problems


def _dropdown_problems(call: StepCall) -> list[str]:
    """A notebook dropdown offers exactly the values its step's OneOf rule allows: the choices
    are written in the notebook for the UI, the rule in the step, and they must not drift."""
    problems = []
    declared = declared_parameters(call.step)
    for widget in call.task.notebook.widgets.values():
        if widget.kind != "dropdown" or widget.name not in declared:
            continue
        for rule in declared[widget.name].rules:
            if isinstance(rule, OneOf) and set(widget.choices) != set(rule.choices):
                problems.append(
                    f"{call.task.notebook.path.name}: dropdown '{widget.name}' offers"
                    f" {', '.join(widget.choices)}; step '{call.step_name}' takes"
                    f" {', '.join(rule.choices)}"
                )
    return problems


@dataclass(frozen=True)
class StepCall:
    """A step as a task of a job calls it: the texts its widgets answer there (a passed value,
    else the widget's default), and the names whose text holds a `{{...}}` reference, known only
    when the job runs."""

    spec: JobSpec
    task: NotebookTask
    step_name: str
    step: Callable[..., Any] | None  # None: the notebook names no step of diabetes_mlops.steps
    texts: dict[str, str]
    dynamic: frozenset[str]

    def arguments(self) -> tuple[dict[str, Any], list[str]]:
        """The step's typed arguments, and a line per value its rules refuse."""
        assert self.step is not None
        return read_arguments(self.step, self.texts.get, unknown=set(self.dynamic))


def step_calls(specs: Iterable[JobSpec], overrides: Mapping[str, str]) -> Iterator[StepCall]:
    """Every step call of the specs' tasks when their jobs run with `overrides` (the rule of
    JobSpec.task_parameters), in task order."""
    for spec in specs:
        received = spec.task_parameters(overrides)
        for task in spec.tasks:
            defaults = {w.name: w.default for w in task.notebook.widgets.values()}
            texts = defaults | received[task.key]
            dynamic = frozenset(name for name, text in texts.items() if REFERENCE.search(text))
            for name in task.notebook.steps:
                yield StepCall(spec, task, name, STEPS.get(name), texts, dynamic)


def received_values(specs: Iterable[JobSpec], overrides: Mapping[str, str], name: str) -> list[Any]:
    """Each distinct value that steps taking parameter `name` receive when the jobs run with
    `overrides`: passed, else the widget's default, else the step's own default, typed by the
    step's rules. Values known only when a job runs (`{{...}}`) are left out."""
    found: list[Any] = []
    for call in step_calls(specs, overrides):
        if call.step is None or name in call.dynamic:
            continue
        arguments, _ = call.arguments()
        if name in arguments and arguments[name] not in found:
            found.append(arguments[name])
    return found


def check_targets(config: str | Path, specs: list[JobSpec]) -> list[str]:
    """The specs' parameter values with each deploy.yml target's parameters applied, each spec
    in the form its target's compute gives it (jobs/compute.py: a serverless form is checked
    against JobSettings even while no target uses it), then whether the targets keep their data
    apart; one line per problem."""
    config = Path(config)
    problems: list[str] = []
    own = {p for spec in specs for p in check_job_parameters(spec)}
    # (compute, environment version) -> the first target on it; "": no target, the form a
    # switch to serverless would give (checked as well, so the specs stay fit for it).
    forms: dict[tuple[str, str], str] = {}
    for name in target_names(config):
        target = load_target(name, config)
        version = target.serverless_environment_version
        if not forms.get((target.compute, version)):
            forms[(target.compute, version)] = name
        if version:
            forms.setdefault((SERVERLESS, version), "")
        for spec in specs:
            problems += [
                f"{config}: target '{name}': {p}"
                for p in check_job_parameters(spec, target.parameters)
                if p not in own  # the spec's own problem, reported without a target
            ]
    for (compute, version), name in forms.items():
        on = (
            f"serverless compute (environment version {version})"
            if compute == SERVERLESS
            else compute
        )
        for spec in specs:
            where = f"{config}: {f'target {name!r}: ' if name else ''}{spec.path.name} on {on}"
            try:
                form = for_compute(spec.settings, compute, version)
            except ServerlessError as exc:
                problems.append(f"{where}: {exc}")
                continue
            problems += [f"{where}: {p}" for p in unknown_fields(form)]
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
            relation = nesting(here, there)
            if relation == SAME:
                users = " and ".join(sorted({mine[here], theirs[there]}))
                shared = f"both use {here} ({users})"
            elif relation is not None:
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
    for call in step_calls(specs, parameters):
        for name, declared in declared_parameters(call.step).items() if call.step else ():
            value = call.texts.get(name, "").strip()
            if declared.is_path and value and name not in call.dynamic:
                found.setdefault(_normal(value), f"job '{call.spec.name}' parameter '{name}'")
    return found


def _normal(location: str) -> str:
    return fuse_path(location).rstrip("/") or "/"
