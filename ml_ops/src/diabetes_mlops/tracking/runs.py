"""MLflow set-up shared by the steps: which experiment, which registry, and the step's run.

Every step opens its run with `tracked_run`, which tags the run with the process that owns it and
first closes runs of the same step that a dead process left RUNNING (a SIGKILL, a lost driver):
they are marked KILLED, so the experiment never shows a run "running" forever and the output
module knows that the run's leftovers may go.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import mlflow
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from diabetes_mlops.data.locations import driver_path, is_remote, nesting
from diabetes_mlops.runtime.errors import ParameterError, TrackingStoreError, first_line
from diabetes_mlops.runtime.parameters import require_choice

log = logging.getLogger(__name__)

# Set by the local runner so experiments it creates keep their artifacts under its local folder
# instead of ./mlruns of whatever the current directory is. Unset on Databricks.
ARTIFACT_ROOT_ENV = "DIABETES_MLOPS_ARTIFACT_ROOT"

WORKSPACE = "workspace"
UNITY_CATALOG = "unity_catalog"
REGISTRIES = (WORKSPACE, UNITY_CATALOG)


def use_registry(registry: str, model_name: str) -> None:
    """Point the MLflow registry at the workspace registry or at Unity Catalog.

    `workspace` means the tracking server's own registry: the sqlite store locally, the workspace
    registry on Databricks. Unity Catalog needs a three-level name `catalog.schema.model`.
    """
    check_model_name(registry, model_name)
    if registry == UNITY_CATALOG:
        mlflow.set_registry_uri("databricks-uc")
    else:
        mlflow.set_registry_uri(mlflow.get_tracking_uri())


def check_model_name(registry: str, model_name: str) -> None:
    """The registry's own rule for a model name (also judged before a job starts, by the
    parameter rules in steps/common.py)."""
    require_choice("registry", registry, REGISTRIES)
    if not model_name:
        raise ParameterError("parameter 'model_name' is empty; it needs a value")
    parts = model_name.split(".")
    if registry == UNITY_CATALOG and (len(parts) != 3 or not all(parts)):
        raise ParameterError(
            f"parameter 'model_name': Unity Catalog needs catalog.schema.model, got {model_name!r}"
        )


# The MLflow UI opens an experiment on the view its kind names; without the tag, MLflow 3's UI
# guesses and may open a training experiment on its GenAI overview (traces) rather than its runs.
# The values are the UI's (mlflow/server/js: "custom_model_development", "genai_development").
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
CUSTOM_MODEL_DEVELOPMENT = "custom_model_development"
RUN_NAME_TAG = "mlflow.runName"


def use_experiment(name: str) -> str:
    """Make `name` the active experiment (created when missing) and return its id."""
    if not name:
        raise ParameterError("parameter 'experiment_name' is empty; it needs a value")
    with store_errors():
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            root = os.environ.get(ARTIFACT_ROOT_ENV)
            location = f"{root.rstrip('/')}/{_slug(name)}" if root else None
            try:
                mlflow.create_experiment(
                    name,
                    artifact_location=location,
                    tags={EXPERIMENT_KIND_TAG: CUSTOM_MODEL_DEVELOPMENT},
                )
            except MlflowException:
                if mlflow.get_experiment_by_name(name) is None:  # not a lost creation race
                    raise
        return mlflow.set_experiment(name).experiment_id


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "experiment"


# Tags naming the process that owns a run; the next run of the same step checks them.
HOST_TAG = "diabetes_mlops.host"
PID_TAG = "diabetes_mlops.pid"
PROCESS_START_TAG = "diabetes_mlops.process_start"  # tells a reused pid from the original process
KILLED_REASON_TAG = "diabetes_mlops.killed_reason"
# A RUNNING run older than this is orphaned whatever its process: longer than any job or task
# timeout in job_specs/ (the longest is the training job's 4 h, which holds its tasks' timeouts
# and retries, deploy_serving's rollout and rollback included), and covers a notebook cancelled on
# Databricks while its Python process lives on.
STALE_AFTER_SECONDS = 5 * 3600


@contextmanager
def tracked_run(step: str) -> Iterator[mlflow.ActiveRun]:
    """`mlflow.start_run` for a step: tagged with its step and process; before the step's work
    starts, RUNNING runs of the same step in the experiment whose process is gone (or that are
    older than STALE_AFTER_SECONDS) are marked KILLED, with a tag saying why."""
    with store_errors():
        run = mlflow.start_run(run_name=step, tags={"step": step, **_process_tags()})
    with run:
        mark_orphaned_runs(run.info.experiment_id, step, run.info.run_id)
        try:
            yield run
        except OSError as exc:
            store = _artifact_folder(run.info.artifact_uri)
            if (
                store is None
                or not exc.filename
                or nesting(os.path.abspath(exc.filename), store) is None
            ):
                raise
            raise TrackingStoreError(
                f"MLflow artifact store {store}: {exc.strerror or first_line(exc)}"
                f" ({exc.filename})"
            ) from exc


def name_run(run: mlflow.ActiveRun, what: str) -> None:
    """Name the run after its step and what it did ("train v3 (alpha 1, rmse 53.8)"), so runs
    of one step can be told apart in the UI's list."""
    step = run.data.tags.get("step") or run.info.run_name or ""
    mlflow.set_tag(RUN_NAME_TAG, f"{step} {what}".strip())


