"""Targets sharing a workspace, and deploys whose answers get lost: every resource a deploy makes
carries its owner (project and target), a deploy touches only its own target's, and a deploy
interrupted anywhere converges on the next one with no schedule running twice."""

import copy
import json

import pytest
from databricks.sdk import WorkspaceClient
from test_deploy import JOBS, deploy, state

from diabetes_mlops.cli import main
from diabetes_mlops.deploy.deployer import Deployer
from diabetes_mlops.jobs.targets import load_target

STAGING_NOTEBOOKS = "/Workspace/Shared/diabetes-mlops/staging/notebooks"


def owners(fake):
    """name -> (project tag, target tag) of every job."""
    return {
        j["settings"]["name"]: (
            j["settings"].get("tags", {}).get("project"),
            j["settings"].get("tags", {}).get("target"),
        )
        for j in fake.jobs.values()
    }


def by_name(fake, name):
    return [job_id for job_id, j in fake.jobs.items() if j["settings"]["name"] == name]


def test_staging_and_prod_share_a_workspace_side_by_side(fake_workspace, project, capsys):
    assert deploy(project, target="staging") == 0
    assert deploy(project, target="prod") == 0
    assert owners(fake_workspace) == {
        **{name: ("diabetes-mlops", "staging") for name in JOBS},
        **{f"[prod] {name}": ("diabetes-mlops", "prod") for name in JOBS},
    }
    for name, tags in fake_workspace.experiment_tags.items():
        target = "staging" if "/staging/" in name else "prod"
        assert tags["project"] == "diabetes-mlops" and tags["target"] == target
    capsys.readouterr()
    fake_workspace.requests.clear()
    assert deploy(project, target="staging") == 0  # each one's redeploy leaves the other alone
    assert deploy(project, target="prod") == 0
    out = capsys.readouterr().out
    assert out.count("unchanged") == 4 and fake_workspace.calls("POST", "/jobs/reset") == []


def test_a_job_name_clash_between_targets_is_refused_before_any_change(
    fake_workspace, project, capsys
):
    config = project / "deploy.yml"
    config.write_text(config.read_text().replace('job_name_prefix: "[prod] "', ""))
    assert deploy(project, target="staging") == 0
    before = state(fake_workspace)
    changes = len(fake_workspace.changes())
    capsys.readouterr()
    assert deploy(project, target="prod") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "job 'diabetes-model-training'" in err and "belongs to target 'staging'" in err
    assert "target 'prod' would deploy a job of the same name" in err
    assert "distinct job_name_prefix" in err
    assert len(fake_workspace.changes()) == changes and state(fake_workspace) == before


def test_an_experiment_another_target_owns_is_refused_before_any_change(
    fake_workspace, project, capsys
):
    config = project / "deploy.yml"
    config.write_text(config.read_text().replace(
        "experiment_name: /Shared/diabetes-mlops/{target}/diabetes",
        "experiment_name: /Shared/diabetes-mlops/diabetes"))  # fmt: skip
    assert deploy(project, target="staging") == 0
    changes = len(fake_workspace.changes())
    capsys.readouterr()
    assert deploy(project, target="prod") == 1
    err = capsys.readouterr().err
    assert "experiment /Shared/diabetes-mlops/diabetes belongs to target 'staging'" in err
    assert "distinct parameters.experiment_name" in err
    assert len(fake_workspace.changes()) == changes


def test_an_untagged_job_of_this_project_in_this_targets_folder_is_taken_over(
    fake_workspace, project, capsys
):
    """Jobs deployed before they carried a target tag: this target's by their notebooks."""
    legacy = fake_workspace.add_job({
        "name": "diabetes-model-training",
        "tags": {"project": "diabetes-mlops", "job": "training"},
        "tasks": [{"task_key": "train",
                   "notebook_task": {"notebook_path": f"{STAGING_NOTEBOOKS}/x"}}],
    })  # fmt: skip
    assert deploy(project) == 0
    out = capsys.readouterr().out
    assert "made before jobs carried a target tag" in out
    assert by_name(fake_workspace, "diabetes-model-training") == [legacy]
    assert fake_workspace.jobs[legacy]["settings"]["tags"]["target"] == "staging"


def test_an_untagged_job_of_this_project_elsewhere_is_refused_with_how_to_claim_it(
    fake_workspace, project, capsys
):
    fake_workspace.add_job({
        "name": "diabetes-model-training",
        "tags": {"project": "diabetes-mlops"},
        "tasks": [{"task_key": "train", "notebook_task": {
            "notebook_path": "/Workspace/Shared/diabetes-mlops/prod/notebooks/x"}}],
    })  # fmt: skip
    assert deploy(project) == 1
    err = capsys.readouterr().err
    assert "is a diabetes-mlops job with no target tag" in err
    assert f"not in target 'staging''s folder {STAGING_NOTEBOOKS}" in err
    assert "add the tag target=staging" in err
    assert fake_workspace.files == {}


