"""`diabetes-mlops history TARGET`: every version of the target's model, read from the registry
and the runs alone (local store; a workspace through the fake one)."""

from mlflow.tracking import MlflowClient

from diabetes_mlops.cli import main
from diabetes_mlops.local.store import tracking_uri

MODEL = "history_model"
TRAINING = "job_specs/diabetes_model_training.json"


def run(repo, root, *params):
    return main(["run-local", str(repo / TRAINING), "--local-root", str(root), "--config",
                 str(root / "deploy.yml"), *params])  # fmt: skip


def test_history_tells_each_versions_story(local_model_root, repo, capsys):
    root = local_model_root(MODEL)
    assert run(repo, root) == 0  # version 1: champion
    v2 = ["--param", "seed=3", "--param", "min_comparison_rows=10", "--param", "rmse_tolerance=100"]
    assert run(repo, root, "--param", "approval=required", *v2) == 1  # version 2 waits
    assert main(["approve", "local", "2", "--local", "--local-root", str(root), "--config",
                 str(root / "deploy.yml"), "--reason", "rmse reviewed"]) == 0  # fmt: skip
    client = MlflowClient(tracking_uri(root), tracking_uri(root))
    # What deploy_serving writes on Databricks (no Model Serving locally).
    client.set_model_version_tag(MODEL, "1", "serving_since", "2026-01-01T00:00:00+00:00")
    client.set_model_version_tag(MODEL, "1", "serving_until", "2026-02-01T00:00:00+00:00")
    client.set_model_version_tag(MODEL, "2", "serving_endpoint", "diabetes-local")
    client.set_model_version_tag(MODEL, "2", "serving_since", "2026-02-01T00:00:00+00:00")
    capsys.readouterr()
    assert main(["history", "local", "--local", "--local-root", str(root),
                 "--config", str(root / "deploy.yml")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"model {MODEL}, target 'local': 2 version(s), newest first"
    v2, v1 = out.index("\nversion 2\n"), out.index("\nversion 1\n")
    second, first = out[v2:v1], out[v1:]
    data = str(root / "Volumes/main/diabetes/data/data_raw.csv")
    for block in (first, second):
        assert f" on {data} (csv) (run " in block
        assert "  validation  passed against champion " in block and "rmse" in block
    assert "approved by " in second and ": rmse reviewed (target 'local')" in second
    assert "  approval    not required in target 'local'" in first
    promoted_2 = client.get_model_version(MODEL, "2").tags["promoted_at"]
    promoted_1 = client.get_model_version(MODEL, "1").tags["promoted_at"]
    assert f"  champion    champion now, since {promoted_2}, after version 1" in second
    assert f"  champion    {promoted_1} to {promoted_2}; replaced by version 2" in first
    assert "  serving     served by diabetes-local since 2026-02-01T00:00:00+00:00" in second
    assert (
        "  serving     served from 2026-01-01T00:00:00+00:00 until 2026-02-01T00:00:00+00:00,"
        " then replaced" in first
    )


def test_history_of_a_workspace_target_reads_unity_catalog_and_the_runs(
    fake_workspace, repo, capsys
):
    model = "main.diabetes.diabetes"
    fake = fake_workspace
    fake.mlflow_runs["r6"] = {
        "start_time": 1_767_225_600_000,
        "tags": {
            "data_path": "main.diabetes.training",
            "data_format": "table",
            "data_version": "12",
        },
    }
    fake.uc_versions[(model, "6")] = {
        "run_id": "r6",
        "tags": {
            "validation_status": "passed",
            "validation_champion_version": "5",
            "challenger_rmse": "53.1",
            "approval_prod": "Approved",
            "approval_prod_by": "lead@example.com",
            "approval_prod_at": "2026-01-02T09:00:00+00:00",
            "approval_prod_reason": "signed off",
            "promoted_at": "2026-01-02T09:05:00+00:00",
            "previous_champion_version": "5",
            "serving_endpoint": "diabetes-prod",
            "serving_since": "2026-01-02T09:30:00+00:00",
        },
    }
    fake.uc_versions[(model, "7")] = {
        "run_id": "r7",
        "tags": {
            "validation_status": "passed",
            "validation_champion_version": "6",
            "approval_prod": "Rejected",
            "approval_prod_by": "lead@example.com",
            "approval_prod_reason": "bias found",
            "serving_rollback_reason": "smoke test failed",
        },
    }
    fake.mlflow_runs["r7"] = {"start_time": 1_767_312_000_000, "tags": {"data_path": "x"}}
    fake.uc_aliases[(model, "champion")] = "6"
    assert main(["history", "prod", "--config", str(repo / "deploy.yml")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"model {model}, target 'prod': 2 version(s), newest first\nversion 7\n")
    assert (
        "  trained     2026-01-01T00:00:00+00:00 on main.diabetes.training (table), Delta version"
        " 12 (run r6)" in out
    )
    assert "  approval    rejected by lead@example.com: bias found (target 'prod')" in out
    assert "  serving     never served; rolled back: smoke test failed" in out
    assert "  champion    champion now, since 2026-01-02T09:05:00+00:00, after version 5" in out
    assert "  serving     served by diabetes-prod since 2026-01-02T09:30:00+00:00" in out
    writes = [r for r in fake.requests if r.method != "GET"]
    assert writes == []  # history only reads
