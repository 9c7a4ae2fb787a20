"""`databricks-init` and `databricks-upload-data` against a fake workspace the real SDK talks to:
every prerequisite created once, nothing that exists changed, and one line per step."""

import json
import os
import subprocess

import pytest
import yaml

from diabetes_mlops.cli import main
from diabetes_mlops.deploy.clusters import differences
from diabetes_mlops.deploy.deployer import Deployer
from diabetes_mlops.deploy.workspace import connect
from diabetes_mlops.jobs.targets import load_target

GROUP = "ml-jobs"
USER = "alice@example.com"
STAGING_DATA = "/Volumes/main/diabetes_staging/data"


@pytest.fixture
def fake(monkeypatch):
    """The fake workspace with the Unity Catalog, cluster and permission routes, and no cluster
    yet; DATABRICKS_HOST/TOKEN point the real SDK client at it (as conftest's fake_workspace)."""
    from fake_workspace_setup import FakeWorkspaceWithSetup

    fake = FakeWorkspaceWithSetup(user=USER).start()
    fake.clusters = []
    monkeypatch.setenv("DATABRICKS_HOST", fake.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", fake.token)
    monkeypatch.setenv("DATABRICKS_AUTH_TYPE", "pat")
    yield fake
    fake.stop()


@pytest.fixture
def config(repo, tmp_path):
    """The repository's deploy.yml with run_as_group set, written where a test may change it."""

    def write(**staging):
        data = yaml.safe_load((repo / "deploy.yml").read_text())
        data["defaults"]["run_as_group"] = GROUP
        data["targets"]["staging"].update(staging)
        path = tmp_path / "deploy.yml"
        path.write_text(yaml.safe_dump(data))
        return path

    return write


def init(path, target="staging"):
    return main(["databricks-init", "--target", target, "--config", str(path)])


def upload(path, repo, *extra, target="staging"):
    return main(["databricks-upload-data", "--target", target, "--config", str(path),
                 "--repo", str(repo), *extra])  # fmt: skip


def lines(capsys):
    return capsys.readouterr().out.strip().splitlines()


def test_first_run_creates_everything_and_a_second_changes_nothing(fake, config, capsys):
    path = config()
    assert init(path) == 0
    out = lines(capsys)
    cluster_id = fake.clusters[0]["cluster_id"]
    assert out == [
        "catalog main: exists",
        "schema main.diabetes_staging: created",
        "schema main.diabetes: created",
        "volume main.diabetes_staging.data: created",
        "volume main.diabetes.wheels: created",
        "folder /Workspace/Shared/diabetes-mlops/staging/notebooks: created",
        "wheel folder /Volumes/main/diabetes/wheels/staging: created",
        f"data folder {STAGING_DATA}: created",
        "experiment /Shared/diabetes-mlops/staging/diabetes: created",
        "secret scope diabetes-mlops: created",
        f"cluster diabetes-mlops: created (id {cluster_id}; starting, not waited for)",
        f"grant USE_CATALOG on catalog main to {GROUP}: created",
        f"grant USE_SCHEMA, CREATE_MODEL, EXECUTE on schema main.diabetes_staging to {GROUP}:"
        " created",
        f"grant USE_SCHEMA on schema main.diabetes to {GROUP}: created",
        f"grant READ_VOLUME, WRITE_VOLUME on volume main.diabetes_staging.data to {GROUP}: created",
        f"grant READ_VOLUME on volume main.diabetes.wheels to {GROUP}: created",
        f"grant CAN_RESTART on cluster diabetes-mlops to {GROUP}: created",
    ]
    assert set(fake.schemas) == {"main.diabetes_staging", "main.diabetes"}
    assert set(fake.volumes) == {"main.diabetes_staging.data", "main.diabetes.wheels"}
    assert {v["volume_type"] for v in fake.volumes.values()} == {"MANAGED"}
    [create] = fake.calls("POST", "/api/2.1/clusters/create")
    sent = json.loads(create.body)
    assert sent == {
        "cluster_name": "diabetes-mlops",
        "spark_version": "17.3.x-cpu-ml-scala2.13",
        "node_type_id": "i3.xlarge",
        "num_workers": 1,
        "autotermination_minutes": 30,
        "data_security_mode": "SINGLE_USER",
        "single_user_name": USER,  # {user}: who ran databricks-init
        "custom_tags": {"project": "diabetes-mlops"},
    }
    assert not fake.calls("GET", "/clusters/get")  # created, not waited for
    assert fake.grants[("catalog", "main")] == {GROUP: {"USE_CATALOG"}}
    assert fake.grants[("schema", "main.diabetes_staging")] == {
        GROUP: {"USE_SCHEMA", "CREATE_MODEL", "EXECUTE"}
    }
    assert fake.grants[("volume", "main.diabetes.wheels")] == {GROUP: {"READ_VOLUME"}}
    assert fake.cluster_acls[cluster_id][f"group:{GROUP}"] == "CAN_RESTART"
    assert fake.scopes == {"diabetes-mlops"}
    assert "/Shared/diabetes-mlops/staging/diabetes" in fake.experiments
    [created] = fake.calls("POST", "/mlflow/experiments/create")
    assert json.loads(created.body)["tags"] == [
        {"key": "mlflow.experimentKind", "value": "custom_model_development"},
        {"key": "project", "value": "diabetes-mlops"},  # its owner: no other target takes it
        {"key": "target", "value": "staging"},
    ]
    assert STAGING_DATA in fake.directories

    before = len(fake.requests)
    assert init(path) == 0
    again = lines(capsys)
    assert len(again) == len(out)
    assert all(line.endswith(": exists") or ": exists (id " in line for line in again), again
    assert not [r for r in fake.requests[before:] if r.method in ("POST", "PUT", "PATCH")]
    assert len(fake.clusters) == 1


def test_the_model_schema_follows_the_registry_the_jobs_receive(fake, repo, tmp_path, capsys):
    """deploy.yml without `registry`: the jobs get the specs' own default (the workspace
    registry), so init creates no Unity Catalog schema for a model that will not be there."""
    data = yaml.safe_load((repo / "deploy.yml").read_text())
    del data["defaults"]["parameters"]["registry"]
    data["targets"]["staging"]["parameters"]["model_name"] = "diabetes"
    del data["targets"]["staging"]["parameters"]["inference_table"]
    path = tmp_path / "deploy.yml"
    path.write_text(yaml.safe_dump(data))
    assert init(path) == 0
    assert set(fake.schemas) == {"main.diabetes_staging", "main.diabetes"}  # the two volumes'
    assert not [line for line in lines(capsys) if "CREATE_MODEL" in line]


def test_a_cluster_with_another_spec_is_reported_field_by_field_and_left_alone(
    fake, config, capsys
):
    cluster_id = fake.add_cluster(
        "diabetes-mlops",
        spark_version="15.4.x-cpu-ml-scala2.12",
        node_type_id="i3.xlarge",
        autoscale={"min_workers": 1, "max_workers": 4},
        autotermination_minutes=120,
        data_security_mode="DATA_SECURITY_MODE_DEDICATED",  # the new name of SINGLE_USER
        single_user_name=USER.upper(),  # user names compare in any case
        custom_tags={"project": "diabetes-mlops", "owner": "bob"},  # an extra tag is theirs
    )
    before = json.dumps(fake.clusters, sort_keys=True)
    assert init(config()) == 0
    out = [line for line in lines(capsys) if "cluster diabetes-mlops" in line]
    assert out == [
        f"cluster diabetes-mlops: differs from deploy.yml (id {cluster_id}; left unchanged, edit"
        " one or the other):",
        "  cluster diabetes-mlops spark_version: ours '17.3.x-cpu-ml-scala2.13' vs theirs"
        " '15.4.x-cpu-ml-scala2.12'",
        "  cluster diabetes-mlops num_workers: ours 1 vs theirs 'autoscale 1-4'",
        "  cluster diabetes-mlops autotermination_minutes: ours 30 vs theirs 120",
        f"grant CAN_RESTART on cluster diabetes-mlops to {GROUP}: created",
    ]
    assert json.dumps(fake.clusters, sort_keys=True) == before
    assert not fake.calls("POST", "/clusters/create") and not fake.calls("POST", "/clusters/edit")


def test_a_cluster_as_the_server_echoes_it_is_the_same_cluster(fake, config, capsys):
    """What the server fills in or says otherwise (driver node type, default tags, numbers
    as text, the alias of the access mode) is no difference."""
    spec = load_target("staging", config()).cluster
    theirs = {
        **spec,
        "num_workers": "1",
        "autotermination_minutes": 30,
        "data_security_mode": "DATA_SECURITY_MODE_DEDICATED",
        "driver_node_type_id": "i3.xlarge",
        "default_tags": {"Vendor": "Databricks"},
        "state": "TERMINATED",
    }
    assert differences(spec, theirs) == []
    scaled = {**spec, "autoscale": {"min_workers": 1, "max_workers": 3}}
    scaled.pop("num_workers")
    running = {**theirs, "autoscale": {"min_workers": "1", "max_workers": 3}, "num_workers": 2}
    running.pop("data_security_mode")
    assert differences(scaled, running) == [
        "data_security_mode: ours 'SINGLE_USER' vs theirs (not set)"
    ]


def test_clusters_sharing_the_name_are_an_error_naming_their_ids(fake, config, capsys):
    first = fake.add_cluster("diabetes-mlops", spark_version="17.3.x-cpu-ml-scala2.13")
    second = fake.add_cluster("diabetes-mlops", spark_version="17.3.x-cpu-ml-scala2.13")
    assert init(config()) == 1
    err = capsys.readouterr().err
    assert f"2 clusters are named 'diabetes-mlops' (ids {first}, {second})" in err
    assert len(err.strip().splitlines()) == 1
    assert len(fake.clusters) == 2 and not fake.calls("POST", "/clusters/create")


def test_a_missing_catalog_is_one_line_and_nothing_is_created_in_it(fake, config, capsys):
    fake.catalogs = set()
    assert init(config()) == 1
    captured = capsys.readouterr()
    catalog = [line for line in captured.out.splitlines() if "catalog main" in line]
    assert catalog == [
        "catalog main: missing (databricks-init creates no catalogs: ask a metastore admin to"
        " create it, or name another in deploy.yml)"
    ]
    assert "not ready: catalog main missing" in captured.err
    assert not fake.schemas and not fake.volumes and not fake.grants
    assert not [r for r in fake.changes() if "unity-catalog" in r.path or "/fs/" in r.path]
    assert "diabetes-mlops" in fake.scopes  # the steps outside the catalog still ran


def test_grants_only_add(fake, config, capsys):
    fake.add_schema("main.diabetes_staging")
    fake.add_schema("main.diabetes")
    fake.add_volume("main.diabetes.wheels")
    fake.grants[("schema", "main.diabetes_staging")] = {
        GROUP: {"USE_SCHEMA", "SELECT"},
        "analysts": {"USE_SCHEMA", "SELECT"},
    }
    fake.grants[("volume", "main.diabetes.wheels")] = {GROUP: {"ALL_PRIVILEGES"}}
    spec = {**load_target("staging", config()).cluster, "single_user_name": USER}
    cluster_id = fake.add_cluster("diabetes-mlops", **spec)
    fake.cluster_acls[cluster_id][f"group:{GROUP}"] = "CAN_MANAGE"
    assert init(config()) == 0
    out = lines(capsys)
    assert f"grant READ_VOLUME on volume main.diabetes.wheels to {GROUP}: exists" in out
    assert f"grant CAN_RESTART on cluster diabetes-mlops to {GROUP}: exists" in out
    assert fake.grants[("schema", "main.diabetes_staging")] == {
        GROUP: {"USE_SCHEMA", "SELECT", "CREATE_MODEL", "EXECUTE"},
        "analysts": {"USE_SCHEMA", "SELECT"},
    }
    assert fake.grants[("volume", "main.diabetes.wheels")] == {GROUP: {"ALL_PRIVILEGES"}}
    assert fake.cluster_acls[cluster_id][f"group:{GROUP}"] == "CAN_MANAGE"  # never lowered
    patches = fake.calls("PATCH")
    assert patches and all("remove" not in json.loads(r.body)["changes"][0] for r in patches)
    [schema_patch] = [r for r in patches if r.path.endswith("/schema/main.diabetes_staging")]
    assert json.loads(schema_patch.body)["changes"] == [
        {"principal": GROUP, "add": ["CREATE_MODEL", "EXECUTE"]}
    ]
    assert not fake.calls("PATCH", "/permissions/clusters/")


def test_no_run_as_group_means_no_grants(fake, config, capsys):
    assert init(config(run_as_group="")) == 0
    assert "grants: none (deploy.yml sets no run_as_group)" in lines(capsys)
    assert not fake.grants and not fake.calls("PATCH")


@pytest.mark.parametrize(
    "cluster, message",
    [
        ({"spark_version": "17.3.x-cpu-ml-scala2.13", "node_type_id": "i3.xlarge",
          "num_workers": 1, "data_security_mode": "USER_ISOLATION"},
         "an ML runtime does not run in USER_ISOLATION"),
        ({"spark_version": "17.3.x-cpu-ml-scala2.13", "node_type_id": "i3.xlarge",
          "num_workers": 1, "data_security_mode": "NONE"},
         "cluster.data_security_mode must be one of SINGLE_USER, USER_ISOLATION"),
        ({"spark_version": "x", "node_type_id": "y", "num_workers": 1, "autoscale": {},
          "data_security_mode": "SINGLE_USER", "single_user_name": "a"},
         "exactly one of num_workers and autoscale"),
        ({"spark_versoin": "x"}, "cluster: unknown field(s) spark_versoin"),
    ],
)  # fmt: skip
def test_a_bad_cluster_spec_is_one_line_naming_the_file_and_field(
    fake, config, capsys, cluster, message
):
    path = config(cluster=cluster)
    assert init(path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path}: target 'staging': " in err[0] and message in err[0]
    assert not fake.requests


def test_upload_data_skips_the_same_file_refuses_another_and_overwrites_on_request(
    fake, config, repo, capsys
):
    path = config()
    raw, scoring = f"{STAGING_DATA}/data_raw.csv", f"{STAGING_DATA}/data_batch_input.csv"
    assert upload(path, repo) == 0
    assert lines(capsys) == [
        f"data {raw}: created (20096 bytes from {repo / 'ml_data/data_raw.csv'})",
        f"data {scoring}: created (18408 bytes from {repo / 'ml_data/data_batch_input.csv'})",
    ]
    assert fake.files[raw] == (repo / "ml_data/data_raw.csv").read_bytes()
    sent = fake.uploaded_bytes()

    assert upload(path, repo) == 0
    assert lines(capsys) == [
        f"data {raw}: exists (same content, 0 bytes sent)",
        f"data {scoring}: exists (same content, 0 bytes sent)",
    ]
    assert fake.uploaded_bytes() == sent

    real = bytes(reversed(fake.files[raw]))  # same size, other bytes: only the hash tells
    fake.files[raw] = real
    assert upload(path, repo) == 1
    captured = capsys.readouterr()
    assert (
        f"data {raw}: refused: a different file is there (it may be real data); --overwrite"
        " replaces it" in captured.out
    )
    assert f"data {scoring}: exists" in captured.out
    assert captured.err.strip() == f"error: 1 file(s) left as they were: {raw}"
    assert fake.files[raw] == real and fake.uploaded_bytes() == sent

    assert upload(path, repo, "--overwrite") == 0
    assert f"data {raw}: replaced (20096 bytes" in capsys.readouterr().out
    assert fake.files[raw] == (repo / "ml_data/data_raw.csv").read_bytes()


def test_upload_data_refuses_a_path_outside_a_volume(fake, config, repo, capsys):
    path = config(parameters={"data_path": "dbfs:/tmp/raw.csv"})
    assert upload(path, repo) == 1
    err = capsys.readouterr().err
    assert "parameters.data_path is 'dbfs:/tmp/raw.csv'" in err and not fake.files


def test_upload_data_refuses_a_target_that_reads_another_format(fake, config, repo, capsys):
    path = config(parameters={"data_format": "delta"})
    assert upload(path, repo) == 1
    err = capsys.readouterr().err
    assert "parameters.data_format is 'delta'; the sample data is CSV" in err and not fake.files


@pytest.mark.slow
def test_make_upload_data_puts_the_files_where_a_deploy_points_the_jobs(fake, repo):
    """The Makefile target, with the repository's deploy.yml: dev's paths hold the deploying
    user, filled as a deploy fills them."""
    dev = load_target("dev", repo / "deploy.yml")
    expected = Deployer(connect(dev), dev, repo).target.parameters
    command = ["make", "--no-print-directory", "databricks-upload-data", "TARGET=dev"]
    done = subprocess.run(command, cwd=repo, env=os.environ.copy(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert expected["data_path"] == f"/Volumes/main/diabetes_dev/data/{USER}/data_raw.csv"
    assert fake.files[expected["data_path"]] == (repo / "ml_data/data_raw.csv").read_bytes()
    scoring = (repo / "ml_data/data_batch_input.csv").read_bytes()
    assert fake.files[expected["input_path"]] == scoring
    done = subprocess.run(command, cwd=repo, env=os.environ.copy(), capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.count("exists (same content, 0 bytes sent)") == 2


INIT_WRITES = [
    ("POST", "/unity-catalog/schemas"),
    ("POST", "/unity-catalog/volumes"),
    ("PUT", "/api/2.0/fs/directories"),
    ("POST", "/workspace/mkdirs"),
    ("POST", "/mlflow/experiments/create"),
    ("POST", "/secrets/scopes/create"),
    ("POST", "/clusters/create"),
    ("PATCH", "/unity-catalog/permissions"),
    ("PATCH", "/permissions/clusters/"),
]


def _init_state(fake):
    acls = [sorted(acl.items()) for acl in fake.cluster_acls.values()]
    return (sorted(fake.schemas), sorted(fake.volumes), sorted(fake.directories),
            sorted(fake.experiments), sorted(fake.scopes), len(fake.clusters), fake.grants,
            acls)  # fmt: skip


@pytest.mark.parametrize("method, path", INIT_WRITES)
def test_a_lost_answer_to_any_init_write_converges_with_no_duplicate(
    fake, config, repo, method, path
):
    """The server acts, the answer is lost, the SDK sends the request again: init ends as a
    clean one does (at the latest when run again), with one cluster, and then changes nothing."""
    from fake_workspace_setup import FakeWorkspaceWithSetup

    fake.lose_answer(method, path)
    if init(config()) != 0:
        assert init(config()) == 0
    assert [f for f in fake.faults if f.lose and f.times == 0], f"no {method} {path} was sent"
    clean = FakeWorkspaceWithSetup(user=USER).start()
    clean.clusters = []
    try:
        w = _client(clean)
        Deployer(w, load_target("staging", config()), repo, lambda _: None).init()
        assert _init_state(fake) == _init_state(clean)
    finally:
        clean.stop()
    before = len(fake.changes())
    assert init(config()) == 0
    assert len(fake.changes()) == before


def _client(fake):
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=fake.url, token=fake.token, auth_type="pat")
