"""Deploying to, and running jobs in, a fake workspace that the real databricks-sdk talks to."""

import json
import logging
import shutil

import pytest
from fake_workspace import RunPlan

from diabetes_mlops.cli import main
from diabetes_mlops.deploy import wheels
from diabetes_mlops.deploy.deployer import Deployer
from diabetes_mlops.deploy.jobs import DeployError, run_as
from diabetes_mlops.deploy.workspace import AuthError, connect
from diabetes_mlops.jobs.targets import ConfigError, load_target

JOBS = ("diabetes-batch-scoring", "diabetes-model-training")
TASK_LEVEL = ("seed", "rmse_tolerance")


def deploy(project, *extra, target="staging"):
    return main(["deploy", "--target", target, "--repo", str(project),
                 "--config", str(project / "deploy.yml"), *extra])  # fmt: skip


def state(fake):
    """What a deploy leaves behind: files, notebooks, jobs by name (ids aside)."""
    jobs = {j["settings"]["name"]: j["settings"] for j in fake.jobs.values()}
    notebooks = {p: o["content"] for p, o in fake.objects.items() if "content" in o}
    return dict(fake.files), notebooks, jobs, dict(fake.experiments)


def test_first_deploy_creates_everything(fake_workspace, project, capsys):
    assert deploy(project) == 0
    out = capsys.readouterr().out
    fake = fake_workspace
    wheels = sorted(fake.files)
    assert len(wheels) == 2 and all(
        w.startswith("/Volumes/main/diabetes/wheels/staging/") for w in wheels
    )
    assert all("+" in w and w.endswith("-py3-none-any.whl") for w in wheels)
    notebooks = [p for p, o in fake.objects.items() if o["object_type"] == "NOTEBOOK"]
    assert len(notebooks) == 7
    assert all(
        p.startswith("/Workspace/Shared/diabetes-mlops/staging/notebooks/") for p in notebooks
    )
    jobs = {j["settings"]["name"]: j["settings"] for j in fake.jobs.values()}
    assert sorted(jobs) == list(JOBS)
    training = jobs["diabetes-model-training"]
    assert "${" not in json.dumps(training)  # every placeholder resolved
    task = training["tasks"][0]
    assert task["existing_cluster_id"] == "0101-000000-abcdefgh"
    assert sorted(lib["whl"] for lib in task["libraries"]) == wheels
    assert task["notebook_task"]["notebook_path"].endswith("/notebooks/diabetes_orchestrator_train")
    defaults = {p["name"]: p["default"] for p in training["parameters"]}
    assert defaults["model_name"] == "main.diabetes_staging.diabetes"
    assert defaults["registry"] == "unity_catalog"
    assert defaults["data_path"] == "/Volumes/main/diabetes_staging/data/data_raw.csv"
    assert training["schedule"]["pause_status"] == "UNPAUSED"
    assert training["email_notifications"]["on_failure"] == ["ml-team@example.com"]
    assert "/Shared/diabetes-mlops/staging/diabetes" in fake.experiments
    for name in JOBS:
        assert f"job '{name}' created: {fake.url}/jobs/" in out


def test_second_deploy_uploads_nothing_and_resets_no_job(fake_workspace, project, capsys):
    assert deploy(project) == 0
    before = state(fake_workspace)
    fake_workspace.requests.clear()  # the first deploy's (its creates unpause with a reset)
    capsys.readouterr()
    assert deploy(project) == 0
    out = capsys.readouterr().out
    assert fake_workspace.uploaded_bytes() == 0
    assert "uploaded 0 file(s), 0 bytes" in out
    assert fake_workspace.calls("POST", "/jobs/reset") == []  # the server's defaults aside
    assert not fake_workspace.calls("POST", "/jobs/create")
    assert all(f"job '{name}' unchanged" in out for name in JOBS)
    assert state(fake_workspace) == before


