"""Where a target's jobs take their notebooks from (deploy.yml `source`): the workspace, or a git
repository at a commit, branch or tag through the job's `git_source`; and the rule on those
settings, judged before anything is deployed."""

from __future__ import annotations

SOURCES = ("workspace", "git")
GIT_REFS = ("commit", "branch", "tag")
# The Jobs API's git_provider values (databricks-sdk jobs.GitProvider).
PROVIDER_NAMES = (
    "gitHub",
    "gitHubEnterprise",
    "gitLab",
    "gitLabEnterpriseEdition",
    "bitbucketCloud",
    "bitbucketServer",
    "azureDevOpsServices",
    "awsCodeCommit",
)


def settings_problem(source: str, git_ref: str, git_provider: str | None) -> str | None:
    """What is wrong with a target's git settings (deploy.yml), in one line; None when fine."""
    for key, value, allowed in (
        ("source", source, SOURCES),
        ("git_ref", git_ref, GIT_REFS),
        ("git_provider", git_provider or PROVIDER_NAMES[0], PROVIDER_NAMES),
    ):
        if value not in allowed:
            return f"{key} must be one of {', '.join(allowed)}, got {value!r}"
    return None