def test_a_new_prefix_renames_the_targets_job_and_leaves_none_behind(fake_workspace, project):
    """prod's jobs got the prefix "[prod] ": its jobs under the bare names are renamed, not
    left running beside new ones; staging's jobs of those names are not prod's."""
    config = project / "deploy.yml"
    text = config.read_text()
    config.write_text(text.replace('job_name_prefix: "[prod] "', ""))
    assert deploy(project, target="prod") == 0
    ids = {name: by_name(fake_workspace, name) for name in JOBS}
    config.write_text(text)
    assert deploy(project, target="prod") == 0
    assert {name: by_name(fake_workspace, f"[prod] {name}") for name in JOBS} == ids
    assert all(by_name(fake_workspace, name) == [] for name in JOBS)
    assert deploy(project, target="staging") == 0  # the bare names are free for staging now
    assert len(fake_workspace.jobs) == 4


def test_our_own_duplicates_with_the_same_settings_are_removed(fake_workspace, project, capsys):
    assert deploy(project) == 0
    kept = by_name(fake_workspace, "diabetes-model-training")[0]
    copy = fake_workspace.add_job(json.loads(json.dumps(fake_workspace.jobs[kept]["settings"])))
    capsys.readouterr()
    assert deploy(project, "--plan") == 0
    out = capsys.readouterr().out
    assert (
        f"job 'diabetes-model-training': delete (job id {copy}; a duplicate of job id {kept}" in out
    )
    assert deploy(project) == 0
    assert by_name(fake_workspace, "diabetes-model-training") == [kept]


def test_our_own_duplicates_that_differ_are_refused_naming_them(fake_workspace, project, capsys):
    assert deploy(project) == 0
    kept = by_name(fake_workspace, "diabetes-model-training")[0]
    edited = json.loads(json.dumps(fake_workspace.jobs[kept]["settings"]))
    edited["max_concurrent_runs"] = 3
    copy = fake_workspace.add_job(edited)
    capsys.readouterr()
    assert deploy(project) == 1
    err = capsys.readouterr().err
    assert (
        f"2 jobs of target 'staging' are named 'diabetes-model-training' (ids {kept}, {copy})"
        in err
    )
    assert len(fake_workspace.jobs) == 3


def test_a_remote_run_never_starts_another_targets_job(fake_workspace, project, capsys):
    config = project / "deploy.yml"
    config.write_text(config.read_text().replace('job_name_prefix: "[prod] "', ""))
    assert deploy(project, target="staging") == 0
    capsys.readouterr()
    status = main(["run", "--target", "prod", "--config", str(config),
                   "diabetes-batch-scoring", "--no-wait"])  # fmt: skip
    assert status == 1
    assert "belongs to target 'staging'" in capsys.readouterr().err
    assert fake_workspace.calls("POST", "/jobs/run-now") == []


# --- lost answers: the server acted, the client never heard -----------------------------------
WRITES = [
    ("POST", "/jobs/create"),
    ("POST", "/jobs/reset"),
    ("POST", "/workspace/import"),
    ("PUT", "/api/2.0/fs/files"),
    ("PUT", "/api/2.0/fs/directories"),
    ("POST", "/workspace/mkdirs"),
    ("POST", "/mlflow/experiments/create"),
    ("POST", "/jobs/delete"),
]


def _clean_state(project, target="staging"):
    from fake_workspace import FakeWorkspace

    clean = FakeWorkspace().start()
    try:
        w = WorkspaceClient(host=clean.url, token=clean.token, auth_type="pat")
        Deployer(w, load_target(target, project / "deploy.yml"), project, lambda _: None).deploy()
        return _ids_aside(clean)
    finally:
        clean.stop()


def _ids_aside(fake):
    """What a deploy leaves, with each job id a run_job task names replaced by that job's name,
    and the experiments' ids left out: ids depend on how many objects were made before."""
    files, notebooks, jobs, experiments = copy.deepcopy(state(fake))
    for settings in jobs.values():
        for task in settings["tasks"]:
            if "run_job_task" in task:
                job_id = task["run_job_task"]["job_id"]
                task["run_job_task"]["job_id"] = fake.jobs[job_id]["settings"]["name"]
    return files, notebooks, jobs, sorted(experiments)


