"""Permissions as code: a target's `permissions:` granted by every deploy on its jobs, serving
endpoint, experiment and registered model; only ever added, a re-deploy changes nothing, and a
principal that does not exist stops the deploy before any change (fake workspace, real SDK)."""

import json

import pytest

from diabetes_mlops.cli import main
from diabetes_mlops.jobs.targets import ConfigError, load_target

STAGING_MODEL = "main.diabetes_staging.diabetes"
PERMISSIONS = """    permissions:
      jobs: {CAN_VIEW: [group:data-scientists], CAN_MANAGE_RUN: ["group:ml-ops"]}
      experiment: {CAN_READ: [group:data-scientists]}
      serving_endpoint: {CAN_QUERY: [service_principal:6f1c2d3e-0000-4000-8000-000000000001]}
      model: {EXECUTE: [group:apps]}
"""


def with_permissions(project, text=PERMISSIONS):
    config = project / "deploy.yml"
    block = "  staging:\n"
    config.write_text(config.read_text().replace(block, block + text, 1))
    return config


def deploy(project, *extra):
    return main(["deploy", "--target", "staging", "--repo", str(project),
                 "--config", str(project / "deploy.yml"), *extra])  # fmt: skip


@pytest.fixture
def principals(fake_workspace):
    fake_workspace.principals["group"] |= {"data-scientists", "ml-ops", "apps"}
    fake_workspace.principals["service_principal"].add("6f1c2d3e-0000-4000-8000-000000000001")
    return fake_workspace


def acl(fake, kind, object_id):
    return fake.object_acls.get((kind, str(object_id)), {})


def permission_writes(fake):
    return [r for r in fake.requests if r.method == "PATCH" and "/permissions/" in r.path]


def test_deploy_grants_what_the_target_asks_and_a_redeploy_changes_nothing(
    principals, project, capsys
):
    fake = principals
    with_permissions(project)
    assert deploy(project) == 0
    out = capsys.readouterr().out
    for job_id in fake.jobs:
        assert acl(fake, "jobs", job_id) == {
            "group:data-scientists": "CAN_VIEW", "group:ml-ops": "CAN_MANAGE_RUN"
        }  # fmt: skip
    experiment_id = fake.experiments["/Shared/diabetes-mlops/staging/diabetes"]
    assert acl(fake, "experiments", experiment_id) == {"group:data-scientists": "CAN_READ"}
    assert (
        "permissions: job 'diabetes-model-training': CAN_MANAGE_RUN for group:ml-ops: granted"
    ) in out
    assert (  # the endpoint comes with the first champion, the model with the first training
        "permissions: serving endpoint 'diabetes-staging': CAN_QUERY for service_principal:"
        "6f1c2d3e-0000-4000-8000-000000000001: the first rollout creates it; granted by the next"
        " deploy" in out
    )
    assert f"permissions: model {STAGING_MODEL}: EXECUTE for group:apps: the first training" in out

    fake.requests.clear()
    assert deploy(project) == 0
    out = capsys.readouterr().out
    assert permission_writes(fake) == []
    assert len(fake.calls("GET", "/permissions/jobs/")) == 2  # each job's read once a deploy
    assert (
        "permissions: job 'diabetes-batch-scoring': CAN_VIEW for group:data-scientists: unchanged"
        in out
    )


def test_the_endpoint_and_the_model_are_granted_once_they_exist(principals, project, capsys):
    fake = principals
    with_permissions(project)
    fake.endpoints["diabetes-staging"] = {
        "name": "diabetes-staging", "config": None, "pending": None, "update": "NOT_UPDATING",
        "ai_gateway": None, "queries": 0,
        "tags": {"project": "diabetes-mlops", "target": "staging"},
    }  # fmt: skip
    fake.models[STAGING_MODEL] = {"full_name": STAGING_MODEL, "name": "diabetes"}
    assert deploy(project, "--plan") == 0
    assert "CAN_QUERY for service_principal:6f1c2d3e-0000-4000-8000-000000000001: to grant" in (
        capsys.readouterr().out
    )
    assert permission_writes(fake) == []  # the plan changes nothing
    assert deploy(project) == 0
    assert acl(fake, "serving-endpoints", "diabetes-staging-id") == {
        "service_principal:6f1c2d3e-0000-4000-8000-000000000001": "CAN_QUERY"
    }
    assert fake.grants[("function", STAGING_MODEL)] == {"apps": {"EXECUTE"}}


