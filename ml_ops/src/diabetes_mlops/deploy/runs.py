"""Remote runs: run-now a deployed job by name, follow it, exit with its result.

A run's tasks may be condition and run_job tasks: they have no notebook, and a task whose
condition did not hold ends EXCLUDED, which is no failure (the run still succeeds). When a run
fails, every task is reported with its state: the ones that failed with why, and the ones that
were skipped (UPSTREAM_FAILED...) and so may have no run_id, no output and little state.
"""

from __future__ import annotations

import re
import sys
import time
import uuid
from collections.abc import Callable

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError
from databricks.sdk.service.jobs import Run, RunLifeCycleState, RunTask

from diabetes_mlops.deploy.job_owners import claim_job
from diabetes_mlops.deploy.jobs import DeployError
from diabetes_mlops.deploy.workspace import for_current_user
from diabetes_mlops.jobs.targets import Target

FINAL = {
    RunLifeCycleState.TERMINATED,
    RunLifeCycleState.SKIPPED,
    RunLifeCycleState.INTERNAL_ERROR,
}
# Results of a task that did not run, and why: RunResultState (Jobs API runs/get), and the
# SKIPPED termination code (TerminationCodeCode in databricks-sdk's jobs service).
SKIPPED = {
    "EXCLUDED": "its condition did not hold",
    "UPSTREAM_FAILED": "an upstream task failed",
    "UPSTREAM_CANCELED": "an upstream task was canceled",
    "DISABLED": "disabled by a user",
    "SKIPPED": "it never ran",
}
LOG_LINES = 5
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# `NameError: name 'x' is not defined`, `pkg.mod.CustomError: ...`, a bare `KeyboardInterrupt`.
EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b(:.*)?$")


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
    found = claim_job(w, target, job).current  # never another target's job of that name
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
    report(f"run {run_id} {result or _life_cycle(run)}: {run.run_page_url}")
    if result == "SUCCESS":
        excluded = [str(t.task_key) for t in run.tasks or [] if task_state(t) == "EXCLUDED"]
        if excluded:
            report(f"excluded (a condition did not hold): {', '.join(excluded)}")
        return 0
    for task in run.tasks or []:  # every task: what failed, and what that left undone
        for line in task_report(w, task):
            report(line)
    return 1


def task_state(task: RunTask) -> str:
    """The task's result (SUCCESS, FAILED, UPSTREAM_FAILED, EXCLUDED...), else its termination
    code or life cycle state. A task skipped because an upstream task failed may come without
    run_id and with little state: whatever is there is used, and nothing is required."""
    state, status = task.state, task.status
    details = status.termination_details if status else None
    for value in (
        state.result_state if state else None,
        details.code if details else None,
        state.life_cycle_state if state else None,
        status.state if status else None,
    ):
        if value is not None:
            return value.value
    return "NO_STATE_REPORTED"


def task_report(w: WorkspaceClient, task: RunTask) -> list[str]:
    """`task <key> <state>: <why>`, then for a failed task the tail of its logs, indented."""
    state = task_state(task)
    if state in SKIPPED:
        return [f"task {task.task_key} {state} (skipped: {SKIPPED[state]})"]
    if state == "SUCCESS":
        return [f"task {task.task_key} SUCCESS"]
    summary, tail = task_error(w, task)
    return [f"task {task.task_key} {state}: {summary}"] + [f"    | {line}" for line in tail]


def task_error(w: WorkspaceClient, task: RunTask) -> tuple[str, list[str]]:
    """Why the task failed, and the last lines of its logs when nothing better says it: its
    output's `error`; when that is empty, the exception line of `error_trace`; else the state
    message (`Task exited with code 1`) with the tail of `logs` (the stdout/stderr of tasks that
    write them). A task without a run_id, or without output of its own (a condition task, a
    run_job task whose run failed), has its state message alone. Fields: Jobs API
    runs/get-output, https://docs.databricks.com/api/jobs/v2/get-run-output.md"""
    details = task.status.termination_details if task.status else None
    message = (task.state.state_message if task.state else "") or ""
    message = message or (details.message if details else "")
    if task.run_id is None:  # nothing ran: there is no output to ask for
        return message or "it did not run (no run of its own)", []
    message = message or "-"
    try:
        output = w.jobs.get_run_output(task.run_id)
    except DatabricksError:
        return message, []
    if output.error and output.error.strip():
        return " / ".join(last_lines(output.error, None)[:3]), []
    exception = exception_line(output.error_trace or "")
    if exception:
        return exception, []
    return message, last_lines(output.logs or "", LOG_LINES)


def exception_line(trace: str) -> str:
    """The line that names the exception (`NameError: name 'x' is not defined`): the last
    `Name: message` or bare exception name of a Python traceback, once the ANSI colour codes a
    notebook's trace carries are removed; else the trace's last line."""
    lines = last_lines(trace, None)
    for line in reversed(lines):
        if EXCEPTION.match(line.strip()):
            return line.strip()
    return lines[-1].strip() if lines else ""


def last_lines(text: str, count: int | None) -> list[str]:
    """The last `count` (None: all) non-blank lines, without ANSI colour codes."""
    lines = [line.rstrip() for line in ANSI.sub("", text).splitlines() if line.strip()]
    return lines[-count:] if count else lines


def _life_cycle(run: Run) -> str:
    state = run.state.life_cycle_state if run.state else None
    return state.value if state else "NO_STATE_REPORTED"


def follow(w: WorkspaceClient, run: Run, poll_seconds: float, report) -> Run:
    """Poll until the run ends; a live status line on a terminal, a line per change elsewhere."""
    started = time.monotonic()
    live = sys.stdout.isatty()
    last = ""
    while not ended(run):
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


def ended(run: Run) -> bool:
    """Over, by `state` (Jobs API 2.1) or by `status` (2.2's replacement, which a server may send
    alone): a poll must not outlive the run whichever of the two the server fills."""
    if run.state is not None and run.state.life_cycle_state is not None:
        return run.state.life_cycle_state in FINAL
    status = getattr(run, "status", None)
    state = getattr(status, "state", None)
    return getattr(state, "value", None) == "TERMINATED"


def status_line(run: Run, elapsed: float) -> str:
    state = run.state.life_cycle_state.value if run.state and run.state.life_cycle_state else "?"
    active = [
        t.task_key
        for t in run.tasks or []
        if t.state and t.state.life_cycle_state == RunLifeCycleState.RUNNING
    ]
    minutes, seconds = divmod(int(elapsed), 60)
    return f"{state} task {','.join(active) or '-'} {minutes:02d}:{seconds:02d}"
