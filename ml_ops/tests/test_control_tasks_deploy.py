"""Deploying jobs that run jobs (run_job tasks) to the fake workspace with the real SDK, and
following their runs: the job a run_job task names is created first, its id filled in.

The project copy gets a spec of its own, diabetes-drift-watch (monitor -> drift_check ->
retrain, which runs the training job), beside the shipped ones.
"""

import json

import pytest
from fake_workspace import RunPlan

from diabetes_mlops.cli import main
from diabetes_mlops.deploy.jobs import DeployError, for_serving_trigger
from diabetes_mlops.jobs.specs import check_spec

WATCH = "diabetes-drift-watch"
TRAINING = "diabetes-model-training"
DRIFT_CHECK = {
    "task_key": "drift_check",
    "depends_on": [{"task_key": "monitor"}],
    "condition_task": {
        "op": "EQUAL_TO",
        "left": "{{tasks.monitor.values.retrain}}",
        "right": "true",
    },
}
PENDING = f"<id of job '{TRAINING}', created by this deploy>"


def watch_spec(job_id=f"${{job_id.{TRAINING}}}", job_parameters=None):
    return {
        "name": WATCH,
        "max_concurrent_runs": 1,
        "tasks": [
            {
                "task_key": "monitor",
                "existing_cluster_id": "${cluster_id}",
                "notebook_task": {"notebook_path": "${notebooks_dir}/drift_probe"},
                "libraries": [{"whl": "${wheel.diabetes}"}, {"whl": "${wheel.diabetes_mlops}"}],
            },
            DRIFT_CHECK,
            {
                "task_key": "retrain",
                "depends_on": [{"task_key": "drift_check", "outcome": "true"}],
                "run_job_task": {
                    "job_id": job_id,
                    "job_parameters": {"seed": "7"} if job_parameters is None else job_parameters,
                },
            },
        ],
    }


@pytest.fixture
def watched(project):
    """The project copy with the drift-watch spec and its notebook."""
    (project / "orchestrator_notebooks" / "drift_probe.py").write_text(
        "# Databricks notebook source\ndbutils.jobs.taskValues.set('retrain', True)\n"
    )
    write_watch(project, watch_spec())
    return project


def write_watch(project, spec):
    (project / "job_specs" / "diabetes_drift_watch.json").write_text(json.dumps(spec, indent=2))


def deploy(project, *extra, target="staging"):
    return main(["deploy", "--target", target, "--repo", str(project),
                 "--config", str(project / "deploy.yml"), *extra])  # fmt: skip


def jobs_by_name(fake):
    return {job["settings"]["name"]: job for job in fake.jobs.values()}


def task(settings, key):
    return next(t for t in settings["tasks"] if t["task_key"] == key)


def changes(fake):
    return [r for r in fake.requests if r.method in ("POST", "PUT", "PATCH", "DELETE")]


def test_first_deploy_creates_the_referenced_job_first_and_fills_its_id(fake_workspace, watched):
    assert deploy(watched, target="dev") == 0
    prefix = "[dev alice@example.com] "  # each target runs its own copy of the training job
    created = [json.loads(r.body)["name"] for r in fake_workspace.calls("POST", "/jobs/create")]
    assert created.index(prefix + TRAINING) < created.index(prefix + WATCH)
    jobs = jobs_by_name(fake_workspace)
    watch = jobs[prefix + WATCH]["settings"]
    assert task(watch, "retrain")["run_job_task"] == {
        "job_id": jobs[prefix + TRAINING]["job_id"],  # an int, as the Jobs API takes it
        "job_parameters": {"seed": "7"},
    }
    assert task(watch, "drift_check") == DRIFT_CHECK  # no cluster, no libraries added
    assert "${" not in json.dumps(watch)


def test_a_redeploy_with_nothing_changed_is_unchanged(fake_workspace, watched, capsys):
    assert deploy(watched) == 0
    before = {name: job["settings"] for name, job in jobs_by_name(fake_workspace).items()}
    assert len(fake_workspace.calls("POST", "/jobs/create")) == 3
    fake_workspace.requests.clear()
    capsys.readouterr()
    assert deploy(watched) == 0
    out = capsys.readouterr().out
    assert f"job '{WATCH}' unchanged" in out and f"job '{TRAINING}' unchanged" in out
    assert len(fake_workspace.calls("POST", "/jobs/create")) == 0  # none on the redeploy
    assert len(fake_workspace.calls("POST", "/jobs/reset")) == 0  # unchanged: no reset
    after = {name: job["settings"] for name, job in jobs_by_name(fake_workspace).items()}
    assert after == before


def test_the_plan_shows_the_reference(fake_workspace, watched, capsys):
    assert deploy(watched, "--plan") == 0
    out = capsys.readouterr().out
    assert f'"job_id": "{PENDING}"' in out
    assert out.index(f"job '{TRAINING}': create") < out.index(f"job '{WATCH}': create")
    assert changes(fake_workspace) == [] and fake_workspace.jobs == {}
    assert deploy(watched) == 0
    training_id = jobs_by_name(fake_workspace)[TRAINING]["job_id"]
    capsys.readouterr()
    assert deploy(watched, "--plan") == 0
    out = capsys.readouterr().out
    assert f'"job_id": {training_id},' in out and PENDING not in out
    assert f"job '{WATCH}': unchanged (no reset)" in out


