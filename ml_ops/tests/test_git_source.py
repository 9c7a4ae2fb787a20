"""source: git — the jobs run the notebooks of one commit, taken from the current checkout."""

import subprocess

import pytest

from diabetes_mlops.deploy.git_source import (
    GitSource,
    GitSourceError,
    from_checkout,
    https_url,
    provider_for,
    with_git_source,
)


@pytest.mark.parametrize(
    "remote, url",
    [
        (
            "https://github.com/acme/diabetes-mlops.git",
            "https://github.com/acme/diabetes-mlops.git",
        ),
        ("git@github.com:acme/diabetes-mlops.git", "https://github.com/acme/diabetes-mlops.git"),
        ("ssh://git@gitlab.com/acme/ml.git", "https://gitlab.com/acme/ml.git"),
        ("https://x-token:ghp_SECRET@github.com/acme/ml", "https://github.com/acme/ml"),
        ("https://dev.azure.com/acme/proj/_git/ml", "https://dev.azure.com/acme/proj/_git/ml"),
    ],
)
def test_remotes_become_https_urls_without_credentials(remote, url):
    assert https_url(remote) == url


def test_a_remote_that_is_no_url_is_one_line_without_its_secret():
    with pytest.raises(GitSourceError) as info:
        https_url("/srv/git/ml.git")
    assert "not a URL of a host" in str(info.value)
    with pytest.raises(GitSourceError) as info:
        https_url("ftp://user:hunter2@example.com/x")
    assert "hunter2" not in str(info.value)


def test_providers_come_from_the_host_or_deploy_yml():
    assert provider_for("https://github.com/a/b", None) == "gitHub"
    assert provider_for("https://acme.visualstudio.com/p/_git/r", None) == "azureDevOpsServices"
    assert provider_for("https://git.acme.com/a/b", "gitHubEnterprise") == "gitHubEnterprise"
    with pytest.raises(GitSourceError, match="set git_provider in deploy.yml"):
        provider_for("https://git.acme.com/a/b", None)
    with pytest.raises(GitSourceError, match="git_provider must be one of"):
        provider_for("https://github.com/a/b", "github")


def git(repo, *args):
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def checkout(tmp_path):
    repo = tmp_path / "repo"
    (repo / "orchestrator_notebooks").mkdir(parents=True)
    (repo / "orchestrator_notebooks" / "nb.py").write_text("# Databricks notebook source\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "ci@example.com")
    git(repo, "config", "user.name", "ci")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    git(repo, "remote", "add", "origin", "git@github.com:acme/diabetes-mlops.git")
    return repo


def test_the_commit_branch_or_tag_of_head(checkout):
    head = git(checkout, "rev-parse", "HEAD")
    url = "https://github.com/acme/diabetes-mlops.git"
    assert from_checkout(checkout) == GitSource(url, "gitHub", "commit", head)
    assert from_checkout(checkout, "branch").ref == "main"
    with pytest.raises(GitSourceError, match="needs a tag on HEAD"):
        from_checkout(checkout, "tag")
    git(checkout, "tag", "v1.2.0")
    assert from_checkout(checkout, "tag").settings() == {
        "git_url": url,
        "git_provider": "gitHub",
        "git_tag": "v1.2.0",
    }
    with pytest.raises(GitSourceError, match="git_ref must be one of"):
        from_checkout(checkout, "sha")


def test_notebooks_that_differ_from_the_commit_are_refused(checkout):
    (checkout / "orchestrator_notebooks" / "nb.py").write_text("# changed\n")
    with pytest.raises(GitSourceError, match="orchestrator_notebooks/ differs from the commit"):
        from_checkout(checkout)
    git(checkout, "checkout", "--", ".")
    (checkout / "other.txt").write_text("not a notebook: no matter")
    assert from_checkout(checkout).ref_kind == "commit"


def test_a_checkout_without_origin_is_one_line(checkout):
    git(checkout, "remote", "remove", "origin")
    with pytest.raises(GitSourceError, match="needs the remote 'origin'"):
        from_checkout(checkout)
    given = from_checkout(checkout, url="https://gitlab.com/acme/ml.git")
    assert (given.url, given.provider) == ("https://gitlab.com/acme/ml.git", "gitLab")


def test_notebook_tasks_run_from_git():
    settings = {
        "name": "job",
        "tasks": [
            {
                "task_key": "train",
                "notebook_task": {
                    "notebook_path": "/Workspace/Shared/x/notebooks/diabetes_orchestrator_train",
                    "source": "WORKSPACE",
                    "base_parameters": {"a": "1"},
                },
            },
            {"task_key": "gate", "condition_task": {"op": "EQUAL_TO", "left": "a", "right": "b"}},
        ],
    }
    source = GitSource("https://github.com/a/b", "gitHub", "commit", "abc123")
    resolved = with_git_source(settings, source)
    assert resolved["git_source"] == {
        "git_url": "https://github.com/a/b",
        "git_provider": "gitHub",
        "git_commit": "abc123",
    }
    assert resolved["tasks"][0]["notebook_task"] == {
        "notebook_path": "orchestrator_notebooks/diabetes_orchestrator_train",
        "source": "GIT",
        "base_parameters": {"a": "1"},
    }
    assert resolved["tasks"][1] == settings["tasks"][1]
    assert settings["tasks"][0]["notebook_task"]["source"] == "WORKSPACE"  # not changed in place
