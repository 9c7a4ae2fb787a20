"""The CI pipeline files parse, call only make targets that exist, and take secrets from the CI."""

import re

import pytest
import yaml


def make_targets(repo) -> set[str]:
    text = (repo / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*):", text, flags=re.MULTILINE))


def pipeline_files(repo):
    return sorted((repo / ".github" / "workflows").glob("*.yml")) + [repo / "azure-pipelines.yml"]


def commands(node):
    """Every `run:` (GitHub) and `script:` (Azure) command in a parsed pipeline."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("run", "script") and isinstance(value, str):
                yield value
            else:
                yield from commands(value)
    elif isinstance(node, list):
        for item in node:
            yield from commands(item)


def env_values(node, name):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == name and isinstance(value, str):
                yield value
            else:
                yield from env_values(value, name)
    elif isinstance(node, list):
        for item in node:
            yield from env_values(item, name)


def test_there_are_github_and_azure_pipelines(repo):
    names = {p.name for p in pipeline_files(repo)}
    assert {"pull_request.yml", "main.yml", "release.yml", "azure-pipelines.yml"} <= names


@pytest.mark.parametrize(
    "name", ["pull_request.yml", "main.yml", "release.yml", "azure-pipelines.yml"]
)
def test_every_make_target_a_pipeline_calls_exists(repo, name):
    path = next(p for p in pipeline_files(repo) if p.name == name)
    pipeline = yaml.safe_load(path.read_text())
    called = {
        target
        for command in commands(pipeline)
        for target in re.findall(r"\bmake\s+([a-z][a-z0-9-]*)", command)
    }
    assert called, f"{name} calls no make target"
    assert called <= make_targets(repo), called - make_targets(repo)


def test_stages_do_what_the_issue_asks(repo):
    def called(name):
        path = next(p for p in pipeline_files(repo) if p.name == name)
        return " ; ".join(commands(yaml.safe_load(path.read_text())))

    pr, main, release, azure = (
        called(n) for n in ("pull_request.yml", "main.yml", "release.yml", "azure-pipelines.yml")
    )
    for target in ("make lint", "make test", "make validate", "make deploy-plan"):
        assert target in pr and target in azure
    assert "make deploy TARGET=staging" in main and "make integration-test TARGET=staging" in main
    assert "make deploy TARGET=prod" in release and "make deploy TARGET=prod" in azure


def test_tokens_come_from_the_ci_secret_store(repo):
    for path in pipeline_files(repo):
        tokens = list(env_values(yaml.safe_load(path.read_text()), "DATABRICKS_TOKEN"))
        assert tokens, path.name
        for value in tokens:
            assert re.fullmatch(r"\$\{\{ secrets\.[A-Z_]+ \}\}|\$\([A-Z_]+\)", value), value
