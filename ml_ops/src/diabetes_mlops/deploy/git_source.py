"""Git-source jobs: the jobs run the notebooks of one commit of the repository, checked out by
Databricks, instead of notebooks imported into the workspace (a target's `source: git`).

The Jobs API's `git_source` names the repository (`git_url`, `git_provider`) and one of
`git_branch`, `git_tag`, `git_commit`; a notebook task with `source: GIT` then takes a path
relative to the repository's root (databricks-sdk 0.156 `jobs.GitSource`, `jobs.NotebookTask`;
https://docs.databricks.com/aws/en/jobs/configure-task#git). Which one comes from the current
checkout (`git_ref`): `commit` (the default: the jobs run exactly what was validated and
deployed), `branch` (they follow the branch's head at each run) or `tag` (the tag on HEAD).

The notebooks the jobs will run are the committed ones, so a deploy refuses when the checkout's
notebooks differ from HEAD: what `make validate` checked would not be what runs.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from diabetes_mlops.jobs.sources import GIT_REFS, PROVIDER_NAMES, settings_problem
from diabetes_mlops.jobs.specs import NOTEBOOKS_FOLDER, notebook_name
from diabetes_mlops.runtime.errors import UserError

# Host -> the Jobs API's git_provider (jobs.GitProvider); other hosts need `git_provider`. Their
# ssh remotes (git@host:org/repo) have the same path over https; other hosts' do not (Azure
# DevOps: ssh.dev.azure.com:v3/org/project/repo vs dev.azure.com/org/project/_git/repo;
# Bitbucket Server adds /scm/), so those need `git_url`.
PROVIDERS = {
    "github.com": "gitHub",
    "gitlab.com": "gitLab",
    "bitbucket.org": "bitbucketCloud",
    "dev.azure.com": "azureDevOpsServices",
}
_SCP_LIKE = re.compile(r"^(?:[\w.-]+@)?([\w.-]+):(?!//)(.+)$")  # git@github.com:org/repo.git


class GitSourceError(UserError, ValueError):
    """The checkout cannot give the jobs a git source; the message is one line."""


@dataclass(frozen=True)
class GitSource:
    url: str
    provider: str
    ref_kind: str  # commit, branch or tag
    ref: str
    # Notebook paths in the repository: the project may sit in a folder of a larger repository.
    folder: str = NOTEBOOKS_FOLDER
    # HEAD is on a remote-tracking branch (what the local refs know: nothing is fetched). When
    # not, the jobs would fail to check the commit out until it is pushed: the deploy warns.
    pushed: bool = field(default=True, compare=False)

    def settings(self) -> dict[str, str]:
        """The job's `git_source` field."""
        return {
            "git_url": self.url,
            "git_provider": self.provider,
            f"git_{self.ref_kind}": self.ref,
        }


def https_url(remote: str) -> str:
    """The remote as the https URL Databricks clones: ssh and scp-like forms rewritten, and any
    user or password in it dropped (a token in a remote URL must never reach a job's settings)."""
    text = remote.strip()
    scp = _SCP_LIKE.match(text)
    if scp and "://" not in text:
        host, path = scp.groups()
        text = f"ssh://{host}/{path}"
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http", "ssh", "git") or not parts.hostname:
        raise GitSourceError(f"git remote {_without_credentials(remote)!r} is not a URL of a host")
    if parts.scheme != "https" and parts.hostname not in PROVIDERS:
        raise GitSourceError(
            f"git remote {_without_credentials(remote)!r} is not https and its https URL cannot"
            " be told from it: set git_url (the https URL Databricks clones) in deploy.yml"
        )
    host = parts.hostname + (f":{parts.port}" if parts.port and parts.scheme == "https" else "")
    return urlunsplit(("https", host, parts.path, "", ""))


def provider_for(url: str, given: str | None) -> str:
    """`given` (deploy.yml's git_provider) or the provider known from the URL's host."""
    if given:
        problem = settings_problem("git", GIT_REFS[0], given)
        if problem:
            raise GitSourceError(problem)
        return given
    host = urlsplit(url).hostname or ""
    if host in PROVIDERS:
        return PROVIDERS[host]
    if host.endswith(".visualstudio.com"):
        return "azureDevOpsServices"
    raise GitSourceError(
        f"cannot tell the git provider of {url} from its host: set git_provider in deploy.yml"
        f" (one of {', '.join(PROVIDER_NAMES)})"
    )


def from_checkout(
    repo: Path, ref_kind: str = "commit", url: str | None = None, provider: str | None = None
) -> GitSource:
    """The git source of the checkout at `repo`: its `origin` remote (or `url`), and the commit,
    branch or tag of HEAD. Refuses when the notebooks differ from HEAD."""
    problem = settings_problem("git", ref_kind, provider)
    if problem:
        raise GitSourceError(problem)
    remote = url or _git(repo, "remote", "get-url", "origin", what="the remote 'origin'")
    clone_url = https_url(remote)
    changed = _git(
        repo, "status", "--porcelain", "--", NOTEBOOKS_FOLDER, what="the status", empty=True
    )
    if changed:
        first = changed.splitlines()[0].strip()
        raise GitSourceError(
            f"{NOTEBOOKS_FOLDER}/ differs from the commit the jobs would run ({first}"
            f"{', ...' if len(changed.splitlines()) > 1 else ''}): commit it, then deploy"
        )
    folder = _git(repo, "rev-parse", "--show-prefix", what="its folder", empty=True)
    pushed = bool(_git(repo, "branch", "-r", "--contains", "HEAD", what="branches", empty=True))
    if ref_kind == "commit":
        ref = _git(repo, "rev-parse", "HEAD", what="HEAD's commit")
    elif ref_kind == "branch":
        ref = _git(repo, "symbolic-ref", "--short", "-q", "HEAD", what="the current branch")
    else:
        ref = _git(repo, "describe", "--exact-match", "--tags", "HEAD", what="a tag on HEAD")
    notebooks = f"{folder}{NOTEBOOKS_FOLDER}"
    return GitSource(clone_url, provider_for(clone_url, provider), ref_kind, ref, notebooks, pushed)


def with_git_source(settings: Mapping[str, Any], source: GitSource) -> dict[str, Any]:
    """The job's settings running its notebooks from `source`: `git_source` set, every notebook
    task `source: GIT` with its path relative to the repository."""
    resolved = {**settings, "git_source": source.settings()}
    tasks = []
    for task in settings.get("tasks", []):
        notebook = task.get("notebook_task")
        if notebook:
            name = notebook_name(notebook["notebook_path"])
            notebook = {**notebook, "notebook_path": f"{source.folder}/{name}", "source": "GIT"}
            task = {**task, "notebook_task": notebook}
        tasks.append(task)
    resolved["tasks"] = tasks
    return resolved


def _git(repo: Path, *args: str, what: str, empty: bool = False) -> str:
    """git's output in `repo`; GitSourceError when it fails, or prints nothing unless `empty`."""
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitSourceError(f"cannot run git in {repo}: {exc}") from None
    if done.returncode != 0 or (not done.stdout.strip() and not empty):
        detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise GitSourceError(f"source: git needs {what} of the checkout {repo}: {detail}")
    return done.stdout.strip()


def _without_credentials(remote: str) -> str:
    parts = urlsplit(remote)
    if parts.password or parts.username:
        host = parts.hostname or ""
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    return remote
