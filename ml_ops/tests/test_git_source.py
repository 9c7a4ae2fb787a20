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


@pytest.mark.parametrize(
    "remote",
    [
        "git@ssh.dev.azure.com:v3/acme/proj/ml",  # https: dev.azure.com/acme/proj/_git/ml
        "ssh://git@bitbucket.acme.com:7999/proj/ml.git",  # Bitbucket Server: https adds /scm/
    ],
)
def test_ssh_remotes_of_other_hosts_need_git_url(remote):
    with pytest.raises(GitSourceError, match="set git_url"):
        https_url(remote)


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


def committed(repo, origin):
    """`repo`'s files as the first commit of branch main, with remote `origin`."""
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "ci@example.com")
    git(repo, "config", "user.name", "ci")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    git(repo, "remote", "add", "origin", origin)
    return repo


@pytest.fixture
def checkout(tmp_path):
    repo = tmp_path / "repo"
    (repo / "orchestrator_notebooks").mkdir(parents=True)
    (repo / "orchestrator_notebooks" / "nb.py").write_text("# Databricks notebook source\n")
    return committed(repo, "git@github.com:acme/diabetes-mlops.git")


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


def test_a_project_in_a_folder_of_the_repository_and_an_unpushed_commit(tmp_path):
    monorepo = tmp_path / "mono"
    (monorepo / "ml" / "orchestrator_notebooks").mkdir(parents=True)
    (monorepo / "ml" / "orchestrator_notebooks" / "nb.py").write_text("# notebook\n")
    committed(monorepo, "https://github.com/acme/mono.git")
    source = from_checkout(monorepo / "ml")
    assert source.folder == "ml/orchestrator_notebooks" and not source.pushed
    settings = {"tasks": [{"task_key": "t", "notebook_task": {"notebook_path": "/x/nb"}}]}
    task = with_git_source(settings, source)["tasks"][0]["notebook_task"]
    assert task["notebook_path"] == "ml/orchestrator_notebooks/nb"
    git(monorepo, "update-ref", "refs/remotes/origin/main", "HEAD")  # as after a push
    assert from_checkout(monorepo / "ml").pushed


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


def deploy(project, *extra):
    from diabetes_mlops.cli import main

    return main(["deploy", "--target", "staging", "--repo", str(project),
                 "--config", str(project / "deploy.yml"), *extra])  # fmt: skip


@pytest.fixture
def git_project(project):
    """The deployable project as a checkout of github.com/acme/diabetes-mlops, staging from git."""
    config = project / "deploy.yml"
    config.write_text(
        config.read_text().replace(
            "  staging:\n", "  staging:\n    source: git\n    git_ref: commit\n", 1
        )
    )
    return committed(project, "https://github.com/acme/diabetes-mlops.git")


def test_git_source_jobs_run_the_commits_notebooks_and_nothing_is_imported(
    fake_workspace, git_project, capsys
):
    head = git(git_project, "rev-parse", "HEAD")
    assert deploy(git_project, "--plan") == 0
    assert "is on no remote branch this checkout knows" in capsys.readouterr().out
    git(git_project, "update-ref", "refs/remotes/origin/main", "HEAD")  # pushed
    assert deploy(git_project, "--plan") == 0
    plan = capsys.readouterr().out
    assert "warning" not in plan
    assert '"git_commit": "' + head + '"' in plan and "notebook " not in plan
    assert deploy(git_project) == 0
    jobs = {j["settings"]["name"]: j["settings"] for j in fake_workspace.jobs.values()}
    for settings in jobs.values():
        assert settings["git_source"] == {
            "git_url": "https://github.com/acme/diabetes-mlops.git",
            "git_provider": "gitHub",
            "git_commit": head,
        }
        for task in settings["tasks"]:
            if "notebook_task" in task:
                notebook = task["notebook_task"]
                assert notebook["source"] == "GIT"
                assert notebook["notebook_path"].startswith("orchestrator_notebooks/diabetes_")
    assert fake_workspace.calls("POST", "/api/2.0/workspace/import") == []
    assert len(fake_workspace.files) == 2  # the wheels still go to the wheel volume
    capsys.readouterr()
    fake_workspace.requests.clear()
    assert deploy(git_project) == 0  # the same commit again: nothing to do
    assert "uploaded 0 file(s), 0 bytes" in capsys.readouterr().out
    assert fake_workspace.calls("POST", "/jobs/reset") == []


def test_uncommitted_notebooks_stop_a_git_deploy_before_any_change(
    fake_workspace, git_project, capsys
):
    notebook = git_project / "orchestrator_notebooks" / "diabetes_orchestrator_train.py"
    notebook.write_text(notebook.read_text() + "\n# an edit not committed\n")
    assert deploy(git_project) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "orchestrator_notebooks/ differs from the commit" in err[0]
    assert fake_workspace.jobs == {} and fake_workspace.files == {}


def test_bad_git_settings_in_deploy_yml_are_one_line(tmp_path, repo):
    from diabetes_mlops.jobs.targets import ConfigError, load_target

    config = tmp_path / "deploy.yml"
    for line, message in (
        ("    source: svn\n", "source must be one of workspace, git, got 'svn'"),
        ("    git_ref: sha\n", "git_ref must be one of commit, branch, tag"),
        ("    git_provider: github\n", "git_provider must be one of gitHub"),
    ):
        text = (repo / "deploy.yml").read_text()
        config.write_text(text.replace("  staging:\n", "  staging:\n" + line, 1))
        with pytest.raises(ConfigError, match=message):
            load_target("staging", config)
