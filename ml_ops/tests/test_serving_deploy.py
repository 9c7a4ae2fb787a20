"""Model Serving that follows the champion, against a fake workspace the real SDK talks to:
first endpoint, canary then full rollout, rollbacks, no-ops; the deploy_serving step on a sqlite
registry; the job specs, the local runner and `make deploy-plan` with serving in them."""

import json
import shutil

import pandas as pd
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.serving import ServedEntityInput

from diabetes_mlops.cli import main
from diabetes_mlops.deploy.config import ConfigError, load_target
from diabetes_mlops.deploy.serving import (
    CREATED,
    NO_CHAMPION,
    ROLLED_OUT,
    UNCHANGED,
    UPDATED,
    Champion,
    Clock,
    EndpointSettings,
    InferenceTable,
    RolloutError,
    _query_budget,
    _scaled,
    follow_champion,
)
from diabetes_mlops.errors import ParameterError
from diabetes_mlops.job_specs import check_spec
from diabetes_mlops.local.dbutils import LocalDbutils
from diabetes_mlops.local.runner import LocalRunner
from diabetes_mlops.preflight import check_job_parameters
from diabetes_mlops.registry import load_version
from diabetes_mlops.serving_names import endpoint_name_problem, user_slug
from diabetes_mlops.steps import deploy_serving, promote, run_step, train, validate

NAME = "diabetes-test"
MODEL = "main.diabetes_test.diabetes"
COLUMNS = ["AGE", "SEX", "BMI"]
ROWS = [[50.0, "Male", 25.0], [61.0, "Female", 31.5]]


class FakeClock(Clock):
    """Sleeping only moves this clock's hands: a timeout of minutes passes at once."""

    def __init__(self) -> None:
        self.time = 0.0

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.time += seconds


def predictions(version: str) -> list[float]:
    """What version `version` of the model predicts for ROWS (distinct per version)."""
    return [100.0 + int(version) + row / 8 for row in range(len(ROWS))]


def champion(version: str) -> Champion:
    return Champion(version, COLUMNS, ROWS, predictions(version))


@pytest.fixture
def w(fake_workspace):
    fake_workspace.predict = lambda name, entity, split: predictions(entity["entity_version"])
    return WorkspaceClient(host=fake_workspace.url, token=fake_workspace.token, auth_type="pat")


def settings(**changes) -> EndpointSettings:
    return EndpointSettings(**{"name": NAME, "model_name": MODEL, "timeout_seconds": 60} | changes)


def follow(w, version, reasons=None, clock=None, **changes):
    on_failure = (reasons if reasons is not None else []).append
    return follow_champion(
        w, settings(**changes), champion(version), on_failure, clock or FakeClock()
    )


def config_updates(fake) -> list[dict]:
    return [json.loads(r.body) for r in fake.calls("PUT", f"/serving-endpoints/{NAME}/config")]


def routes(body: dict) -> dict[str, int]:
    return {
        r["served_model_name"]: r["traffic_percentage"] for r in body["traffic_config"]["routes"]
    }


def test_the_first_champion_creates_the_endpoint(w, fake_workspace):
    table = InferenceTable("main", "diabetes_test", "served")
    outcome = follow(w, "1", inference_table=table)
    assert (outcome.action, outcome.version) == (CREATED, "1")
    assert fake_workspace.served(NAME) == {"1": 100}
    (create,) = [json.loads(r.body) for r in fake_workspace.calls("POST", "/api/2.0/serving-")]
    (entity,) = create["config"]["served_entities"]
    assert entity == {
        "name": "diabetes-1",
        "entity_name": MODEL,
        "entity_version": "1",
        "workload_size": "Small",
        "scale_to_zero_enabled": True,
    }
    assert create["ai_gateway"]["inference_table_config"] == {
        "catalog_name": "main",
        "schema_name": "diabetes_test",
        "table_name_prefix": "served",
        "enabled": True,
    }
    assert len(fake_workspace.calls("POST", f"/serving-endpoints/{NAME}/invocations")) == 1