def test_a_changed_source_gets_a_new_wheel_name_and_the_jobs_point_at_it(fake_workspace, project):
    assert deploy(project) == 0
    old = set(fake_workspace.files)
    step = project / "ml_ops" / "src" / "diabetes_mlops" / "steps" / "promote.py"
    step.write_text(step.read_text() + "\n# a change\n")
    assert deploy(project) == 0
    new = set(fake_workspace.files) - old
    assert len(new) == 1 and "diabetes_mlops-0.1.0+" in new.pop()
    for job in fake_workspace.jobs.values():
        wheels = {lib["whl"] for t in job["settings"]["tasks"] for lib in t.get("libraries", [])}
        assert wheels & (set(fake_workspace.files) - old)
        assert not any("diabetes_mlops" in w for w in wheels & old)


def test_a_hash_of_digits_with_a_leading_zero_keeps_its_wheel_name(project, monkeypatch, tmp_path):
    """PEP 440 strips leading zeros from an all-digit local version: the h keeps it a name."""
    monkeypatch.setattr(wheels, "source_digest", lambda project, package: "0899811028")
    built = wheels.build_wheels(project, tmp_path)
    assert {w.name for w in built} == {
        "diabetes-0.1.0+h0899811028-py3-none-any.whl",
        "diabetes_mlops-0.1.0+h0899811028-py3-none-any.whl",
    }
    assert all(w.path.exists() for w in built)


def test_an_edited_notebook_is_imported_again(fake_workspace, project):
    assert deploy(project) == 0
    notebook = project / "orchestrator_notebooks" / "diabetes_orchestrator_promote.py"
    notebook.write_text(notebook.read_text() + "# promote only validated versions\n")
    imports = len(fake_workspace.calls("POST", "/workspace/import"))
    assert deploy(project) == 0
    assert len(fake_workspace.calls("POST", "/workspace/import")) == imports + 1


def test_a_job_of_our_name_we_did_not_make_is_refused_and_nothing_changes(
    fake_workspace, project, capsys
):
    first = fake_workspace.add_job({"name": "diabetes-model-training", "tasks": []})
    other = fake_workspace.add_job({"name": "someone-elses-job", "tasks": []})
    before = json.dumps(fake_workspace.jobs, sort_keys=True)
    assert deploy(project) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"job 'diabetes-model-training' (id {first}) was not made by diabetes-mlops" in err
    assert "give target 'staging' another job_name_prefix" in err
    assert json.dumps(fake_workspace.jobs, sort_keys=True) == before
    assert fake_workspace.files == {} and not fake_workspace.calls("POST", "/workspace/import")
    assert other in fake_workspace.jobs


def test_jobs_this_project_does_not_define_are_never_touched(fake_workspace, project):
    other = fake_workspace.add_job({"name": "someone-elses-job", "tasks": []})
    assert deploy(project) == 0
    assert fake_workspace.jobs[other]["settings"] == {"name": "someone-elses-job", "tasks": []}
    touched = [json.loads(r.body).get("job_id") for r in fake_workspace.calls("POST", "/jobs/")]
    assert other not in touched


@pytest.mark.parametrize("clusters, message", [
    ([], "no cluster named 'diabetes-mlops'"),
    ([{"cluster_id": "a", "cluster_name": "diabetes-mlops"},
      {"cluster_id": "b", "cluster_name": "diabetes-mlops"}],
     "2 clusters are named 'diabetes-mlops' (ids a, b)"),
])  # fmt: skip
def test_missing_or_ambiguous_cluster(fake_workspace, project, capsys, clusters, message):
    fake_workspace.clusters = clusters
    assert deploy(project) == 1
    assert message in capsys.readouterr().err
    assert fake_workspace.jobs == {} and fake_workspace.files == {}


def test_transient_errors_are_retried(fake_workspace, project):
    fake_workspace.fail("PUT", "/api/2.0/fs/files", status=429, times=2)
    fake_workspace.fail("POST", "/workspace/import", status=503, times=1)
    fake_workspace.fail("POST", "/jobs/create", status=503, times=1)
    fake_workspace.fail("GET", "/jobs/list", status=429, times=1)
    assert deploy(project) == 0
    assert len(fake_workspace.files) == 2 and len(fake_workspace.jobs) == 2