def mark_orphaned_runs(experiment_id: str, step: str, current_run_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs of `step` that nobody will ever end; returns their ids."""
    client = MlflowClient()
    running = client.search_runs(
        [experiment_id],
        filter_string=f"tags.step = '{step}' and attributes.status = 'RUNNING'",
        max_results=1000,
    )
    marked = []
    for run in running:
        if run.info.run_id == current_run_id:
            continue
        reason = _orphan_reason(run)
        if reason is None:
            continue
        client.set_tag(
            run.info.run_id, KILLED_REASON_TAG, f"{reason}; marked by run {current_run_id}"
        )
        client.set_terminated(run.info.run_id, status=RunStatus.to_string(RunStatus.KILLED))
        log.warning("marked %s run %s KILLED: %s", step, run.info.run_id, reason)
        marked.append(run.info.run_id)
    return marked


def run_status(run_id: str) -> str | None:
    """RUNNING, FINISHED, FAILED, KILLED, ...; None when the store has no such run."""
    try:
        return MlflowClient().get_run(run_id).info.status
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def run_is_over(run_id: str, last_written: float) -> bool:
    """Whether the run that left a file behind has ended: the store says it is not RUNNING or,
    for a run this store does not know, the file is older than any job can run."""
    status = run_status(run_id)
    if status is None:
        return time.time() - last_written > STALE_AFTER_SECONDS
    return status != "RUNNING"


def _orphan_reason(run) -> str | None:
    tags = run.data.tags
    age = time.time() - run.info.start_time / 1000
    if age > STALE_AFTER_SECONDS:
        return f"RUNNING for {age / 3600:.1f} h, longer than any job timeout"
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return None  # another machine's process: only its age tells
    pid = int(tags[PID_TAG])
    started = process_start(pid)
    if started is None:
        return f"its process {pid} on {tags[HOST_TAG]} is gone"
    if tags.get(PROCESS_START_TAG) and started != tags[PROCESS_START_TAG]:
        return f"its process {pid} on {tags[HOST_TAG]} is gone (the pid now runs another process)"
    return None


def _process_tags() -> dict[str, str]:
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(os.getpid()),
        PROCESS_START_TAG: process_start(os.getpid()) or "",
    }


def process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, from /proc), "" where /proc is not
    available, None when there is no such live process (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc (macOS): only whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ""
    state, start_ticks = fields[0], fields[19]
    return None if state in ("Z", "X") else start_ticks


@contextmanager
def store_errors() -> Iterator[None]:
    """A store that refuses writes (read-only database or folder) becomes one TrackingStoreError
    line naming the store and the root cause, which MLflow otherwise buries in a traceback (and
    logs as one more: quiet meanwhile; any other error keeps its own traceback)."""
    quiet = logging.getLogger("mlflow.store.db.utils")  # logs the SQL error's whole traceback
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        yield
    except (MlflowException, OSError, sqlite3.Error) as exc:
        cause = _root_cause(exc)
        if not _is_read_only(cause):
            raise
        raise TrackingStoreError(
            f"MLflow store {redacted(mlflow.get_tracking_uri())}: {first_line(cause)}"
        ) from exc
    finally:
        quiet.setLevel(level)


def _artifact_folder(uri: str) -> str | None:
    """A run's artifact location as a folder on this machine; None for a remote store."""
    return None if is_remote(uri) else driver_path(uri)


def _root_cause(exc: BaseException) -> BaseException:
    seen = {id(exc)}
    while (nxt := exc.__cause__ or exc.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        exc = nxt
    return exc


def _is_read_only(cause: BaseException) -> bool:
    if isinstance(cause, sqlite3.OperationalError):
        return "readonly" in str(cause) or "read-only" in str(cause)
    return isinstance(cause, OSError) and cause.errno in (errno.EROFS, errno.EACCES, errno.EPERM)


def redacted(uri: str) -> str:
    """The store's URI without a password (postgresql://user:secret@host/db)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