def test_a_new_champion_is_a_canary_then_gets_all_the_traffic(w, fake_workspace):
    follow(w, "1")
    outcome = follow(w, "2")
    assert (outcome.action, outcome.version) == (ROLLED_OUT, "2")
    canary, full = config_updates(fake_workspace)
    assert [e["entity_version"] for e in canary["served_entities"]] == ["1", "2"]
    assert routes(canary) == {"diabetes-1": 90, "diabetes-2": 10}
    assert [e["entity_version"] for e in full["served_entities"]] == ["2"]
    assert routes(full) == {"diabetes-2": 100}
    assert fake_workspace.served(NAME) == {"2": 100}
    # The smoke test queried until the canary itself answered (the current version gets 90 %).
    assert len(fake_workspace.calls("POST", "/invocations")) > 2


def test_a_canary_share_is_a_setting(w, fake_workspace):
    follow(w, "1")
    follow(w, "2", canary_percent=25)
    assert routes(config_updates(fake_workspace)[0]) == {"diabetes-1": 75, "diabetes-2": 25}


@pytest.mark.parametrize(
    "break_version, words",
    [
        (lambda fake: fake.failing_versions.add("2"), "the config update ended UPDATE_FAILED"),
        (lambda fake: fake.unready_versions.add("2"), "not READY after 60 s"),
        (
            lambda fake: setattr(
                fake,
                "predict",
                lambda n, entity, s: [p + 0.5 for p in predictions(entity["entity_version"])],
            ),
            "smoke test: row 0: the endpoint answered 102.5, version 2 predicts 102.0",
        ),
    ],
    ids=["update failed", "never ready", "smoke test mismatch"],
)
def test_a_failed_rollout_is_rolled_back_and_tagged(w, fake_workspace, break_version, words):
    follow(w, "1")
    before = fake_workspace.endpoints[NAME]["config"]
    break_version(fake_workspace)
    reasons = []
    clock = FakeClock()
    with pytest.raises(RolloutError) as failure:
        follow(w, "2", reasons, clock)
    message = str(failure.value)
    assert len(message.splitlines()) == 1 and words in message
    assert message.startswith(f"serving endpoint '{NAME}': version 2 not served:")
    assert fake_workspace.endpoints[NAME]["config"] == before  # what it served before, exactly
    assert fake_workspace.served(NAME) == {"1": 100}
    assert len(reasons) == 1 and words in reasons[0]
    assert clock.time <= 4 * 60  # waits bounded by the timeout, in fake time


def test_a_rollback_restores_the_previous_entities_and_traffic(w, fake_workspace):
    follow(w, "1")
    (served,) = fake_workspace.endpoints[NAME]["config"]["served_entities"]
    sent = dict(served)
    # What an endpoint may report beside a workload size, and refuses beside one in an update.
    served.update(min_provisioned_concurrency=0, max_provisioned_concurrency=4)
    fake_workspace.unready_versions.add("2")
    with pytest.raises(RolloutError, match="rolled back to version 1 \\(100 %\\)"):
        follow(w, "2")
    canary, rollback = config_updates(fake_workspace)
    assert routes(canary) == {"diabetes-1": 90, "diabetes-2": 10}
    assert routes(rollback) == {"diabetes-1": 100}
    assert rollback["served_entities"] == [sent]


def test_an_api_error_mid_rollout_leaves_the_endpoint_serving(w, fake_workspace):
    follow(w, "1")
    fake_workspace.fail("PUT", f"/serving-endpoints/{NAME}/config", status=400, error_code="BAD")
    reasons = []
    with pytest.raises(RolloutError, match="injected fault; it still serves version 1"):
        follow(w, "2", reasons)
    assert fake_workspace.served(NAME) == {"1": 100} and reasons == ["injected fault"]


