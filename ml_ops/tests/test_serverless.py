"""Serverless targets: jobs with no cluster, the wheels in a job environment of a pinned
serverless environment version, against the fake workspace and the real databricks-sdk."""

import copy
import json

import pytest

from diabetes_mlops.cli import main
from diabetes_mlops.jobs.compute import ENVIRONMENT_KEY, ServerlessError, for_compute
from diabetes_mlops.jobs.targets import ConfigError, load_target

JOBS = ("diabetes-batch-scoring", "diabetes-model-training")


def serverless(project, target="staging", version='"5"'):
    """The project's deploy.yml with `target` on serverless compute."""
    config = project / "deploy.yml"
    text = config.read_text()
    block = f"  {target}:\n"
    assert block in text
    config.write_text(text.replace(block, f"{block}    compute: serverless\n", 1))
    if version != '"5"':
        config.write_text(
            config.read_text().replace('serverless_environment_version: "5"',
                                       f"serverless_environment_version: {version}"))  # fmt: skip
    return config


def deploy(project, *extra, target="staging"):
    return main(["deploy", "--target", target, "--repo", str(project),
                 "--config", str(project / "deploy.yml"), *extra])  # fmt: skip


def jobs_by_name(fake):
    return {j["settings"]["name"]: j["settings"] for j in fake.jobs.values()}


SPEC = {
    "name": "x",
    "tasks": [
        {
            "task_key": "a",
            "existing_cluster_id": "${cluster_id}",
            "notebook_task": {"notebook_path": "n"},
            "libraries": [{"whl": "${wheel.diabetes}"}, {"whl": "${wheel.diabetes_mlops}"}],
        },
        {
            "task_key": "b",
            "depends_on": [{"task_key": "a"}],
            "existing_cluster_id": "${cluster_id}",
            "notebook_task": {"notebook_path": "m"},
            "libraries": [{"whl": "${wheel.diabetes}"}, {"pypi": {"package": "extra==1.0"}}],
        },
        {"task_key": "c", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}},
    ],
}


def test_the_serverless_form_names_the_job_environment_instead_of_a_cluster():
    form = for_compute(SPEC, "serverless", "5")
    assert SPEC["tasks"][0]["existing_cluster_id"] == "${cluster_id}"  # the spec is untouched
    assert form["environments"] == [
        {
            "environment_key": ENVIRONMENT_KEY,
            "spec": {
                "environment_version": "5",
                "dependencies": ["${wheel.diabetes}", "${wheel.diabetes_mlops}", "extra==1.0"],
            },
        }
    ]
    a, b, c = form["tasks"]
    for task in (a, b):
        assert task["environment_key"] == ENVIRONMENT_KEY
        assert not {"existing_cluster_id", "libraries"} & set(task)
    assert c == SPEC["tasks"][2]  # a condition runs on no compute
    assert for_compute(SPEC, "cluster", "5") is SPEC


def test_a_library_a_serverless_environment_cannot_take_is_one_line():
    spec = copy.deepcopy(SPEC)
    spec["tasks"][1]["libraries"].append({"jar": "/Volumes/x/y.jar"})
    with pytest.raises(ServerlessError, match=r"^task 'b': library \{'jar': .*cannot go into"):
        for_compute(spec, "serverless", "5")


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("compute: lambda", "compute must be one of cluster, serverless, got 'lambda'"),
        ("serverless_environment_version: latest",
         "serverless_environment_version must be a serverless environment version number"),
        ("serverless_environment_version: \"\"",
         "serverless_environment_version must be a serverless environment version number"),
    ],
)  # fmt: skip
def test_a_bad_compute_setting_is_one_line_naming_the_target(tmp_path, field, message):
    config = tmp_path / "deploy.yml"
    config.write_text(
        "defaults: {root_dir: /r, wheel_dir: /w, secret_scope: s, alert_email: a@b.c}\n"
        f"targets:\n  prod:\n    compute: serverless\n    {field}\n"
    )
    with pytest.raises(ConfigError, match=rf"deploy.yml: target 'prod': {message}"):
        load_target("prod", config)


