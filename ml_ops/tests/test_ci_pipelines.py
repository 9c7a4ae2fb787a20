"""The CI pipelines and what they rely on.

The pipeline files parse, call only make targets that exist, take secrets from the CI, use the
current major of each GitHub action, deploy once per job, and plan on Azure only where secrets
exist. The deploy jobs can authenticate keyless (GitHub OIDC workload identity federation): the
workflows' own env expressions are evaluated and fed to a real deploy and run against the fake
workspace, which exchanges the GitHub ID token as Databricks does. Also here: the job specs'
notification_settings, and the Apache-2.0 LICENSE the wheels declare and ship.
"""

import json
import logging
import re
import shlex
import subprocess
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from fake_workspace import POLL_SECONDS, FakeWorkspace

from diabetes_mlops.cli import main
from diabetes_mlops.deploy.workspace import connect
from diabetes_mlops.jobs.specs import SpecError, check_spec
from diabetes_mlops.jobs.targets import load_target

# The current major of every action the workflows use; each runs on Node 24 (GitHub removes
# Node 20 from its runners on 2026-09-16).
CURRENT_MAJORS = {
    "actions/checkout": 7,  # https://github.com/actions/checkout/releases/tag/v7.0.0
    "actions/setup-python": 7,  # https://github.com/actions/setup-python/releases/tag/v7.0.0
    "actions/setup-java": 6,  # https://github.com/actions/setup-java/releases/tag/v6.0.0
}
# The make targets that talk to a workspace (and so need credentials).
WORKSPACE_TARGETS = re.compile(
    r"\bmake\s+(deploy|deploy-plan|databricks-init|integration-test|run-)"
)
DEPLOY_LINE = re.compile(r"diabetes-mlops deploy --target \S+ --dist \S+$")
RUN_LINE = re.compile(r"diabetes-mlops run --target \S+ (\S+)")


def make_targets(repo) -> set[str]:
    text = (repo / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*):", text, flags=re.MULTILINE))


def pipeline_files(repo):
    return sorted((repo / ".github" / "workflows").glob("*.yml")) + [repo / "azure-pipelines.yml"]


def workflows(repo):
    return [(p.name, yaml.safe_load(p.read_text())) for p in pipeline_files(repo)[:-1]]


def azure(repo):
    return yaml.safe_load((repo / "azure-pipelines.yml").read_text())


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


def ci_jobs(repo):
    """(file, job name, job) for every GitHub job and every Azure job or deployment."""
    for name, workflow in workflows(repo):
        for key, job in workflow["jobs"].items():
            yield name, key, job
    for stage in azure(repo)["stages"]:
        for job in stage["jobs"]:
            yield "azure-pipelines.yml", job.get("job") or job.get("deployment"), job


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


def test_each_pipeline_runs_its_stages_make_targets(repo):
    def called(name):
        path = next(p for p in pipeline_files(repo) if p.name == name)
        return " ; ".join(commands(yaml.safe_load(path.read_text())))

    pr, main_, release, azure_ = (
        called(n) for n in ("pull_request.yml", "main.yml", "release.yml", "azure-pipelines.yml")
    )
    for target in ("make lint", "make test", "make validate", "make deploy-plan"):
        assert target in pr and target in azure_
    # integration-test deploys staging, then runs both jobs (see the deploy-once test below).
    assert "make integration-test TARGET=staging" in main_
    assert "make integration-test TARGET=staging" in azure_
    assert "make deploy TARGET=prod" in release and "make deploy TARGET=prod" in azure_


def test_tokens_come_from_the_ci_secret_store(repo):
    for name, workflow in workflows(repo):
        tokens = list(env_values(workflow, "DATABRICKS_TOKEN"))
        assert tokens, name
        for value in tokens:  # no literal, and no other secret than the token
            assert re.fullmatch(r"\$\{\{ .* \}\}", value), value
            assert re.findall(r"secrets\.(\w+)", value) == ["DATABRICKS_TOKEN"], value
            resolved = github_expression(value, {}, {"DATABRICKS_TOKEN": "dapi-x"})
            assert resolved == "dapi-x", value
    for value in env_values(azure(repo), "DATABRICKS_TOKEN"):
        assert value == "$(DATABRICKS_TOKEN)", value


