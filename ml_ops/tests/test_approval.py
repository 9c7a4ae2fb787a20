"""A person approves what serves a target that requires it: the training job stops at its
approval task, `approve` records who approved which version in which target and repairs the run,
and a rejected version is never promoted. Locally through the local runner; in a workspace
through the fake one (Unity Catalog version tags as MLflow's client sets them, jobs/runs/repair).
"""

import json

import pytest
from fake_workspace import RunPlan
from mlflow.tracking import MlflowClient

from diabetes_mlops.cli import main
from diabetes_mlops.jobs.targets import ConfigError, load_target
from diabetes_mlops.local.runner import LocalRunner
from diabetes_mlops.local.store import tracking_uri
from diabetes_mlops.tracking import approvals

TRAINING = "job_specs/diabetes_model_training.json"


MODEL = "approval_model"


@pytest.fixture
def local_root(local_model_root):
    return local_model_root(MODEL)


def train(repo, root, capsys, *params):
    args = ["run-local", str(repo / TRAINING), "--local-root", str(root), "--config",
            str(root / "deploy.yml"), "--param", "approval=required", *params]  # fmt: skip
    code = main(args)
    return code, capsys.readouterr()


def decide(root, verdict, version, reason="reviewed the holdout rmse", target="local"):
    return main([verdict, target, str(version), "--local", "--local-root", str(root),
                 "--config", str(root / "deploy.yml"), "--reason", reason])  # fmt: skip


def client(root):
    return MlflowClient(tracking_uri(root), tracking_uri(root))


def tags(root, version):
    return client(root).get_model_version(MODEL, str(version)).tags


def champion(root):
    found = client(root).get_registered_model(MODEL).aliases.get("champion")
    return None if found is None else str(found)


def error_lines(said):
    return [line for line in said.err.splitlines() if line.startswith("task ")]


def test_the_run_stops_at_the_approval_and_approve_repairs_it(repo, local_root, capsys):
    code, said = train(repo, local_root, capsys)
    assert code == 1
    (line,) = error_lines(said)
    assert "ApprovalPending: waiting for approval: model approval_model version 1 passed" in line
    assert 'diabetes-mlops approve local 1 --local --reason "..."' in line
    assert "promote skipped" in said.out and champion(local_root) is None
    run_id = tags(local_root, 1)["approval_local_run"]
    assert (local_root / "runs" / f"{run_id}.json").is_file()

    assert decide(local_root, "approve", 1) == 0
    out = capsys.readouterr().out
    assert f"repairing run {run_id} of job 'diabetes-model-training'" in out
    assert "- task train: success in the run repaired, kept" in out
    assert "job 'diabetes-model-training' SUCCEEDED" in out
    assert champion(local_root) == "1"
    found = tags(local_root, 1)
    assert found["approval_local"] == "Approved"
    assert found["approval_local_reason"] == "reviewed the holdout rmse"
    assert found["approval_local_by"] and found["approval_local_at"].startswith("20")


def test_a_rejected_version_is_never_promoted(repo, local_root, capsys):
    assert train(repo, local_root, capsys)[0] == 1
    assert decide(local_root, "reject", 1, "bias in the older patients") == 0
    assert "repairing" not in capsys.readouterr().out  # a rejection repairs nothing
    assert decide(local_root, "approve", 1) == 1  # and it is final
    assert "a rejection is final; train a new version" in capsys.readouterr().err
    run_id = tags(local_root, 1)["approval_local_run"]
    run = LocalRunner(local_root, report=lambda line: None).repair(run_id)  # by hand: still no
    assert run.task("approval").status == "FAILED" and run.task("promote").status == "SKIPPED"
    assert "rejected by" in str(run.task("approval").error)
    assert champion(local_root) is None


def test_a_version_rejected_after_it_was_approved_is_not_promoted(repo, local_root, capsys):
    assert train(repo, local_root, capsys)[0] == 1
    client(local_root).set_model_version_tag(MODEL, "1", "approval_local", "approved")  # the UI
    assert decide(local_root, "reject", 1, "a later review found a leak") == 0
    run_id = tags(local_root, 1)["approval_local_run"]
    run = LocalRunner(local_root, report=lambda line: None).repair(run_id)
    assert run.task("approval").status == "FAILED" and champion(local_root) is None