def test_a_serverless_target_needs_no_cluster_name(tmp_path):
    config = tmp_path / "deploy.yml"
    config.write_text(
        "defaults: {root_dir: /r, wheel_dir: /w, secret_scope: s, alert_email: a@b.c}\n"
        "targets:\n  prod: {compute: serverless, serverless_environment_version: 5}\n"
        "  other: {}\n"
    )
    target = load_target("prod", config)
    assert (target.compute, target.serverless_environment_version) == ("serverless", "5")
    with pytest.raises(ConfigError, match="target 'other' does not set cluster_name"):
        load_target("other", config)


def test_a_serverless_deploy_sends_environments_and_looks_up_no_cluster(
    fake_workspace, project, capsys
):
    serverless(project)
    assert deploy(project, "--plan") == 0
    assert "  compute: serverless, environment version 5 (no cluster)" in capsys.readouterr().out
    assert deploy(project) == 0
    assert fake_workspace.calls("GET", "/clusters/list") == []
    wheels = sorted(fake_workspace.files)
    jobs = jobs_by_name(fake_workspace)
    assert sorted(jobs) == list(JOBS)
    for settings in jobs.values():
        assert "${" not in json.dumps(settings)
        (environment,) = settings["environments"]
        assert environment["environment_key"] == ENVIRONMENT_KEY
        assert environment["spec"] == {"environment_version": "5", "dependencies": wheels}
        notebook_tasks = [t for t in settings["tasks"] if "notebook_task" in t]
        assert notebook_tasks and all(
            t["environment_key"] == ENVIRONMENT_KEY and "existing_cluster_id" not in t
            and "libraries" not in t
            for t in notebook_tasks
        )  # fmt: skip
    fake_workspace.requests.clear()
    capsys.readouterr()
    assert deploy(project) == 0  # converged: nothing to reset
    assert fake_workspace.calls("POST", "/jobs/reset") == []
    out = capsys.readouterr().out
    assert all(f"job '{name}' unchanged" in out for name in JOBS)


def test_moving_a_target_from_its_cluster_to_serverless_resets_its_jobs(fake_workspace, project):
    assert deploy(project) == 0
    ids = sorted(fake_workspace.jobs)
    serverless(project)
    assert deploy(project) == 0
    assert sorted(fake_workspace.jobs) == ids  # the same jobs, reset
    for settings in jobs_by_name(fake_workspace).values():
        assert "environments" in settings
        assert not any("existing_cluster_id" in t for t in settings["tasks"])


def test_the_fake_refuses_libraries_on_a_task_with_no_cluster(fake_workspace):
    # The check above is only as good as the fake's rule: a cluster-less task with libraries.
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors import InvalidParameterValue
    from databricks.sdk.service.jobs import JobSettings

    settings = copy.deepcopy(SPEC)
    del settings["tasks"][0]["existing_cluster_id"]
    w = WorkspaceClient()
    with pytest.raises(InvalidParameterValue, match="task a: libraries are not supported"):
        w.jobs.create(**JobSettings.from_dict(settings).as_shallow_dict())


def test_databricks_init_makes_no_cluster_for_a_serverless_target(fake_workspace, project, capsys):
    config = serverless(project)
    clusters = list(fake_workspace.clusters)
    config.write_text(config.read_text().replace('run_as_group: ""', "run_as_group: ml-team"))
    args = ["databricks-init", "--target", "staging", "--config", str(config)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "cluster: none (compute: serverless, environment version 5)" in out
    assert fake_workspace.clusters == clusters
    assert fake_workspace.calls("POST", "/clusters/create") == []
    assert not [r for r in fake_workspace.requests if "/permissions/clusters/" in r.path]


def test_validate_checks_each_targets_compute_form(repo, project, capsys):
    serverless(project)
    spec = project / "job_specs" / "diabetes_batch_scoring.json"
    settings = json.loads(spec.read_text())
    settings["tasks"][0]["libraries"].append({"jar": "/Volumes/main/x/y.jar"})
    spec.write_text(json.dumps(settings))
    specs = sorted(str(p) for p in (project / "job_specs").glob("*.json"))
    args = ["validate", "--notebooks-dir", str(project / "orchestrator_notebooks"),
            "--config", str(project / "deploy.yml"), *specs]  # fmt: skip
    assert main(args) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"{project / 'deploy.yml'}: target 'staging': diabetes_batch_scoring.json on serverless"
        " compute (environment version 5): task 'batch_score': library {'jar':"
        " '/Volumes/main/x/y.jar'} cannot go into a serverless environment (its dependencies take"
        " wheel paths and PyPI requirements)"
    )