# --- GitHub actions: current majors ----------------------------------------------------------
def test_workflows_use_the_current_major_of_each_action(repo):
    for name, workflow in workflows(repo):
        for uses in env_values(workflow, "uses"):
            action, _, ref = uses.partition("@")
            assert action in CURRENT_MAJORS, f"{name}: {uses}: add its current major here"
            major = re.fullmatch(r"v(\d+)(\.\d+)*", ref)
            assert major, f"{name}: {uses}: pin a major version tag (vN)"
            assert int(major.group(1)) >= CURRENT_MAJORS[action], f"{name}: {uses} is outdated"


# --- keyless auth: the workflows --------------------------------------------------------------
def github_expression(value: str, variables: dict, secrets: dict) -> str:
    """A workflow value with its ${{ }} expression evaluated as GitHub does for the subset used
    here: vars.X / secrets.X (unset: ''), 'literals', !, && and || (which return an operand,
    '' being false): https://docs.github.com/en/actions/reference/workflows-and-actions/expressions
    """
    match = re.fullmatch(r"\$\{\{ (.*) \}\}", value)
    if not match:
        return value
    tokens = re.findall(r"'[^']*'|&&|\|\||!|[\w.]+", match.group(1))
    position = 0

    def operand():
        nonlocal position
        token = tokens[position]
        position += 1
        if token == "!":
            return not operand()
        if token.startswith("'"):
            return token[1:-1]
        context, _, name = token.partition(".")
        return {"vars": variables, "secrets": secrets}[context].get(name, "")

    def binary(operator, inner):
        nonlocal position
        result = inner()
        while position < len(tokens) and tokens[position] == operator:
            position += 1
            right = inner()
            result = (right if result else result) if operator == "&&" else (result or right)
        return result

    result = binary("||", lambda: binary("&&", operand))
    assert position == len(tokens), value
    return result


def workspace_steps(repo):
    """(file, job name, job, step env) for each GitHub step that talks to a workspace."""
    for name, workflow in workflows(repo):
        for key, job in workflow["jobs"].items():
            for step in job["steps"]:
                if WORKSPACE_TARGETS.search(step.get("run", "")):
                    yield name, key, job, {**job.get("env", {}), **step.get("env", {})}


def resolved_env(env: dict, variables: dict, secrets: dict) -> dict:
    """The DATABRICKS_* variables a step gets, as GitHub sets them (unset when empty)."""
    values = {k: github_expression(v, variables, secrets) for k, v in env.items()}
    return {k: v for k, v in values.items() if k.startswith("DATABRICKS_") and v}


def test_only_the_jobs_that_reach_a_workspace_may_request_an_oidc_token(repo):
    reaching = {(name, key) for name, key, _, _ in workspace_steps(repo)}
    assert {n for n, _ in reaching} == {"main.yml", "pull_request.yml", "release.yml"}
    for name, workflow in workflows(repo):
        assert workflow["permissions"] == {"contents": "read"}, name  # the default for any job
        for key, job in workflow["jobs"].items():
            permissions = job.get("permissions", workflow["permissions"])
            if (name, key) in reaching:  # a job's permissions replace the workflow's
                assert permissions == {"id-token": "write", "contents": "read"}, (name, key)
            else:
                assert "id-token" not in permissions, (name, key)


def test_with_a_client_id_variable_no_long_lived_token_reaches_the_job(repo):
    variables = {"DATABRICKS_CLIENT_ID": "sp-app-id", "DATABRICKS_HOST": "https://w.example"}
    secrets = {"DATABRICKS_TOKEN": "dapi-long-lived"}
    for name, key, _, env in workspace_steps(repo):
        assert resolved_env(env, variables, secrets) == {
            "DATABRICKS_HOST": "https://w.example",
            "DATABRICKS_AUTH_TYPE": "github-oidc",
            "DATABRICKS_CLIENT_ID": "sp-app-id",
        }, (name, key)


def test_without_it_the_token_secret_is_the_fallback(repo):
    secrets = {"DATABRICKS_HOST": "https://w.example", "DATABRICKS_TOKEN": "dapi-long-lived"}
    for name, key, _, env in workspace_steps(repo):
        assert resolved_env(env, {}, secrets) == secrets, (name, key)


# --- keyless auth: deploy and run against the fake workspace ------------------------------------
CLIENT_ID = "6d0c8a3e-sp-application-id"
REQUEST_TOKEN = "gh-request-token-5f1e"  # what GitHub gives a job with id-token: write
ID_TOKEN = "eyJ.github-id-token.sig"  # the JWT GitHub's token endpoint answers with