def test_a_rollback_that_fails_too_is_said_in_the_same_line(w, fake_workspace):
    follow(w, "1")

    def wrong_then_refuse_the_rollback(name, entity, split):
        fake_workspace.fail("PUT", f"/serving-endpoints/{NAME}/config", status=400, times=1,
                            error_code="BAD")  # fmt: skip
        return [p + 1 for p in predictions(entity["entity_version"])]

    fake_workspace.predict = wrong_then_refuse_the_rollback
    with pytest.raises(RolloutError) as failure:
        follow(w, "2")
    message = str(failure.value)
    assert len(message.splitlines()) == 1
    assert "smoke test: row 0" in message and "ROLLBACK FAILED (injected fault)" in message


def someone_updates(w):
    """Another hand sends the endpoint its own config again: an update now in progress."""
    config = w.serving_endpoints.get(NAME).config
    entities = [ServedEntityInput.from_dict(e.as_dict()) for e in config.served_entities]
    w.serving_endpoints.update_config(
        NAME, served_entities=entities, traffic_config=config.traffic_config
    )


def test_an_update_already_in_progress_is_waited_for_or_changes_nothing(w, fake_workspace):
    follow(w, "1")
    fake_workspace.serving_update_polls = 3
    someone_updates(w)
    assert follow(w, "2").action == ROLLED_OUT  # after theirs ended
    fake_workspace.serving_update_polls = 10**6
    someone_updates(w)
    reasons = []
    with pytest.raises(RolloutError, match="waiting for an earlier update to end after 60 s"):
        follow(w, "3", reasons)
    assert fake_workspace.served(NAME) == {"2": 100} and len(reasons) == 1


def test_a_first_endpoint_that_fails_says_nothing_was_served(w, fake_workspace):
    fake_workspace.failing_versions.add("1")
    reasons = []
    with pytest.raises(RolloutError, match="it served nothing before"):
        follow(w, "1", reasons)
    assert reasons == ["the config update ended UPDATE_FAILED"]
    fake_workspace.failing_versions.clear()
    assert follow(w, "2").action == UPDATED  # the next champion gets the endpoint, no canary
    assert fake_workspace.served(NAME) == {"2": 100}


def test_the_same_champion_changes_nothing(w, fake_workspace):
    table = InferenceTable("main", "diabetes_test", "served")
    follow(w, "1", inference_table=table)
    writes = len([r for r in fake_workspace.requests if r.method in ("POST", "PUT", "DELETE")])
    assert follow(w, "1", inference_table=table).action == UNCHANGED
    assert not config_updates(fake_workspace)
    assert not fake_workspace.calls("PUT", "/ai-gateway")
    after = len([r for r in fake_workspace.requests if r.method in ("POST", "PUT", "DELETE")])
    assert after == writes


def test_other_settings_for_the_same_version_are_one_update(w, fake_workspace):
    follow(w, "1")
    assert follow(w, "1", workload_size="Medium", scale_to_zero=False).action == UPDATED
    (update,) = config_updates(fake_workspace)
    (entity,) = update["served_entities"]
    assert entity["workload_size"] == "Medium" and entity["scale_to_zero_enabled"] is False


def test_the_inference_table_follows_the_setting(w, fake_workspace):
    follow(w, "1")
    first = InferenceTable("main", "diabetes_test", "served")
    follow(w, "1", inference_table=first)
    moved = InferenceTable("main", "other", "served")
    follow(w, "1", inference_table=moved)
    follow(w, "1")
    bodies = [json.loads(r.body)["inference_table_config"] for r in fake_workspace.calls("PUT")
              if r.path.endswith("/ai-gateway")]  # fmt: skip
    assert bodies == [
        {**_table(first), "enabled": True},
        {"enabled": False},  # a table moves only after it was disabled
        {**_table(moved), "enabled": True},
        {"enabled": False},
    ]
    assert not config_updates(fake_workspace)