@pytest.mark.parametrize("method, path", WRITES)
def test_a_lost_answer_to_any_write_converges_with_no_duplicate(
    fake_workspace, project, method, path, capsys
):
    """Each kind of write loses its answer once, after the server acted; the SDK sends it again.
    The deploy ends as a clean deploy does (at the latest, the next one): one job per name."""
    if path in ("/jobs/reset", "/jobs/delete"):  # writes only a second deploy makes
        assert deploy(project) == 0
        step = project / "ml_ops" / "src" / "diabetes_mlops" / "steps" / "promote.py"
        step.write_text(step.read_text() + "\n# a change: the jobs get a new wheel\n")
        if path == "/jobs/delete":  # a duplicate to delete
            kept = by_name(fake_workspace, "diabetes-model-training")[0]
            fake_workspace.add_job(json.loads(json.dumps(fake_workspace.jobs[kept]["settings"])))
    fake_workspace.lose_answer(method, path)
    first = deploy(project)
    lost = [f for f in fake_workspace.faults if f.lose and f.times == 0]
    assert lost, f"no {method} {path} was sent"
    if first != 0:
        assert deploy(project) == 0
    assert sorted(j["settings"]["name"] for j in fake_workspace.jobs.values()) == sorted(JOBS)
    files, *rest = _ids_aside(fake_workspace)
    clean_files, *clean_rest = _clean_state(project)
    assert rest == clean_rest
    assert files.items() >= clean_files.items()  # and the wheels of the first deploy
    capsys.readouterr()
    assert deploy(project) == 0
    assert capsys.readouterr().out.count("unchanged") == 2


def test_a_lost_create_answer_leaves_no_second_schedule_even_for_a_moment_after(
    fake_workspace, project, capsys
):
    fake_workspace.lose_answer("POST", "/jobs/create")
    assert deploy(project) == 0
    out = capsys.readouterr().out
    creates = fake_workspace.calls("POST", "/jobs/create")
    assert len(creates) == 3  # one sent twice
    assert {json.loads(r.body)["schedule"]["pause_status"] for r in creates} == {"PAUSED"}
    schedules = [j["settings"]["schedule"] for j in fake_workspace.jobs.values()]
    assert [s["pause_status"] for s in schedules] == ["UNPAUSED"] * 2  # once alone
    assert (
        "a duplicate of job id" in out and "(a create sent again after its answer was lost)" in out
    )
    assert len(fake_workspace.jobs) == 2


@pytest.mark.slow  # some 40 deploys
def test_a_deploy_killed_after_any_write_converges_on_the_next(project, monkeypatch, capsys):
    """For every write of a first deploy: the client dies right after the server carried it out
    (its answer never arrives); the next deploy ends as a clean one, and the one after changes
    nothing."""
    from fake_workspace import FakeWorkspace

    clean = _clean_state(project)
    probe = FakeWorkspace().start()
    try:
        w = WorkspaceClient(host=probe.url, token=probe.token, auth_type="pat")
        Deployer(w, load_target("staging", project / "deploy.yml"), project, print).deploy()
        writes = [r for r in probe.requests if r.method in ("POST", "PUT", "DELETE")]
    finally:
        probe.stop()
    assert len(writes) >= 12  # folders, 2 wheels, 7 notebooks, the experiment, 2 jobs
    for n in range(1, len(writes) + 1):
        fake = FakeWorkspace().start()
        monkeypatch.setenv("DATABRICKS_HOST", fake.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", fake.token)
        monkeypatch.setenv("DATABRICKS_AUTH_TYPE", "pat")
        try:
            fake.kill_client_after(n)
            assert deploy(project) == 1, f"killed after write {n}: {writes[n - 1].path}"
            fake.revive()
            assert deploy(project) == 0
            assert _ids_aside(fake) == clean, f"killed after write {n}: {writes[n - 1].path}"
            changes = len([r for r in fake.requests if r.method in ("POST", "PUT", "DELETE")])
            assert deploy(project) == 0
            again = [r for r in fake.requests if r.method in ("POST", "PUT", "DELETE")]
            assert len(again) == changes, f"killed after write {n}: not converged"
        finally:
            fake.stop()
        capsys.readouterr()


def test_the_default_targets_name_everything_apart(repo):
    """dev, staging and prod may share one workspace: none shares a job, experiment, endpoint or
    model name with another (a deploy would refuse the clash)."""
    targets = [
        load_target(name).for_user("alice@example.com") for name in ("dev", "staging", "prod")
    ]
    for kind in ("jobs", "experiment_name", "serving_endpoint", "model_name"):
        names = [
            {t.job_name_prefix + job for job in JOBS} if kind == "jobs" else {t.parameters[kind]}
            for t in targets
        ]
        for i, one in enumerate(names):
            for other in names[i + 1 :]:
                assert not one & other, f"{kind}: {one & other}"