def _reply(handler: BaseHTTPRequestHandler, status: int, payload: dict) -> None:
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class FederatedWorkspace(FakeWorkspace):
    """The fake workspace plus what a real one publishes for token federation: host metadata
    (/.well-known/databricks-config: its OIDC endpoint and default token audience, the account),
    the OIDC discovery document, and the token endpoint, which exchanges the ID token of the
    trusted service principal (its federation policy) for the bearer token the fake accepts."""

    account_id = "0d26daa6-account"

    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[dict[str, list[str]]] = []

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        path = urlparse(handler.path).path
        if path == "/.well-known/databricks-config":
            metadata = {
                "oidc_endpoint": f"{self.url}/oidc",
                "workspace_id": "1234567890",
                "token_federation_default_oidc_audiences": [self.account_id],
            }
            return _reply(handler, 200, metadata)
        if path == "/oidc/.well-known/oauth-authorization-server":
            endpoints = {
                "authorization_endpoint": f"{self.url}/oidc/v1/authorize",
                "token_endpoint": f"{self.url}/oidc/v1/token",
            }
            return _reply(handler, 200, endpoints)
        if path == "/oidc/v1/token":
            length = int(handler.headers.get("Content-Length") or 0)
            form = parse_qs(handler.rfile.read(length).decode())
            self.exchanges.append(form)
            trusted = (
                form.get("grant_type") == ["urn:ietf:params:oauth:grant-type:token-exchange"]
                and form.get("subject_token") == [ID_TOKEN]
                and form.get("client_id") == [CLIENT_ID]
            )
            if not trusted:
                return _reply(handler, 401, {"error": "invalid_client"})
            return _reply(
                handler,
                200,
                {"access_token": self.token, "token_type": "Bearer", "expires_in": 3600},
            )
        return super()._handle(handler)


@pytest.fixture
def github_id_tokens():
    """GitHub's ID token endpoint on loopback: the ACTIONS_ID_TOKEN_REQUEST_* variables GitHub sets
    in a job with id-token: write, and the audiences asked for."""
    audiences: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            audiences.extend(parse_qs(urlparse(self.path).query).get("audience", []))
            if self.headers.get("Authorization") != f"Bearer {REQUEST_TOKEN}":
                return _reply(self, 401, {"message": "bad request token"})
            return _reply(self, 200, {"value": ID_TOKEN})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": POLL_SECONDS}, daemon=True
    ).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/token?api-version=2.0"
    yield {"ACTIONS_ID_TOKEN_REQUEST_URL": url, "ACTIONS_ID_TOKEN_REQUEST_TOKEN": REQUEST_TOKEN}, (
        audiences
    )
    server.shutdown()
    server.server_close()


@pytest.fixture
def federated_workspace():
    fake = FederatedWorkspace().start()
    yield fake
    fake.stop()


def staging_step_env(repo, variables: dict, secrets: dict) -> dict:
    """What main.yml's staging job gives `make integration-test`."""
    steps = [
        (n, k, env) for n, k, _, env in workspace_steps(repo) if (n, k) == ("main.yml", "staging")
    ]
    assert len(steps) == 1
    return resolved_env(steps[0][2], variables, secrets)


def test_github_oidc_deploys_and_runs_with_no_long_lived_token(
    repo, project, federated_workspace, github_id_tokens, monkeypatch, capsys, caplog
):
    fake = federated_workspace
    id_token_request, audiences = github_id_tokens
    env = staging_step_env(
        repo, {"DATABRICKS_CLIENT_ID": CLIENT_ID, "DATABRICKS_HOST": fake.url}, {}
    )
    assert "DATABRICKS_TOKEN" not in env
    for key, value in {**env, **id_token_request}.items():
        monkeypatch.setenv(key, value)
    caplog.set_level(logging.DEBUG)

    assert connect(load_target("staging")).config.auth_type == "github-oidc"
    config = ["--target", "staging", "--config", str(project / "deploy.yml")]
    assert main(["deploy", *config, "--repo", str(project)]) == 0
    assert main(["run", *config, "--poll-seconds", "0", "diabetes-batch-scoring"]) == 0

    out, err = capsys.readouterr()
    assert "SUCCESS" in out and len(fake.jobs) == 2
    # GitHub's ID token, asked for the audience the workspace names, exchanged as the SP's.
    assert audiences and set(audiences) == {fake.account_id}
    assert fake.exchanges and all(e["client_id"] == [CLIENT_ID] for e in fake.exchanges)
    api = [r for r in fake.requests if not r.path.startswith(("/oidc/", "/.well-known/"))]
    assert api and all(r.headers["Authorization"] == f"Bearer {fake.token}" for r in api)
    assert "Configured GitHub OIDC authentication" in caplog.text  # the SDK's log was captured
    for secret in (REQUEST_TOKEN, ID_TOKEN, fake.token):
        assert secret not in out + err + caplog.text
        assert all(secret not in r.text() for r in api)


