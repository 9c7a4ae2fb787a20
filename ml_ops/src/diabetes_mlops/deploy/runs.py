"""Remote runs: run-now a deployed job by name, follow it, exit with its result.

A run's tasks may be condition and run_job tasks: they have no notebook, and a task whose
condition did not hold ends EXCLUDED, which is no failure (the run still succeeds).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError
from databricks.sdk.service.jobs import Run, RunLifeCycleState, RunTask

from diabetes_mlops.deploy.config import Target
from diabetes_mlops.deploy.jobs import DeployError, find_job
from diabetes_mlops.deploy.workspace import for_current_user

FINAL = {
    RunLifeCycleState.TERMINATED,
    RunLifeCycleState.SKIPPED,
    RunLifeCycleState.INTERNAL_ERROR,
}


def run_job(
    w: WorkspaceClient,
    target: Target,
    job: str,
    parameters: dict[str, str],
    wait: bool = True,
    poll_seconds: float = 10.0,
    report: Callable[[str], None] = print,
) -> int:
    """Exit status: 0 when the run succeeds (or is only started), 1 otherwise."""
    target = for_current_user(w, target)
    name = target.job_name_prefix + job
    found = find_job(w, name)
    if found is None:
        raise DeployError(f"no job named '{name}' in target '{target.name}': run make deploy")
    declared = {p.name for p in (found.settings.parameters or [])}
    unknown = sorted(set(parameters) - declared)
    if unknown:
        raise DeployError(
            f"job '{name}' has no job parameter(s) {', '.join(unknown)}"
            f" (it has: {', '.join(sorted(declared))})"
        )
    run_id = w.jobs.run_now(
        found.job_id,
        job_parameters=parameters or None,
        idempotency_token=uuid.uuid4().hex,  # a retried request does not start a second run
    ).run_id
    run = w.jobs.get_run(run_id)
    report(f"started run {run_id} of '{name}': {run.run_page_url}")
    if not wait:
        return 0
    run = follow(w, run, poll_seconds, report)
    result = run.state.result_state.value if run.state and run.state.result_state else None
    excluded = [t.task_key for t in run.tasks or [] if _result(t) == "EXCLUDED"]
    if result == "SUCCESS":
        report(f"run {run_id} SUCCESS: {run.run_page_url}")
    else:
        report(f"run {run_id} {result or run.state.life_cycle_state.value}: {run.run_page_url}")
    if excluded:
        report(f"excluded (a condition did not hold): {', '.join(map(str, excluded))}")
    if result == "SUCCESS":
        return 0
    for task in run.tasks or []:
        task_result = _result(task)
        if task_result not in ("SUCCESS", "EXCLUDED"):
            report(f"task {task.task_key} {task_result or 'did not finish'}: {_error(w, task)}")
    return 1


def _result(task: RunTask) -> str | None:
    state = task.state
    return state.result_state.value if state and state.result_state else None


def _error(w: WorkspaceClient, task: RunTask) -> str:
    """The task's error: its output's, else its state message. A task without output of its own
    (a condition task, a run_job task whose run failed) may answer get-output with an error:
    then the state message is all there is."""
    message = (task.state.state_message if task.state else "") or "-"
    try:
        output = w.jobs.get_run_output(task.run_id)
    except DatabricksError:
        return message
    return output.error or message


def follow(w: WorkspaceClient, run: Run, poll_seconds: float, report) -> Run:
    """Poll until the run ends; a live status line on a terminal, a line per change elsewhere."""
    started = time.monotonic()
    live = sys.stdout.isatty()
    last = ""
    while run.state is None or run.state.life_cycle_state not in FINAL:
        line = status_line(run, time.monotonic() - started)
        if live:
            sys.stdout.write("\r" + line.ljust(60))
            sys.stdout.flush()
        elif line.split(" ")[:3] != last.split(" ")[:3]:
            report(line)
        last = line
        time.sleep(poll_seconds)
        run = w.jobs.get_run(run.run_id)
    if live:
        sys.stdout.write("\n")
    return run


def status_line(run: Run, elapsed: float) -> str:
    state = run.state.life_cycle_state.value if run.state and run.state.life_cycle_state else "?"
    active = [
        t.task_key
        for t in run.tasks or []
        if t.state and t.state.life_cycle_state == RunLifeCycleState.RUNNING
    ]
    minutes, seconds = divmod(int(elapsed), 60)
    return f"{state} task {','.join(active) or '-'} {minutes:02d}:{seconds:02d}"