def _table(table: InferenceTable) -> dict:
    return {"catalog_name": table.catalog, "schema_name": table.schema,
            "table_name_prefix": table.prefix}  # fmt: skip


def test_no_champion_means_no_endpoint_and_no_error(w, fake_workspace):
    outcome = follow_champion(w, settings(), None)
    assert outcome.action == NO_CHAMPION
    assert fake_workspace.endpoints == {} and not fake_workspace.calls("POST")


def test_shares_and_query_budget():
    assert _scaled({"a": 100}, 90) == {"a": 90}
    assert _scaled({"a": 70, "b": 30}, 90) == {"a": 63, "b": 27}
    three = _scaled({"a": 1, "b": 1, "c": 1}, 80)
    assert sum(three.values()) == 80 and max(three.values()) - min(three.values()) == 1
    assert _query_budget(10) == 132 and _query_budget(1) == 1375 and _query_budget(99) == 3


def test_endpoint_names_and_user_slugs():
    assert user_slug("alice.smith@example.com") == "alice-smith-example-com"
    long_a, long_b = (user_slug(f"a.very.long.first.name.{x}@example.com") for x in "ab")
    assert len(long_a) <= 32 and len(long_b) <= 32 and long_a != long_b
    assert endpoint_name_problem("") is None  # no endpoint
    assert endpoint_name_problem("diabetes-dev-{user_slug}") is None
    assert "letters, digits" in endpoint_name_problem("diabetes.prod")
    assert "at most 63" in endpoint_name_problem("d" * 40 + "-{user_slug}")


# --- the step, on a sqlite registry --------------------------------------------------------------
EXPERIMENT = "/Shared/diabetes-serving-tests"


def promoted_version(data_dir, model_name, **kwargs) -> dict:
    trained = train(str(data_dir / "data_raw.csv"), model_name, EXPERIMENT, **kwargs)
    validate(model_name, trained["model_version"], EXPERIMENT)
    return promote(model_name, trained["model_version"])


def serve_registered_models(fake, model_name, wrong_versions=()):
    """The fake serves the registered versions themselves: predictions from the models."""
    from mlflow.tracking import MlflowClient

    loaded = {}

    def predict(name, entity, split):
        number = entity["entity_version"]
        if number not in loaded:
            loaded[number] = load_version(MlflowClient().get_model_version(model_name, number))
        rows = pd.DataFrame(split["data"], columns=split["columns"])
        values = loaded[number].predict(rows).tolist()
        return [v + 1 for v in values] if number in wrong_versions else values

    fake.predict = predict


def test_the_step_follows_the_champion(data_dir, model_name, fake_workspace):
    from mlflow.tracking import MlflowClient

    fake_workspace.serving_update_polls = 0  # ready at the first look: no waiting
    serve_registered_models(fake_workspace, model_name, wrong_versions={"3"})
    args = {"serving_endpoint": NAME, "serving_timeout_seconds": 60}
    assert deploy_serving(model_name, **args) == {
        "serving": NO_CHAMPION, "serving_endpoint": NAME, "served_version": ""}  # fmt: skip
    assert fake_workspace.endpoints == {}

    assert promoted_version(data_dir, model_name)["promoted"] == "true"
    assert deploy_serving(model_name, **args)["serving"] == CREATED
    assert fake_workspace.served(NAME) == {"1": 100}
    client = MlflowClient()
    assert client.get_model_version(model_name, "1").tags["serving_endpoint"] == NAME

    promoted_version(data_dir, model_name)
    assert deploy_serving(model_name, **args) == {
        "serving": ROLLED_OUT, "serving_endpoint": NAME, "served_version": "2"}  # fmt: skip
    assert fake_workspace.served(NAME) == {"2": 100}

    promoted_version(data_dir, model_name)  # version 3, which the fake serves wrongly
    with pytest.raises(RolloutError, match="smoke test: row 0") as failure:
        deploy_serving(model_name, **args)
    assert len(str(failure.value).splitlines()) == 1
    assert fake_workspace.served(NAME) == {"2": 100}
    reason = client.get_model_version(model_name, "3").tags["serving_rollback_reason"]
    assert reason.startswith("smoke test: row 0: the endpoint answered")


