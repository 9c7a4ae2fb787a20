"""`make demo-drift` end to end: the job specs close the loop on this machine."""

from pathlib import Path

import pytest

from diabetes_mlops.local.drift_demo import run_demo
from diabetes_mlops.local.runner import EXCLUDED, SUCCESS

# Spark jobs through the local runner: make test-all runs them again through Spark Connect.
pytestmark = pytest.mark.spark


@pytest.mark.slow
def test_the_drift_demo_retrains_only_when_drift_persists(repo, tmp_path, spark):
    lines: list[str] = []
    outcomes = run_demo(
        repo,
        tmp_path / "local",
        report=lines.append,
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
    )
    sample, first, second = outcomes
    assert (sample.drift, sample.retrain, sample.retrain_job) == (False, False, None)
    assert (first.drift, first.retrain, first.retrain_job) == (True, False, None)
    assert (second.drift, second.retrain) == (True, True)
    assert [t.status for t in (sample.job.task("retrain"), first.job.task("retrain"))] == [
        EXCLUDED,
        EXCLUDED,
    ]
    retrained = second.retrain_job
    assert second.job.task("retrain").status == SUCCESS and retrained.succeeded
    assert [t.key for t in retrained.tasks][:4] == ["train", "validate", "approval", "promote"]
    text = "\n".join(lines)
    assert text.count("DRIFT:") == 2 and text.count("stable:") == 1  # the drift table
    assert "BMI psi=" in text and "S5 psi=" in text
    assert "retraining after the drifted batch 2" in text and "validation passed" in text
    assert "labels arrived: " in text and "version 2 registered" in text  # new rows: a new model
    chart = next(line for line in lines if line.startswith("drift over time"))
    page = chart.split("open file://", 1)[1].split(" in a browser", 1)[0]
    text = Path(page).read_text()
    assert "Drift over time: psi in the last 3 batch(es)" in text  # the three batches