def test_the_token_secret_still_works_when_no_client_id_is_set(repo, monkeypatch):
    fake = FakeWorkspace().start()
    try:
        secrets = {"DATABRICKS_HOST": fake.url, "DATABRICKS_TOKEN": fake.token}
        for key, value in staging_step_env(repo, {}, secrets).items():
            monkeypatch.setenv(key, value)
        client = connect(load_target("staging"))
        assert client.config.auth_type == "pat"
        assert client.current_user.me().user_name == fake.user
    finally:
        fake.stop()


@pytest.mark.parametrize(
    "change, named",
    [
        ({"ACTIONS_ID_TOKEN_REQUEST_URL": None}, "`permissions: id-token: write`"),
        ({"DATABRICKS_CLIENT_ID": None}, "needs DATABRICKS_CLIENT_ID"),
        # A service principal whose federation policy does not trust this workflow's token.
        ({"DATABRICKS_CLIENT_ID": "another-sp"}, "federation policy (issuer, subject, audience)"),
    ],
)
def test_github_oidc_that_cannot_authenticate_says_why_in_one_line(
    federated_workspace, github_id_tokens, monkeypatch, capsys, change, named
):
    env = {"DATABRICKS_HOST": federated_workspace.url, "DATABRICKS_AUTH_TYPE": "github-oidc",
           "DATABRICKS_CLIENT_ID": CLIENT_ID, **github_id_tokens[0], **change}  # fmt: skip
    for key, value in env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    assert main(["deploy", "--target", "staging"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err and "DATABRICKS_TOKEN" not in err
    assert REQUEST_TOKEN not in err and ID_TOKEN not in err
    assert not [r for r in federated_workspace.requests if r.path.startswith("/api/")]


# --- Azure: no plan for forks ------------------------------------------------------------------
def azure_condition(condition: str, variables: dict, succeeded: bool = True) -> bool:
    """An Azure Pipelines condition evaluated for the functions used here (and, or, not, eq and
    ne, which compare strings ignoring case, succeeded): https://learn.microsoft.com/en-us/azure/
    devops/pipelines/process/expressions"""
    tokens = re.findall(r"'[^']*'|[\w.]+|[()\[\],]", condition)
    position = 0

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def value():
        token = take()
        if token.startswith("'"):
            return token[1:-1]
        if token == "variables":
            assert take() == "["
            name = take()[1:-1]
            assert take() == "]"
            return variables.get(name, "")
        assert take() == "(", condition
        args = []
        while tokens[position] != ")":
            args.append(value())
            if tokens[position] == ",":
                take()
        take()
        functions = {
            "and": lambda a: all(a),
            "or": lambda a: any(a),
            "not": lambda a: not a[0],
            "eq": lambda a: str(a[0]).lower() == str(a[1]).lower(),
            "ne": lambda a: str(a[0]).lower() != str(a[1]).lower(),
            "succeeded": lambda a: succeeded,
        }
        return functions[token.lower()](args)

    result = value()
    assert position == len(tokens), condition
    return bool(result)


def test_azure_plans_pull_requests_except_from_forks_which_get_no_secrets(repo):
    (step,) = [
        s for s in azure(repo)["stages"][0]["jobs"][0]["steps"]
        if "make deploy-plan" in s.get("script", "")
    ]  # fmt: skip
    condition = step["condition"]
    pr = {"Build.Reason": "PullRequest", "System.PullRequest.IsFork": "False"}
    assert azure_condition(condition, pr)
    assert not azure_condition(condition, {**pr, "System.PullRequest.IsFork": "True"})
    assert not azure_condition(condition, {**pr, "Build.Reason": "IndividualCI"})
    assert not azure_condition(condition, pr, succeeded=False)


# --- integration-test deploys once -------------------------------------------------------------
def dry_run(repo, command_lines: list[str]) -> list[str]:
    """What the make commands of one CI job would execute, in order (make -n: nothing runs)."""
    executed = []
    for line in command_lines:
        for command in line.split("&&"):
            args = shlex.split(command)
            if args[:1] != ["make"]:
                continue
            done = subprocess.run(["make", "-n", "--no-print-directory", *args[1:]], cwd=repo,
                                  capture_output=True, text=True, check=True)  # fmt: skip
            executed += done.stdout.splitlines()
    return executed


def deploys(lines: list[str]) -> int:
    return sum(bool(DEPLOY_LINE.search(line)) for line in lines)


def test_no_ci_job_deploys_twice_and_the_integration_test_runs_what_it_deployed(repo):
    twice = ["make deploy TARGET=staging", "make integration-test TARGET=staging"]
    assert deploys(dry_run(repo, twice)) == 2  # what the pipelines did, which this test catches
    integration_jobs = 0
    for name, key, job in ci_jobs(repo):
        lines = dry_run(repo, list(commands(job)))
        assert deploys(lines) <= 1, f"{name}: job {key} deploys {deploys(lines)} times"
        runs = [i for i, line in enumerate(lines) if RUN_LINE.search(line)]
        if runs:
            integration_jobs += 1
            deploy = next(i for i, line in enumerate(lines) if DEPLOY_LINE.search(line))
            assert deploy < min(runs), f"{name}: job {key} runs jobs before deploying them"
            ran = {RUN_LINE.search(lines[i]).group(1) for i in runs}
            assert ran == {"diabetes-model-training", "diabetes-batch-scoring"}, (name, key)
    assert integration_jobs == 2  # main.yml and Azure's staging deployment


# --- job specs: notification_settings ------------------------------------------------------------
def test_specs_use_notification_settings_not_the_deprecated_email_field(repo):
    for path in sorted((repo / "job_specs").glob("*.json")):
        settings = check_spec(path, repo / "orchestrator_notebooks").settings
        assert settings["notification_settings"] == {"no_alert_for_skipped_runs": True}, path
        assert "no_alert_for_skipped_runs" not in settings["email_notifications"], path


def test_the_deprecated_field_is_refused_with_one_line_naming_it(repo, tmp_path):
    settings = json.loads((repo / "job_specs" / "diabetes_batch_scoring.json").read_text())
    settings["email_notifications"]["no_alert_for_skipped_runs"] = True
    settings["tasks"][0]["email_notifications"] = {"no_alert_for_skipped_runs": False}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(settings))
    with pytest.raises(SpecError) as raised:
        check_spec(spec, repo / "orchestrator_notebooks")
    task = settings["tasks"][0]["task_key"]
    assert raised.value.problems == [
        f"{spec}: field 'email_notifications.no_alert_for_skipped_runs' is deprecated: use"
        " 'notification_settings.no_alert_for_skipped_runs'",
        f"{spec}: task '{task}': field 'tasks[0].email_notifications.no_alert_for_skipped_runs'"
        " is deprecated: use 'tasks[0].notification_settings.no_alert_for_skipped_runs'",
    ]


def test_deployed_jobs_carry_notification_settings(fake_workspace, project):
    config = ["--target", "staging", "--config", str(project / "deploy.yml")]
    assert main(["deploy", *config, "--repo", str(project)]) == 0
    for job in fake_workspace.jobs.values():
        settings = job["settings"]
        assert settings["notification_settings"] == {"no_alert_for_skipped_runs": True}
        assert settings["email_notifications"] == {"on_failure": ["ml-team@example.com"]}


# --- LICENSE ------------------------------------------------------------------------------------
def test_the_wheels_declare_and_ship_the_repositorys_apache_license(repo, tmp_path):
    from diabetes_mlops.deploy.wheels import build_wheels

    text = (repo / "LICENSE").read_text()
    assert text.startswith("                                 Apache License\n")
    assert "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    for wheel in build_wheels(repo, tmp_path):
        with zipfile.ZipFile(wheel.path) as archive:
            names = archive.namelist()
            metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
            shipped = archive.read(
                next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))
            )
        assert "License-Expression: Apache-2.0" in metadata.decode(), wheel.name
        assert shipped.decode() == text, wheel.name
