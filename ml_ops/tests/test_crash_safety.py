"""A real writer process SIGKILLed at each point of its write: the output is still one complete
output, old or new, and the next run removes the leftovers, marks the orphaned run KILLED and
succeeds."""

import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from diabetes_mlops.data.output import MANIFEST, read_manifest
from diabetes_mlops.steps import batch_score
from diabetes_mlops.tracking.runs import KILLED_REASON_TAG, PID_TAG, process_start

# Spark jobs through the local runner: make test-all runs them again through Spark Connect.
pytestmark = pytest.mark.spark

WRITER = Path(__file__).with_name("crash_writer.py")
OLD_ROWS, NEW_ROWS, NEXT_ROWS = 100, 442, 300


@pytest.fixture
def model(champion) -> str:
    """The session's champion: these tests only score with it."""
    return champion.name


@pytest.fixture
def inputs(tmp_path, repo):
    """The sample batch and two smaller ones (its first rows): row counts tell outputs apart."""
    full = tmp_path / "input" / "batch.csv"
    full.parent.mkdir()
    full.write_bytes((repo / "ml_data" / "data_batch_input.csv").read_bytes())
    rows = pd.read_csv(full)
    paths = {NEW_ROWS: full}
    for n in (OLD_ROWS, NEXT_ROWS):
        paths[n] = full.with_name(f"first_{n}.csv")
        rows.head(n).to_csv(paths[n], index=False)
    return paths


def complete_rows(folder: Path) -> int:
    """Rows of a complete output: its manifest says how many, and that many are there."""
    manifest = read_manifest(folder)
    assert manifest is not None, f"{folder} has no manifest"
    rows = len(pd.read_parquet(folder))
    assert manifest["rows"] == rows
    assert set(manifest["files"]) | {MANIFEST} == set(os.listdir(folder))
    return rows


def killed_writer(point, source, output, model, experiment, work_dir=None) -> None:
    """Run crash_writer.py, which must die by its own SIGKILL."""
    args = [sys.executable, str(WRITER), point, str(source), str(output), model, experiment]
    child = subprocess.run(
        args + ([str(work_dir)] if work_dir else []), capture_output=True, text=True, timeout=300
    )
    assert child.returncode == -9, child.stdout + child.stderr


def the_orphan(experiment):
    """The killed child's run (the others ran in this process)."""
    runs = mlflow.search_runs(
        experiment_names=[experiment], filter_string="tags.step = 'batch_score'"
    )
    runs = runs[runs[f"tags.{PID_TAG}"] != str(os.getpid())]
    assert len(runs) == 1, runs[["run_id", "status", f"tags.{PID_TAG}"]].to_string()
    return runs.iloc[0]


def next_run_recovers(tmp_path, out, inputs, model, experiment, caplog):
    """The next run marks the orphan KILLED, removes the leftovers and writes its output."""
    orphan = the_orphan(experiment)
    assert orphan["status"] == "RUNNING"
    assert process_start(int(orphan[f"tags.{PID_TAG}"])) is None
    with caplog.at_level(logging.WARNING, logger="diabetes_mlops"):
        batch_score(None, str(inputs[NEXT_ROWS]), str(out), model, experiment, engine="pandas")
    run = MlflowClient().get_run(orphan["run_id"])
    assert run.info.status == "KILLED"
    assert "is gone" in run.data.tags[KILLED_REASON_TAG]
    assert complete_rows(out) == NEXT_ROWS
    assert os.listdir(out.parent) == [out.name]  # no leftovers beside it
    return caplog.text


@pytest.mark.slow  # make test kills one writer (between the renames, below)
@pytest.mark.parametrize(
    "point, rows_after_kill",
    [("writing", OLD_ROWS), ("staged", OLD_ROWS), ("swapped", NEW_ROWS)],
)
def test_killed_while_writing_leaves_one_complete_output(
    point, rows_after_kill, tmp_path, inputs, model, caplog
):
    experiment = f"/Shared/crash-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "out" / "scores"
    batch_score(None, str(inputs[OLD_ROWS]), str(out), model, experiment, engine="pandas")
    killed_writer(point, inputs[NEW_ROWS], out, model, experiment)
    assert complete_rows(out) == rows_after_kill
    assert len(os.listdir(out.parent)) == 2  # the output and the dead run's staging folder
    assert the_orphan(experiment)["status"] == "RUNNING"
    log = next_run_recovers(tmp_path, out, inputs, model, experiment, caplog)
    assert "removed .scores.staging-" in log


def test_killed_between_the_two_renames_the_next_run_completes_the_swap(
    tmp_path, inputs, model, caplog
):
    """Where the filesystem cannot exchange folders, the one moment with no output."""
    experiment = f"/Shared/crash-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "out" / "scores"
    batch_score(None, str(inputs[OLD_ROWS]), str(out), model, experiment, engine="pandas")
    killed_writer("between_renames", inputs[NEW_ROWS], out, model, experiment)
    assert not out.exists()
    run_id = the_orphan(experiment)["run_id"]
    assert complete_rows(out.with_name(f".scores.previous-{run_id}")) == OLD_ROWS
    assert complete_rows(out.with_name(f".scores.staging-{run_id}")) == NEW_ROWS
    log = next_run_recovers(tmp_path, out, inputs, model, experiment, caplog)
    assert f"completed the swap that run {run_id} left half done" in log


@pytest.mark.slow
def test_a_spark_writer_killed_mid_write_leaves_the_previous_output(
    tmp_path, inputs, model, caplog
):
    experiment = f"/Shared/crash-{uuid.uuid4().hex[:8]}"
    out = tmp_path / "out" / "scores"
    batch_score(None, str(inputs[OLD_ROWS]), str(out), model, experiment, engine="pandas")
    work = tmp_path / "spark"
    work.mkdir()
    killed_writer("spark_writing", inputs[NEW_ROWS], out, model, experiment, work)
    jvm = int((work / "jvm.pid").read_text())
    deadline = time.monotonic() + 60
    while process_start(jvm) is not None and time.monotonic() < deadline:
        time.sleep(0.2)  # the JVM leaves when its Python driver is gone
    assert process_start(jvm) is None, "the killed driver's JVM is still running"
    assert complete_rows(out) == OLD_ROWS
    staging = [p for p in out.parent.iterdir() if p.name.startswith(".scores.staging-")]
    assert len(staging) == 1 and not (staging[0] / MANIFEST).exists()
    log = next_run_recovers(tmp_path, out, inputs, model, experiment, caplog)
    assert f"removed {staging[0].name}" in log