def test_a_failure_half_way_converges_on_the_next_deploy(fake_workspace, project, tmp_path):
    from fake_workspace import FakeWorkspace

    fake_workspace.fail("POST", "/jobs/create", status=400, times=1, error_code="INVALID_STATE")
    fake_workspace.fail("PUT", "/api/2.0/fs/files", status=400, times=1, error_code="INVALID_STATE")
    assert deploy(project) == 1  # the first wheel upload fails: notebooks, jobs never reached
    assert deploy(project) == 1  # now a job creation fails, after the uploads
    assert deploy(project) == 0
    clean = FakeWorkspace().start()
    try:
        clean_state = _deploy_to(clean, project)
    finally:
        clean.stop()
    assert state(fake_workspace) == clean_state


def _deploy_to(fake, project):
    target = load_target("staging", project / "deploy.yml")
    from databricks.sdk import WorkspaceClient

    w = WorkspaceClient(host=fake.url, token=fake.token, auth_type="pat")
    Deployer(w, target, project, report=lambda line: None).deploy()
    return state(fake)


def test_deploy_plan_changes_nothing(fake_workspace, project, capsys):
    assert deploy(project, "--plan") == 0
    out = capsys.readouterr().out
    assert "job 'diabetes-model-training': create" in out
    assert "upload" in out and '"existing_cluster_id": "0101-000000-abcdefgh"' in out
    writes = [r for r in fake_workspace.requests if r.method in ("POST", "PUT", "DELETE")]
    assert writes == [] and fake_workspace.jobs == {}


def test_dev_prefixes_job_names_pauses_schedules_and_uses_the_users_folder(fake_workspace, project):
    assert deploy(project, target="dev") == 0
    names = sorted(j["settings"]["name"] for j in fake_workspace.jobs.values())
    assert names == [f"[dev alice@example.com] {n}" for n in JOBS]
    for job in fake_workspace.jobs.values():
        assert job["settings"]["schedule"]["pause_status"] == "PAUSED"
        parameters = job["settings"]["parameters"]
        paths = [p["default"] for p in parameters if p["name"].endswith("path") and p["default"]]
        assert paths  # data_path; input_path and output_path (quarantine_path: "" = derived)
        assert all(
            p.startswith("/Volumes/main/diabetes_dev/data/alice@example.com/") for p in paths
        )
        path = job["settings"]["tasks"][0]["notebook_task"]["notebook_path"]
        assert path.startswith("/Workspace/Users/alice@example.com/diabetes-mlops/notebooks/")
    fake_workspace.user = "bob@example.com"
    assert deploy(project, target="dev") == 0
    assert len(fake_workspace.jobs) == 4  # Bob's copies beside Alice's


def test_wheels_can_go_to_workspace_files(fake_workspace, project):
    config = project / "deploy.yml"
    config.write_text(config.read_text().replace(
        "wheel_dir: /Volumes/main/diabetes/wheels/{target}",
        "wheel_dir: /Workspace/Shared/diabetes-mlops/{target}/wheels"))  # fmt: skip
    assert deploy(project) == 0
    wheels = [p for p in fake_workspace.objects if p.endswith(".whl")]
    assert len(wheels) == 2 and fake_workspace.files == {}
    imports = len(fake_workspace.calls("POST", "/workspace/import"))
    assert deploy(project) == 0
    assert len(fake_workspace.calls("POST", "/workspace/import")) == imports


def test_databricks_init_is_idempotent(fake_workspace, project, capsys):
    args = ["databricks-init", "--target", "staging", "--config", str(project / "deploy.yml")]
    assert main(args) == 0
    assert "secret scope diabetes-mlops: created" in capsys.readouterr().out
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "secret scope diabetes-mlops: exists" in out and "experiment" in out
    assert fake_workspace.scopes == {"diabetes-mlops"}
    assert "/Volumes/main/diabetes/wheels/staging" in fake_workspace.directories


def run(*args):
    return main(["run", "--target", "staging", "--poll-seconds", "0", *args])