def test_a_permission_it_did_not_grant_is_never_removed_or_lowered(principals, project, capsys):
    fake = principals
    assert deploy(project) == 0  # no permissions yet
    job_id = next(iter(fake.jobs))
    fake.principals["user"].add("bob@example.com")
    fake.object_acls[("jobs", str(job_id))] = {
        "user:bob@example.com": "CAN_MANAGE", "group:data-scientists": "CAN_MANAGE"
    }  # fmt: skip
    with_permissions(project)
    assert deploy(project) == 0
    assert acl(fake, "jobs", job_id) == {
        "user:bob@example.com": "CAN_MANAGE",  # not in deploy.yml: kept
        "group:data-scientists": "CAN_MANAGE",  # asked CAN_VIEW: not lowered
        "group:ml-ops": "CAN_MANAGE_RUN",
    }
    assert "CAN_VIEW for group:data-scientists: unchanged (holds CAN_MANAGE)" in (
        capsys.readouterr().out
    )


def test_a_principal_that_does_not_exist_is_one_line_before_any_change(principals, project, capsys):
    with_permissions(project, PERMISSIONS.replace("group:apps", "group:nobody"))
    assert deploy(project) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: target 'staging': permissions name group:nobody, which does not exist in"
        f" {principals.url} (deploy.yml permissions:)"
    )
    writes = [r for r in principals.requests if r.method in ("POST", "PUT", "PATCH", "DELETE")]
    assert writes == [] and principals.jobs == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("    permissions: {clusters: {CAN_VIEW: [group:x]}}\n",
         "permissions: unknown object 'clusters'"),
        ("    permissions: {jobs: {IS_OWNER: [group:x]}}\n",
         "permissions.jobs: unknown level 'IS_OWNER' (known: CAN_VIEW, CAN_MANAGE_RUN,"
         " CAN_MANAGE)"),
        ("    permissions: {model: {EXECUTE: [apps]}}\n",
         "permissions.model.EXECUTE: 'apps' is not user:<name>, group:<name> or"
         " service_principal:<application id>"),
        ("    permissions: {jobs: {CAN_VIEW: group:x}}\n",
         "permissions.jobs.CAN_VIEW must be a list"),
        ("    permissions: {jobs: {CAN_MANAGE: [group:x], CAN_VIEW: [group:x]}}\n",
         "permissions.jobs: group:x is named at two levels; name it once, at the highest"),
    ],
)  # fmt: skip
def test_a_bad_permissions_entry_is_one_line_naming_the_target(project, text, message):
    config = with_permissions(project, text)
    with pytest.raises(ConfigError, match=rf"deploy.yml: target 'staging': {_escape(message)}"):
        load_target("staging", config)


def _escape(text):
    import re

    return re.escape(text)


def test_user_in_a_principal_is_the_deploying_user(principals, project):
    with_permissions(project, "    permissions: {jobs: {CAN_MANAGE: ['user:{user}']}}\n")
    assert deploy(project) == 0
    job_id = next(iter(principals.jobs))
    assert acl(principals, "jobs", job_id) == {"user:alice@example.com": "CAN_MANAGE"}


def test_json_of_the_plan_is_unchanged_by_permissions(principals, project, capsys):
    """deploy-plan prints each job's settings as before; permissions come as lines of their own."""
    with_permissions(project)
    assert deploy(project, "--plan") == 0
    out = capsys.readouterr().out
    start = out.index("{")
    json.loads(out[start : out.index("\n}", start) + 2])