def test_a_referenced_job_deleted_by_hand_is_created_again_and_the_reference_follows(
    fake_workspace, watched, capsys
):
    assert deploy(watched) == 0
    old = jobs_by_name(fake_workspace)[TRAINING]["job_id"]
    del fake_workspace.jobs[old]
    capsys.readouterr()
    assert deploy(watched, "--plan") == 0
    out = capsys.readouterr().out
    assert f"job '{WATCH}': reset\n" in out and PENDING in out  # the id it holds goes stale
    assert deploy(watched) == 0
    jobs = jobs_by_name(fake_workspace)
    new = jobs[TRAINING]["job_id"]
    assert new != old
    assert task(jobs[WATCH]["settings"], "retrain")["run_job_task"]["job_id"] == new


def test_a_reference_to_no_spec_is_a_validation_error(fake_workspace, watched, capsys):
    write_watch(watched, watch_spec(job_id="${job_id.diabetes-model-trainin}"))
    assert deploy(watched) == 2
    err = capsys.readouterr().err
    assert (
        "diabetes_drift_watch.json: task 'retrain': ${job_id.diabetes-model-trainin} names no spec"
        in err
    )
    assert changes(fake_workspace) == [] and fake_workspace.jobs == {}


def test_a_reference_to_a_job_the_target_does_not_deploy_changes_nothing(
    fake_workspace, watched, capsys
):
    write_watch(watched, watch_spec("${job_id.diabetes-model-deployment}", job_parameters={}))
    assert deploy(watched) == 1  # staging: serving_trigger task, no deployment job
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: diabetes_drift_watch.json: job '{WATCH}' runs job(s) diabetes-model-deployment,"
        " which target 'staging' does not deploy (serving_trigger: task)"
    )
    assert changes(fake_workspace) == [] and fake_workspace.jobs == {}


def test_serving_trigger_model_keeps_control_tasks_and_refuses_one_on_deploy_serving(project):
    """The training job loses deploy_serving under serving_trigger: model; a condition task on
    promote stays, one that depends on deploy_serving is refused."""
    path = project / "job_specs" / "diabetes_model_training.json"
    spec = json.loads(path.read_text())
    spec["tasks"].append(
        {"task_key": "promoted", "depends_on": [{"task_key": "promote"}],
         "condition_task": {"op": "EQUAL_TO", "right": "true",
                            "left": "{{tasks.promote.values.promoted}}"}}
    )  # fmt: skip
    path.write_text(json.dumps(spec))
    notebooks = project / "orchestrator_notebooks"
    (kept,) = for_serving_trigger([check_spec(path, notebooks)], "model")
    assert [t.key for t in kept.control_tasks] == ["promoted"]
    assert "deploy_serving" not in [t["task_key"] for t in kept.settings["tasks"]]
    assert [t.key for t in kept.all_tasks] == [
        "train",
        "validate",
        "approval",
        "promote",
        "promoted",
    ]
    spec["tasks"][-1]["depends_on"] = [{"task_key": "deploy_serving"}]
    path.write_text(json.dumps(spec))
    with pytest.raises(DeployError, match="task\\(s\\) promoted depend on deploy_serving"):
        for_serving_trigger([check_spec(path, notebooks)], "model")


def run(project, *args):
    return main(["run", "--target", "staging", "--poll-seconds", "0", "--repo", str(project),
                 "--config", str(project / "deploy.yml"), *args])  # fmt: skip


def test_a_remote_run_with_an_excluded_task_succeeds(fake_workspace, watched, capsys):
    assert deploy(watched) == 0
    fake_workspace.run_plans[WATCH] = RunPlan(task_results={"retrain": "EXCLUDED"})
    capsys.readouterr()
    assert run(watched, WATCH) == 0
    out = capsys.readouterr().out
    assert "SUCCESS" in out and "excluded (a condition did not hold): retrain" in out


def test_a_failed_run_job_task_is_reported_even_without_output_of_its_own(
    fake_workspace, watched, capsys
):
    assert deploy(watched) == 0
    fake_workspace.run_plans[WATCH] = RunPlan("FAILED", task_results={"retrain": "FAILED"})
    fake_workspace.fail("GET", "/jobs/runs/get-output", status=400, times=1,
                        error_code="INVALID_PARAMETER_VALUE")  # fmt: skip
    capsys.readouterr()
    assert run(watched, WATCH) == 1
    out = capsys.readouterr().out
    task_lines = [line for line in out.splitlines() if line.startswith("task ")]
    assert task_lines == [
        "task monitor SUCCESS",
        "task drift_check SUCCESS",
        "task retrain FAILED: -",
    ]