def test_run_follows_a_job_to_success(fake_workspace, project, capsys):
    assert deploy(project) == 0
    capsys.readouterr()
    assert run("diabetes-model-training", "--param", "model_name=main.x.y") == 0
    out = capsys.readouterr().out
    assert "RUNNING task train" in out and "SUCCESS" in out and "/run/" in out
    run_now = json.loads(fake_workspace.calls("POST", "/jobs/run-now")[0].body)
    assert run_now["job_parameters"] == {"model_name": "main.x.y"}


def test_a_failed_run_exits_non_zero_with_the_task_error(fake_workspace, project, capsys):
    assert deploy(project) == 0
    fake_workspace.run_plans["diabetes-model-training"] = RunPlan(
        "FAILED", {"train": "DataValidationError: raw.csv: column 'BMI': missing"}
    )
    capsys.readouterr()
    assert run("diabetes-model-training") == 1
    out = capsys.readouterr().out
    assert "task train FAILED: DataValidationError: raw.csv: column 'BMI': missing" in out


def test_run_no_wait_and_mistakes(fake_workspace, project, capsys):
    assert run("diabetes-model-training") == 1
    assert "no job named 'diabetes-model-training'" in capsys.readouterr().err
    assert deploy(project) == 0
    assert run("diabetes-batch-scoring", "--no-wait") == 0
    assert len(fake_workspace.calls("GET", "/jobs/runs/get")) == 1
    assert run("diabetes-batch-scoring", "--param", "colour=red") == 1
    assert "has no job parameter(s) colour" in capsys.readouterr().err