@pytest.mark.slow  # a variant: the everyday tier runs the approval end to end
def test_a_version_approved_after_a_newer_one_was_registered(repo, local_root, capsys):
    assert train(repo, local_root, capsys)[0] == 1  # version 1 waits
    assert train(repo, local_root, capsys, "--param", "seed=7")[0] == 1  # version 2 waits
    assert decide(local_root, "approve", 1) == 0  # the older one: its own run goes on
    assert "SUCCEEDED" in capsys.readouterr().out and champion(local_root) == "1"
    assert "approval_local" not in tags(local_root, 2)  # approving 1 says nothing of 2
    # Version 2 was validated against no champion; the champion is 1 now: approving it repairs
    # its run, whose promote refuses it until it is validated against the champion of now.
    assert decide(local_root, "approve", 2) == 0
    out = capsys.readouterr().out
    assert "job 'diabetes-model-training' SUCCEEDED" in out and champion(local_root) == "1"
    assert tags(local_root, 2)["approval_local"] == "Approved"


def test_an_approval_in_another_target_does_not_count(repo, local_root, capsys):
    assert train(repo, local_root, capsys)[0] == 1
    client(local_root).set_model_version_tag(MODEL, "1", "approval_prod", "Approved")
    run_id = tags(local_root, 1)["approval_local_run"]
    run = LocalRunner(local_root, report=lambda line: None).repair(run_id)
    assert "waiting for approval" in str(run.task("approval").error)
    assert champion(local_root) is None


@pytest.mark.slow  # a variant: the everyday tier runs the approval end to end
def test_promote_itself_refuses_an_unapproved_version(repo, local_root, capsys):
    """A second line of defence: promote run on its own, where approval is required."""
    from diabetes_mlops.steps import promote

    assert train(repo, local_root, capsys)[0] == 1
    with LocalRunner(local_root)._mlflow_environment():
        result = promote(MODEL, "1", approval="required", deploy_target="local")
    assert result == {"promoted": "false", "champion_version": ""}
    assert champion(local_root) is None


@pytest.mark.slow  # a variant: the everyday tier runs the approval end to end
def test_only_a_validated_version_can_be_approved_and_a_reason_is_required(
    repo, local_root, capsys
):
    assert train(repo, local_root, capsys)[0] == 1
    client(local_root).set_model_version_tag(MODEL, "1", "validation_status", "failed")
    assert decide(local_root, "approve", 1) == 1
    assert "validation failed; only a version that passed validation can be approved" in (
        capsys.readouterr().err
    )
    assert decide(local_root, "reject", 1, reason="  ") == 1
    assert "--reason: say why" in capsys.readouterr().err


def test_a_champion_republished_by_training_needs_no_approval(repo, local_root, capsys):
    """Training on unchanged data republishes the champion ("nothing new to learn"): there is
    nothing to approve, even where approval is required."""
    assert train(repo, local_root, capsys, "--param", "approval=none")[0] == 0
    code, said = train(repo, local_root, capsys)
    assert code == 0 and "job 'diabetes-model-training' SUCCEEDED" in said.out
    assert champion(local_root) == "1"


def test_without_approval_the_job_promotes_as_before(repo, local_root, capsys):
    code, said = train(repo, local_root, capsys, "--param", "approval=none")
    assert code == 0 and champion(local_root) == "1"
    assert "approval_local" not in tags(local_root, 1)


def test_the_default_targets_approval(tmp_path, repo):
    assert load_target("prod", repo / "deploy.yml").parameters["approval"] == "required"
    for name in ("local", "dev", "staging"):
        assert load_target(name, repo / "deploy.yml").parameters["approval"] == "none"
    config = tmp_path / "deploy.yml"
    base = (
        "defaults: {root_dir: /r, wheel_dir: /w, cluster_name: c, secret_scope: s,"
        " alert_email: a@b.c}\n"
    )
    config.write_text(base + "targets:\n  prod: {approval: maybe}\n")
    with pytest.raises(
        ConfigError, match="target 'prod': approval must be one of required, none, got 'maybe'"
    ):
        load_target("prod", config)
    config.write_text(
        base + "targets:\n  prod: {approval: required, parameters: {approval: none}}\n"
    )
    with pytest.raises(ConfigError, match="set approval: none on the target, not as a parameter"):
        load_target("prod", config)


def test_tag_keys_are_unity_catalog_keys():
    assert approvals.keys("dev-alice@example.com").verdict == "approval_dev_alice_example_com"


# --- in a workspace: the fake one ------------------------------------------------------------
PROD_MODEL = "main.diabetes.diabetes"  # the default deploy.yml's prod model


def waiting_run(fake, target="prod", version="7"):
    """A training job of `target` whose run failed at its approval task, and the version it
    waits for (validated, tagged with the run as the approval task tags it)."""
    from databricks.sdk import WorkspaceClient

    tasks = [{"task_key": k, "notebook_task": {"notebook_path": f"/n/{k}"}}
             for k in ("train", "validate", "approval", "promote")]  # fmt: skip
    job_id = fake.add_job({"name": f"[{target}] diabetes-model-training", "tasks": tasks,
                           "tags": {"project": "diabetes-mlops", "target": target}})  # fmt: skip
    fake.run_plans[f"[{target}] diabetes-model-training"] = RunPlan(
        result="FAILED", task_errors={"approval": "ApprovalPending: waiting for approval"}
    )
    run_id = WorkspaceClient().jobs.run_now(job_id).response.run_id
    for _ in range(3):  # the fake's run ends on its third read
        WorkspaceClient().jobs.get_run(run_id)
    fake.uc_versions[(PROD_MODEL, version)] = {
        "tags": {"validation_status": "passed", f"approval_{target}_run": str(run_id)}
    }
    return run_id