def test_promoted_false_or_no_endpoint_does_nothing(model_name, fake_workspace):
    skipped = deploy_serving(model_name, promoted=False, serving_endpoint=NAME)
    assert skipped == {"serving": "skipped", "serving_endpoint": NAME, "served_version": ""}
    assert fake_workspace.requests == []  # not even a look at the endpoint


def test_no_endpoint_never_reaches_for_a_workspace(model_name):
    # No DATABRICKS_* variables here (conftest): a WorkspaceClient could not even be made.
    assert deploy_serving(model_name)["serving"] == "none"


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("serving_endpoint", "diabetes prod", "letters, digits, '-' and '_'"),
        ("canary_percent", "0", "must be between 1 and 99"),
        ("canary_percent", "100", "must be between 1 and 99"),
        ("workload_size", "Huge", "must be one of Small, Medium, Large"),
        ("scale_to_zero", "sometimes", "expected true or false"),
        ("inference_table", "main.diabetes", "catalog.schema.name"),
        ("serving_timeout_seconds", "5", "must be between 60 and 3600"),
    ],
)
def test_serving_parameters_are_judged_before_the_job_starts(repo, tmp_path, name, value, words):
    spec = check_spec(repo / "job_specs" / "diabetes_model_training.json",
                      repo / "orchestrator_notebooks")  # fmt: skip
    (problem,) = check_job_parameters(spec, {name: value})
    assert problem.startswith("job 'diabetes-model-training' task 'deploy_serving': ")
    assert f"parameter '{name}'" in problem and words in problem
    # On Databricks the first task sees the job parameter too, and stops before training.
    with pytest.raises(ParameterError, match=f"parameter '{name}'"):
        run_step(train, LocalDbutils({name: value}, tmp_path, {}, "train"))


# --- specs, local runner, deploy -----------------------------------------------------------------
def test_the_specs_validate_with_serving_in_them(repo, capsys, monkeypatch):
    monkeypatch.chdir(repo)
    assert main(["validate", "--notebooks-dir", "orchestrator_notebooks"]) == 0
    out = capsys.readouterr().out
    assert "tasks train -> validate -> promote -> deploy_serving" in out
    assert "job 'diabetes-model-deployment', tasks deploy_serving" in out


def test_the_local_training_job_runs_serving_as_a_no_op(repo, tmp_path):
    root = tmp_path / "local"
    data = root / "Volumes/main/diabetes/data"
    data.mkdir(parents=True)
    shutil.copy(repo / "ml_data" / "data_raw.csv", data)
    lines = []
    runner = LocalRunner(root, tracking_uri=f"sqlite:///{tmp_path}/local.db", report=lines.append)
    local = load_target("local", repo / "deploy.yml").parameters
    job = runner.run(repo / "job_specs" / "diabetes_model_training.json", defaults=local)
    assert job.succeeded, lines
    assert job.task("promote").outputs["promoted"] == "true"
    assert job.task("deploy_serving").outputs == {
        "serving": "none", "serving_endpoint": "", "served_version": ""}  # fmt: skip


def deploy(project, *extra, target="staging"):
    return main(["deploy", "--target", target, "--repo", str(project),
                 "--config", str(project / "deploy.yml"), *extra])  # fmt: skip