def test_the_token_never_appears_in_requests_or_output(fake_workspace, project, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    fake_workspace.run_plans["diabetes-batch-scoring"] = RunPlan("FAILED", {"batch_score": "x"})
    assert deploy(project) == 0 and deploy(project, "--plan") == 0
    run("diabetes-batch-scoring")
    out, err = capsys.readouterr()
    token = fake_workspace.token
    assert all(token not in r.text() for r in fake_workspace.requests)
    assert token not in out + err + caplog.text
    assert all(r.headers.get("Authorization") == f"Bearer {token}" for r in fake_workspace.requests
               if r.path != "/.well-known/databricks-config")  # fmt: skip


def test_missing_credentials_give_one_line_on_how_to_configure(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.databrickscfg
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "none.cfg"))
    with pytest.raises(AuthError, match="DATABRICKS_HOST and DATABRICKS_TOKEN"):
        connect(load_target("staging"))
    assert main(["deploy", "--target", "prod"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "databricks configure --profile PROD" in err


def test_unknown_target_and_bad_config(tmp_path, capsys):
    assert main(["deploy", "--target", "qa"]) == 2
    assert "unknown target 'qa' (targets: local, dev, staging, prod)" in capsys.readouterr().err
    bad = tmp_path / "deploy.yml"
    bad.write_text("targets: {staging: {colour: red}}")
    with pytest.raises(ConfigError, match="unknown field\\(s\\) colour"):
        load_target("staging", bad)
    bad.write_text("targets: [")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_target("staging", bad)


def test_invalid_specs_are_refused_before_anything_changes(fake_workspace, project, capsys):
    spec = project / "job_specs" / "diabetes_batch_scoring.json"
    spec.write_text(spec.read_text().replace('"max_concurrent_runs"', '"max_concurent_runs"'))
    assert deploy(project) == 2
    assert "unknown field 'max_concurent_runs'" in capsys.readouterr().err
    assert [r for r in fake_workspace.requests if r.method != "GET"] == []


def test_an_unresolved_placeholder_is_named(fake_workspace, project):
    from diabetes_mlops.deploy.jobs import fill_placeholders

    with pytest.raises(DeployError, match=r"spec.json: unresolved placeholder \$\{cluster_id\}"):
        fill_placeholders({"a": ["${cluster_id}"]}, {}, "spec.json")


@pytest.mark.slow
def test_make_integration_test_deploys_and_runs_both_jobs(fake_workspace, repo, tmp_path):
    """The Makefile wiring CI uses: deploy, then both runs, failing when a run fails."""
    import os
    import subprocess

    dist = tmp_path / "dist"  # the wheels go here: a test never writes into the checkout
    command = ["make", "--no-print-directory", "integration-test", "TARGET=staging",
               "RUN_FLAGS=--poll-seconds 0", f"DIST={dist}"]  # fmt: skip
    done = subprocess.run(command, cwd=repo, env=os.environ.copy(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == 2 and len(fake_workspace.jobs) == 2
    assert len(list(dist.glob("*.whl"))) == 2
    fake_workspace.run_plans["diabetes-batch-scoring"] = RunPlan("FAILED", {"batch_score": "boom"})
    done = subprocess.run(command, cwd=repo, env=os.environ.copy(), capture_output=True, text=True)
    assert done.returncode != 0 and "task batch_score FAILED: boom" in done.stdout


def test_the_local_target_is_never_deployed(fake_workspace, project, capsys):
    assert deploy(project, target="local") == 2
    assert "target 'local' holds the local runner's parameters" in capsys.readouterr().err
    assert fake_workspace.requests == []


def test_a_workspace_that_keeps_failing_ends_in_one_line(fake_workspace, project, capsys):
    config = project / "deploy.yml"
    text = config.read_text().replace("retry_timeout_seconds: 300", "retry_timeout_seconds: 2")
    config.write_text(text)
    fake_workspace.fail("GET", "/clusters/list", status=503, times=10**6)
    assert deploy(project, "--plan") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did not answer in time" in err


def test_a_notebook_reformatted_by_the_workspace_is_not_imported_again(fake_workspace, project):
    assert deploy(project) == 0
    for item in fake_workspace.objects.values():
        if item.get("object_type") == "NOTEBOOK":
            item["content"] = item["content"].rstrip(b"\n").replace(b"\n", b"\r\n")
    imports = len(fake_workspace.calls("POST", "/workspace/import"))
    assert deploy(project) == 0
    assert len(fake_workspace.calls("POST", "/workspace/import")) == imports


def test_target_parameters_reach_the_tasks_that_declare_them(repo, tmp_path):
    from diabetes_mlops.deploy.jobs import resolve_settings
    from diabetes_mlops.jobs.specs import check_spec
    from diabetes_mlops.jobs.targets import Target

    # A copy of the training spec where seed and rmse_tolerance are task parameters again.
    spec = json.loads((repo / "job_specs" / "diabetes_model_training.json").read_text())
    spec["parameters"] = [p for p in spec["parameters"] if p["name"] not in TASK_LEVEL]
    spec["tasks"][0]["notebook_task"]["base_parameters"] = {"seed": "42"}
    spec["tasks"][1]["notebook_task"]["base_parameters"]["rmse_tolerance"] = "0.0"
    (tmp_path / "diabetes_model_training.json").write_text(json.dumps(spec))
    shutil.copy(repo / "job_specs" / "diabetes_batch_scoring.json", tmp_path)
    overrides = {"model_name": "m", "seed": "7", "rmse_tolerance": "0.05", "input_path": "/x"}
    target = Target("t", "/r", "/w", "c", "s", "a@example.com", parameters=overrides)
    values = {
        name: "v"
        for name in ("cluster_id", "notebooks_dir", "wheel.diabetes", "wheel.diabetes_mlops")
    } | {"alert_email": target.alert_email}

    def resolved(spec: str) -> tuple[dict, dict]:
        settings = resolve_settings(
            check_spec(tmp_path / spec, repo / "orchestrator_notebooks"), target, values
        )
        defaults = {p["name"]: p["default"] for p in settings["parameters"]}
        tasks = {
            t["task_key"]: t["notebook_task"]["base_parameters"]
            for t in settings["tasks"]
            if "notebook_task" in t  # condition and run_job tasks take no notebook parameters
        }
        return defaults, tasks

    defaults, tasks = resolved("diabetes_model_training.json")
    assert defaults["model_name"] == "m"  # a job parameter: its default, not a task's copy
    assert "model_name" not in {k for base in tasks.values() for k in base}
    assert tasks["train"]["seed"] == "7" and "seed" not in tasks["validate"]
    assert (
        tasks["validate"]["rmse_tolerance"] == "0.05" and "rmse_tolerance" not in tasks["promote"]
    )
    assert "input_path" not in {k for base in tasks.values() for k in base}
    defaults, tasks = resolved("diabetes_batch_scoring.json")
    assert defaults["input_path"] == "/x" and tasks["batch_score"] == {}
    assert "seed" not in defaults


def changes(fake):
    return [r for r in fake.requests if r.method in ("POST", "PUT", "PATCH", "DELETE")]


@pytest.mark.parametrize("extra", [(), ("--plan",)])
def test_a_bad_parameter_value_of_the_target_fails_before_any_change(
    fake_workspace, project, capsys, extra
):
    config = project / "deploy.yml"
    config.write_text(config.read_text().replace(
        "      model_name: main.diabetes_staging.diabetes\n",
        "      model_name: main.diabetes_staging.diabetes\n      seed: '-1'\n"))  # fmt: skip
    assert deploy(project, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: target 'staging': job 'diabetes-model-training' task 'train': parameter 'seed':"
        " must be between 0 and 4294967295, got '-1'"
    )
    assert changes(fake_workspace) == [] and fake_workspace.jobs == {}


def test_targets_sharing_data_are_not_deployed(fake_workspace, project, capsys):
    config = project / "deploy.yml"
    config.write_text(config.read_text().replace(
        "data_dir: /Volumes/main/diabetes_staging/data", "data_dir: /Volumes/main/diabetes/data"
    ))  # fmt: skip
    assert deploy(project) == 2
    err = capsys.readouterr().err
    assert "targets 'staging' and 'prod' both use /Volumes/main/diabetes/data/data_raw.csv" in err
    assert fake_workspace.requests == []  # refused before connecting


def test_run_checks_its_parameters_before_starting_the_job(fake_workspace, project, capsys):
    assert deploy(project) == 0
    capsys.readouterr()
    args = ["--repo", str(project), "--config", str(project / "deploy.yml")]
    assert run("diabetes-model-training", *args, "--param", "rmse_tolerance=-5") == 2
    assert capsys.readouterr().err.strip() == (
        "error: job 'diabetes-model-training' task 'validate': parameter 'rmse_tolerance':"
        " must be >= 0, got '-5'"
    )
    assert fake_workspace.calls("POST", "/jobs/run-now") == []


def test_jobs_run_as_the_deploying_identity_and_one_set_by_hand_is_named_and_put_back(
    fake_workspace, project, capsys
):
    user = fake_workspace.user
    assert deploy(project) == 0
    assert {str(j["settings"]["run_as"]) for j in fake_workspace.jobs.values()} == {
        str({"user_name": user})
    }
    job = next(iter(fake_workspace.jobs.values()))
    name = job["settings"]["name"]
    job["settings"]["run_as"] = {"user_name": "bob@example.com"}  # changed in the UI
    capsys.readouterr()
    assert deploy(project, "--plan") == 0
    said = f"runs as bob@example.com, set by hand; deploy.yml: {user}"
    assert f"job '{name}': reset ({said})" in capsys.readouterr().out
    assert deploy(project) == 0
    assert f"({said}: put back)" in capsys.readouterr().out
    assert job["settings"]["run_as"] == {"user_name": user}
    assert deploy(project, "--plan") == 0
    assert f"job '{name}': unchanged (no reset)" in capsys.readouterr().out


def test_run_as_names_a_user_or_a_service_principal():
    assert run_as("alice@example.com") == {"user_name": "alice@example.com"}
    application_id = "6f0e5a4c-2b1d-4e3f-9a8b-7c6d5e4f3a2b"
    assert run_as(application_id) == {"service_principal_name": application_id}


def test_the_fake_keeps_run_as_across_a_reset_that_omits_it(fake_workspace):
    """As the Jobs API does: the reason deploy sends run_as on every reset."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.jobs import JobRunAs, JobSettings

    w = WorkspaceClient()
    job = w.jobs.create(name="by-hand", run_as=JobRunAs(user_name="bob@example.com"))
    w.jobs.reset(job.job_id, new_settings=JobSettings(name="by-hand", max_concurrent_runs=2))
    settings = w.jobs.get(job.job_id).settings
    assert settings.run_as.user_name == "bob@example.com" and settings.max_concurrent_runs == 2