def approve(repo, *args, verdict="approve"):
    return main([verdict, "prod", *args, "--config", str(repo / "deploy.yml")])


def test_approve_in_a_workspace_tags_the_version_and_repairs_the_run(fake_workspace, repo, capsys):
    run_id = waiting_run(fake_workspace)
    assert approve(repo, "7", "--reason", "signed off by the clinical lead") == 0
    out = capsys.readouterr().out
    found = fake_workspace.uc_versions[(PROD_MODEL, "7")]["tags"]
    assert found["approval_prod"] == "Approved"
    assert found["approval_prod_by"] == "alice@example.com"
    assert found["approval_prod_reason"] == "signed off by the clinical lead"
    (repair,) = [json.loads(r.body) for r in fake_workspace.calls("POST", "/jobs/runs/repair")]
    assert repair["run_id"] == run_id and repair["rerun_tasks"] == ["approval"]
    assert repair["rerun_dependent_tasks"] is True and "latest_repair_id" not in repair
    assert f"model {PROD_MODEL} version 7 in target 'prod': approved by alice@example.com" in out
    assert f"run {run_id} repaired from its approval task" in out


def test_reject_in_a_workspace_repairs_nothing(fake_workspace, repo, capsys):
    waiting_run(fake_workspace)
    assert approve(repo, "7", "--reason", "drift in the last month", verdict="reject") == 0
    assert fake_workspace.uc_versions[(PROD_MODEL, "7")]["tags"]["approval_prod"] == "Rejected"
    assert fake_workspace.calls("POST", "/jobs/runs/repair") == []


def test_a_run_of_another_targets_job_is_not_repaired(fake_workspace, repo, capsys):
    run_id = waiting_run(fake_workspace, target="staging")
    tags = fake_workspace.uc_versions[(PROD_MODEL, "7")]["tags"]
    tags["approval_prod_run"] = tags.pop("approval_staging_run")  # a prod tag naming staging's run
    assert approve(repo, "7", "--reason", "ok") == 1
    err = capsys.readouterr().err
    assert f"run {run_id} is of job id" in err and "not target 'prod''s: not repaired" in err
    assert fake_workspace.calls("POST", "/jobs/runs/repair") == []
    assert "approval_prod" not in tags  # refused before anything was written


def test_a_run_tag_that_names_no_workspace_run_is_one_line(fake_workspace, repo, capsys):
    waiting_run(fake_workspace)
    fake_workspace.uc_versions[(PROD_MODEL, "7")]["tags"]["approval_prod_run"] = "9a50298e81ae"
    assert approve(repo, "7", "--reason", "ok") == 1
    assert "names run '9a50298e81ae', which is no job run id" in capsys.readouterr().err
    assert "approval_prod" not in fake_workspace.uc_versions[(PROD_MODEL, "7")]["tags"]


def test_a_run_cannot_change_the_targets_approval(fake_workspace, project, capsys):
    args = ["run", "--target", "prod", "--repo", str(project), "--config",
            str(project / "deploy.yml"), "diabetes-model-training"]  # fmt: skip
    assert main([*args, "--param", "approval=none"]) == 2
    assert (
        "parameter 'approval' is target 'prod''s setting ('required' from deploy.yml); a run"
        " cannot change it" in capsys.readouterr().err
    )
    assert fake_workspace.requests == []


def test_local_is_refused_for_a_unity_catalog_target(repo, capsys):
    config = str(repo / "deploy.yml")
    assert main(["history", "prod", "--local", "--config", config]) == 2
    assert "--local uses the local store, and target 'prod' registers its model in Unity" in (
        capsys.readouterr().err
    )


def test_a_target_that_requires_no_approval_says_so(fake_workspace, repo, capsys):
    assert (
        main(["approve", "staging", "7", "--reason", "x", "--config", str(repo / "deploy.yml")])
        == 1
    )
    assert "target 'staging' requires no approval" in capsys.readouterr().err
    assert fake_workspace.calls("POST", "/mlflow/unity-catalog/model-versions/set-tag") == []


def test_the_local_target_needs_local(repo, capsys):
    config = str(repo / "deploy.yml")
    assert main(["approve", "local", "1", "--reason", "x", "--config", config]) == 2
    assert "target 'local' is the local runner's: add --local" in capsys.readouterr().err