def test_deploy_plan_shows_the_endpoint_and_what_it_serves(fake_workspace, project, capsys):
    assert deploy(project, "--plan") == 0
    out = capsys.readouterr().out
    assert (
        "serving endpoint 'diabetes-staging' (job 'diabetes-model-training' task deploy_serving):"
        " absent (created with the first champion)" in out
    )
    assert (
        "model main.diabetes_staging.diabetes @champion, workload Small, scale to zero on,"
        " canary 10 %, inference table main.diabetes_staging.diabetes_serving" in out
    )
    w = WorkspaceClient(host=fake_workspace.url, token=fake_workspace.token, auth_type="pat")
    fake_workspace.serving_update_polls = 0
    fake_workspace.predict = lambda name, entity, split: predictions("3")
    staging = settings(name="diabetes-staging", model_name="main.diabetes_staging.diabetes")
    follow_champion(w, staging, champion("3"), clock=FakeClock())
    assert deploy(project, "--plan", target="prod") == 0
    assert "serving endpoint 'diabetes-prod'" in capsys.readouterr().out
    assert deploy(project, "--plan") == 0
    assert "'diabetes-staging' (job 'diabetes-model-training' task deploy_serving): serving" \
        " version 3 (100 %), READY" in capsys.readouterr().out  # fmt: skip
    assert deploy(project, "--plan", target="dev") == 0
    assert "serving endpoint 'diabetes-dev-alice-example-com'" in capsys.readouterr().out


def test_a_target_without_an_endpoint_plans_none(fake_workspace, project, capsys):
    config = project / "deploy.yml"
    config.write_text(config.read_text().replace("serving_endpoint: diabetes-{target}",
                                                 'serving_endpoint: ""'))  # fmt: skip
    assert deploy(project, "--plan") == 0
    out = capsys.readouterr().out
    assert "serving: none for this target (serving_endpoint is empty;" in out
    assert not fake_workspace.calls("GET", "/serving-endpoints")


def test_a_model_trigger_moves_serving_to_its_own_job(fake_workspace, project):
    config = project / "deploy.yml"
    config.write_text(config.read_text().replace("serving_trigger: task", "serving_trigger: model"))
    assert deploy(project) == 0
    jobs = {j["settings"]["name"]: j["settings"] for j in fake_workspace.jobs.values()}
    training = jobs["diabetes-model-training"]
    assert [t["task_key"] for t in training["tasks"]] == ["train", "validate", "promote"]
    assert not {"serving_endpoint", "canary_percent"} & {p["name"] for p in training["parameters"]}
    deployment = jobs["diabetes-model-deployment"]
    assert deployment["trigger"]["model"] == {
        "condition": "MODEL_ALIAS_SET",
        "securable_name": "main.diabetes_staging.diabetes",
        "aliases": ["champion"],
    }
    defaults = {p["name"]: p["default"] for p in deployment["parameters"]}
    assert defaults["serving_endpoint"] == "diabetes-staging"
    assert deploy(project, target="dev") == 0
    jobs = {j["settings"]["name"]: j["settings"] for j in fake_workspace.jobs.values()}
    dev = jobs["[dev alice@example.com] diabetes-model-deployment"]
    assert dev["trigger"]["pause_status"] == "PAUSED"


def test_a_model_trigger_needs_unity_catalog_and_a_known_setting(fake_workspace, project, capsys):
    config = project / "deploy.yml"
    text = config.read_text().replace("serving_trigger: task", "serving_trigger: model")
    config.write_text(text.replace("registry: unity_catalog", "registry: workspace", 1))
    assert deploy(project) == 1
    assert "serving_trigger: model needs registry unity_catalog" in capsys.readouterr().err
    assert fake_workspace.jobs == {}
    config.write_text(text.replace("serving_trigger: model", "serving_trigger: sometimes"))
    with pytest.raises(ConfigError, match="serving_trigger must be one of task, model"):
        load_target("staging", config)


def test_run_local_refuses_a_bad_serving_value_before_training(repo, tmp_path, capsys):
    args = ["run-local", str(repo / "job_specs" / "diabetes_model_training.json"),
            "--local-root", str(tmp_path), "--param", "canary_percent=150"]  # fmt: skip
    assert main(args) == 2
    assert "parameter 'canary_percent': must be between 1 and 99" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()
