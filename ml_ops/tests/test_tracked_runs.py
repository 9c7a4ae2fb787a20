"""Step runs: tagged with their process, orphans of dead processes marked KILLED by the next run
of the step, and a read-only store reported as one line."""

import json
import os
import socket
import subprocess
import sys
import time
import uuid

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from diabetes_mlops.cli import main
from diabetes_mlops.runtime.errors import TrackingStoreError
from diabetes_mlops.tracking.runs import (
    ARTIFACT_ROOT_ENV,
    HOST_TAG,
    KILLED_REASON_TAG,
    PID_TAG,
    PROCESS_START_TAG,
    STALE_AFTER_SECONDS,
    process_start,
    run_status,
    tracked_run,
    use_experiment,
)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def running(experiment_id, step, host=None, pid=None, started=None, start_time=None) -> str:
    """A RUNNING run of `step` as a process on `host` would have left it."""
    tags = {"step": step, HOST_TAG: host or socket.gethostname()}
    if pid is not None:
        tags[PID_TAG] = str(pid)
        tags[PROCESS_START_TAG] = started if started is not None else process_start(pid) or ""
    run = MlflowClient().create_run(experiment_id, start_time=start_time, tags=tags)
    return run.info.run_id


def test_the_next_run_of_a_step_marks_its_orphans_killed_and_only_those():
    experiment = use_experiment(f"/Shared/orphans-{uuid.uuid4().hex[:8]}")
    now_ms = int(time.time() * 1000)
    orphans = {
        "dead process": running(experiment, "batch_score", pid=dead_pid()),
        "pid reused": running(experiment, "batch_score", pid=1, started="1"),
        "stale": running(
            experiment,
            "batch_score",
            host="elsewhere",
            start_time=now_ms - (STALE_AFTER_SECONDS + 60) * 1000,
        ),
    }
    alive = {
        "this process": running(experiment, "batch_score", pid=os.getpid()),
        "another host": running(experiment, "batch_score", host="elsewhere", pid=dead_pid()),
        "another step": running(experiment, "train", pid=dead_pid()),
        "no pid": running(experiment, "batch_score"),
    }
    with tracked_run("batch_score") as run:
        tags = MlflowClient().get_run(run.info.run_id).data.tags
        assert tags["step"] == "batch_score" and tags[HOST_TAG] == socket.gethostname()
        assert int(tags[PID_TAG]) > 0 and tags[PROCESS_START_TAG]
        assert {k: run_status(v) for k, v in orphans.items()} == dict.fromkeys(orphans, "KILLED")
    assert {k: run_status(v) for k, v in alive.items()} == dict.fromkeys(alive, "RUNNING")
    reasons = {
        k: MlflowClient().get_run(v).data.tags[KILLED_REASON_TAG] for k, v in orphans.items()
    }
    assert "is gone" in reasons["dead process"] and run.info.run_id in reasons["dead process"]
    assert "the pid now runs another process" in reasons["pid reused"]
    assert "longer than any job timeout" in reasons["stale"]
    assert run_status(run.info.run_id) == "FINISHED" and run_status(uuid.uuid4().hex) is None


def test_stale_limit_exceeds_every_job_and_task_timeout(repo):
    timeouts = []
    for spec in (repo / "job_specs").glob("*.json"):
        settings = json.loads(spec.read_text())
        timeouts += [settings.get("timeout_seconds", 0)]
        timeouts += [task.get("timeout_seconds", 0) for task in settings["tasks"]]
    assert 0 < max(timeouts) < STALE_AFTER_SECONDS


def test_process_start_tells_a_live_process_from_a_gone_one():
    assert process_start(os.getpid())
    assert process_start(dead_pid()) is None


@pytest.fixture
def read_only_store(tmp_path, mlflow_store, monkeypatch):
    """A store with experiment /Shared/diabetes, opened read-only (chmod would not stop root).
    MLflow makes the folders of a `file:` sqlite URI relative to the working directory: here."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "ro.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{path}")
    client.create_experiment("/Shared/diabetes", artifact_location=str(tmp_path / "artifacts"))
    yield f"sqlite:///file:{path}?mode=ro&uri=true"
    mlflow.set_tracking_uri(mlflow_store)


def test_a_read_only_store_is_one_error_naming_the_store_and_the_cause(read_only_store):
    mlflow.set_tracking_uri(read_only_store)
    use_experiment("/Shared/diabetes")  # reading is fine
    with pytest.raises(TrackingStoreError) as info, tracked_run("train"):
        pass
    assert str(info.value) == (
        f"MLflow store {read_only_store}: attempt to write a readonly database"
    )
    with pytest.raises(TrackingStoreError, match="attempt to write a readonly database"):
        use_experiment("/Shared/new experiment")


def test_the_local_runner_prints_a_read_only_store_as_one_line(
    read_only_store, repo, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", read_only_store)
    code = main(
        [
            "run-local",
            str(repo / "job_specs" / "diabetes_batch_scoring.json"),
            "--local-root",
            str(tmp_path / "local"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in out + err
    lines = [line for line in (out + err).splitlines() if "readonly" in line]
    notebook = repo / "orchestrator_notebooks" / "diabetes_orchestrator_batch_score.py"
    assert lines == [
        f"task batch_score ({notebook}): TrackingStoreError:"
        f" MLflow store {read_only_store}: attempt to write a readonly database"
    ], (out + err)


def test_a_password_in_the_store_uri_is_never_shown():
    from diabetes_mlops.tracking.runs import redacted

    assert redacted("postgresql://ml:s3cret@db:5432/mlflow") == "postgresql://ml:***@db:5432/mlflow"
    assert redacted("sqlite:///x.db") == "sqlite:///x.db"


def test_an_artifact_store_that_refuses_writes_is_one_error_naming_it(tmp_path, monkeypatch):
    """Root ignores chmod here: a file where the artifact folder should be refuses every write
    just as a read-only mount does, with the OSError MLflow lets through."""
    (tmp_path / "artifacts").write_text("not a folder")
    monkeypatch.setenv(ARTIFACT_ROOT_ENV, str(tmp_path / "artifacts"))
    use_experiment(f"/Shared/artifacts-refused-{uuid.uuid4().hex[:8]}")
    with pytest.raises(TrackingStoreError) as info, tracked_run("train"):
        mlflow.log_text("x", "notes.txt")
    store = str(tmp_path / "artifacts")
    assert str(info.value).startswith(f"MLflow artifact store {store}/")
    assert f": Not a directory ({store}/" in str(info.value)
    with pytest.raises(OSError, match="elsewhere"), tracked_run("train"):  # not the store's
        raise PermissionError(13, "Permission denied: elsewhere", str(tmp_path / "elsewhere"))


@pytest.mark.slow  # a whole training job
def test_the_local_runner_prints_a_refusing_artifact_store_as_one_line(
    repo, tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the local root's own store, created fresh
    root = tmp_path / "local"
    root.mkdir()
    (root / "mlartifacts").write_text("not a folder")  # where the runner keeps artifacts
    data = root / "Volumes/main/diabetes/data"
    data.mkdir(parents=True)
    (data / "data_raw.csv").write_text((repo / "ml_data" / "data_raw.csv").read_text())
    spec = repo / "job_specs" / "diabetes_model_training.json"
    code = main(["run-local", str(spec), "--local-root", str(root),
                 "--param", "alphas=1", "--param", "cv_folds=2"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in out + err
    [line] = [line for line in err.splitlines() if "artifact store" in line]
    assert line.startswith("task train (") and "TrackingStoreError: MLflow artifact store" in line
    assert f"Not a directory ({root / 'mlartifacts'}/" in line
