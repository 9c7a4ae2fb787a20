"""Model Serving that follows the champion, against a fake workspace the real SDK talks to:
first endpoint, canary then full rollout, rollbacks, no-ops; the deploy_serving step on a sqlite
registry; the job specs, the local runner and `make deploy-plan` with serving in them."""

import importlib
import itertools
import json
import math
import shutil
from types import SimpleNamespace

import pandas as pd
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue
from databricks.sdk.service.serving import Route, ServedEntityInput, TrafficConfig
from trained_models import FAST, train_validate_promote

from diabetes_mlops.cli import main
from diabetes_mlops.jobs.preflight import check_job_parameters
from diabetes_mlops.jobs.specs import check_spec
from diabetes_mlops.jobs.targets import ConfigError, load_target
from diabetes_mlops.local.dbutils import LocalDbutils
from diabetes_mlops.local.runner import LocalRunner
from diabetes_mlops.runtime.errors import ParameterError
from diabetes_mlops.serving.endpoint_config import (
    Champion,
    EndpointSettings,
    InferenceTable,
    scaled,
)
from diabetes_mlops.serving.names import endpoint_name_problem, user_slug
from diabetes_mlops.serving.rollout import (
    CREATED,
    MAX_TIMEOUT_SECONDS,
    NO_CHAMPION,
    POLL_SECONDS,
    ROLLED_OUT,
    TASK_MARGIN_SECONDS,
    UNCHANGED,
    UPDATED,
    Clock,
    RolloutError,
    follow_champion,
)
from diabetes_mlops.serving.smoke_test import query_budget
from diabetes_mlops.steps import deploy_serving, run_step, train
from diabetes_mlops.tracking.registry import load_version
from diabetes_mlops.tracking.runs import use_experiment

# The step's module (the package exports the step function under the same name).
deploy_serving_module = importlib.import_module("diabetes_mlops.steps.deploy_serving")

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


def follow(w, version, reasons=None, clock=None, rolled_back=(), **changes):
    on_failure = (reasons if reasons is not None else []).append
    return follow_champion(
        w,
        settings(**changes),
        champion(version),
        on_failure,
        clock or FakeClock(),
        rolled_back=lambda v: v in rolled_back,
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
        # Still deploying when the rollout's deadline passes; Databricks ends it during the
        # rollback's own wait, which then sends the previous config.
        (
            lambda fake: fake.unready_versions.update({"2": 8}),
            "not READY within the rollout's 60 s (config update IN_PROGRESS, READY)",
        ),
        (
            lambda fake: setattr(
                fake,
                "predict",
                lambda n, entity, s: [p + 0.5 for p in predictions(entity["entity_version"])],
            ),
            "smoke test: row 0: the endpoint answered 102.5, version 2 predicts 102.0",
        ),
    ],
    ids=["update failed", "not ready in time", "smoke test mismatch"],
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
    assert message.endswith(
        ("; rolled back to version 1 (100 %)", "; it still serves version 1 (100 %)")
    )
    assert clock.time <= 2 * 60 + 2 * POLL_SECONDS  # the rollout's and the rollback's budgets


def test_a_rollback_restores_the_previous_entities_and_traffic(w, fake_workspace):
    follow(w, "1")
    (served,) = fake_workspace.endpoints[NAME]["config"]["served_entities"]
    sent = dict(served)
    # What an endpoint may report beside a workload size, and refuses beside one in an update.
    served.update(min_provisioned_concurrency=0, max_provisioned_concurrency=4)
    fake_workspace.unready_versions["2"] = 8
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


def test_a_canary_that_never_gets_ready_leaves_the_rollback_to_the_next_run(w, fake_workspace):
    """As on Databricks: the canary's update stays IN_PROGRESS (the previous config serving), no
    other update is accepted and none can be cancelled; the rollback waits its own budget."""
    follow(w, "1")
    fake_workspace.unready_versions["2"] = math.inf
    reasons, clock = [], FakeClock()
    with pytest.raises(RolloutError) as failure:
        follow(w, "2", reasons, clock)
    message = str(failure.value)
    assert len(message.splitlines()) == 1
    assert message == (
        f"serving endpoint '{NAME}': version 2 not served: not READY within the rollout's 60 s"
        " (config update IN_PROGRESS, READY); rollback unfinished (waiting for the failed update"
        " to end: not over within the rollback's 60 s (config update IN_PROGRESS, READY)): it"
        " serves version 1 (100 %) while Databricks still deploys version 1 (90 %), version 2"
        " (10 %) (an update cannot be cancelled); the next run of this task finishes the job"
    )
    assert fake_workspace.served(NAME) == {"1": 100} and len(reasons) == 1
    assert len(config_updates(fake_workspace)) == 1  # the canary only: nothing else was accepted
    assert clock.time <= 2 * 60 + 2 * POLL_SECONDS
    del fake_workspace.unready_versions["2"]  # Databricks ends the update after all
    w.serving_endpoints.get(NAME)
    assert fake_workspace.served(NAME) == {"1": 90, "2": 10}  # the failed version takes traffic


def leave_a_rolled_back_canary(w, fake):
    """Version 1 at 90 %, version 2 at 10 %: the canary of 2 landed after its rollback gave up."""
    follow(w, "1")
    fake.unready_versions["2"] = math.inf
    with pytest.raises(RolloutError, match="rollback unfinished"):
        follow(w, "2")
    del fake.unready_versions["2"]
    w.serving_endpoints.get(NAME)
    assert fake.served(NAME) == {"1": 90, "2": 10}
    fake.requests.clear()


def test_the_next_run_drops_a_rolled_back_version_for_a_new_canary(w, fake_workspace):
    leave_a_rolled_back_canary(w, fake_workspace)
    outcome = follow(w, "3", rolled_back={"2"})
    assert (outcome.action, outcome.replaced) == (ROLLED_OUT, ("1", "2"))
    canary, full = config_updates(fake_workspace)
    assert routes(canary) == {"diabetes-1": 90, "diabetes-3": 10}  # version 2 is not kept
    assert routes(full) == {"diabetes-3": 100}
    assert fake_workspace.served(NAME) == {"3": 100}


def test_a_repair_run_tests_the_rolled_back_canary_again(w, fake_workspace):
    leave_a_rolled_back_canary(w, fake_workspace)
    outcome = follow(w, "2", rolled_back={"2"})  # the same champion: its canary is in place
    assert (outcome.action, outcome.replaced) == (ROLLED_OUT, ("1",))
    (full,) = config_updates(fake_workspace)  # the canary is not sent again, only tested
    assert routes(full) == {"diabetes-2": 100}
    assert len(fake_workspace.calls("POST", "/invocations")) > 1  # until the canary answered


@pytest.mark.parametrize(
    "break_version",
    [
        lambda fake: fake.failing_versions.add("3"),  # the canary never lands
        lambda fake: setattr(fake, "predict", lambda n, e, s: [p + 1 for p in predictions("3")]),
    ],
    ids=["update failed", "smoke test mismatch"],
)
def test_a_rollback_never_puts_a_rolled_back_version_back(w, fake_workspace, break_version):
    leave_a_rolled_back_canary(w, fake_workspace)
    break_version(fake_workspace)
    with pytest.raises(RolloutError, match="; rolled back to version 1 \\(100 %\\)$"):
        follow(w, "3", rolled_back={"2"})
    assert fake_workspace.served(NAME) == {"1": 100}  # not 1 and the leftover 2


@pytest.mark.parametrize("how", ["update in progress", "update landed"])
def test_a_rollback_never_overwrites_another_deployers_config(w, fake_workspace, how):
    follow(w, "1")
    theirs = {
        "served_entities": [{"name": "theirs-7", "entity_name": MODEL, "entity_version": "7",
                             "workload_size": "Large", "scale_to_zero_enabled": False}],
        "traffic_config": {"routes": [{"served_model_name": "theirs-7",
                                       "traffic_percentage": 100}]},
    }  # fmt: skip

    def wrong_and_someone_else_deploys(name, entity, split):
        version = entity["entity_version"]
        if version != "2":
            return predictions(version)
        endpoint = fake_workspace.endpoints[NAME]
        if how == "update landed":
            endpoint["config"] = theirs
        else:
            endpoint.update(pending=theirs, update="IN_PROGRESS", polls_left=10**6)
        return [p + 1 for p in predictions(version)]

    fake_workspace.predict = wrong_and_someone_else_deploys
    with pytest.raises(RolloutError) as failure:
        follow(w, "2")
    message = str(failure.value)
    assert len(message.splitlines()) == 1 and "smoke test: row 0" in message
    assert "; NOT rolled back: someone else changed the endpoint meanwhile (" in message
    assert "version 7 (100 %)" in message
    assert len(config_updates(fake_workspace)) == 1  # the canary; no rollback was sent


def test_the_rollout_has_one_deadline_and_the_rollback_its_own(w, fake_workspace):
    follow(w, "1")
    timeout = MAX_TIMEOUT_SECONDS
    # Each update takes 60 % of the timeout: two of them do not fit in one deadline.
    fake_workspace.serving_update_polls = int(0.6 * timeout / POLL_SECONDS)
    clock = FakeClock()
    with pytest.raises(RolloutError, match="not READY within the rollout's 2400 s") as failure:
        follow(w, "2", clock=clock, timeout_seconds=timeout)
    assert str(failure.value).endswith("; rolled back to version 1 (100 %)")
    assert clock.time <= 2 * timeout
    # Never ready at all: the rollout's deadline, then the rollback's budget, nothing more.
    fake_workspace.serving_update_polls = 2
    fake_workspace.unready_versions["3"] = math.inf
    clock = FakeClock()
    with pytest.raises(RolloutError, match="rollback unfinished"):
        follow(w, "3", clock=clock, timeout_seconds=timeout)
    assert clock.time <= 2 * timeout + 2 * POLL_SECONDS


def test_the_tasks_timeout_holds_both_budgets(repo):
    """2 x the largest serving_timeout_seconds + a margin fit the deploy_serving task's timeout,
    and the job's timeout never cuts a task short (all tasks, retries included)."""
    for name in ("diabetes_model_training.json", "diabetes_model_deployment.json"):
        spec = json.loads((repo / "job_specs" / name).read_text())
        (task,) = [t for t in spec["tasks"] if t["task_key"] == "deploy_serving"]
        assert task["timeout_seconds"] >= 2 * MAX_TIMEOUT_SECONDS + TASK_MARGIN_SECONDS, name
        worst = sum(t["timeout_seconds"] * (1 + t.get("max_retries", 0)) for t in spec["tasks"])
        assert worst <= spec["timeout_seconds"], name


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
    # After theirs ended (one deadline for the three waits: theirs, the canary, the full update).
    assert follow(w, "2", timeout_seconds=120).action == ROLLED_OUT
    fake_workspace.serving_update_polls = 10**6
    someone_updates(w)
    reasons = []
    with pytest.raises(RolloutError) as failure:
        follow(w, "3", reasons)
    assert "waiting for an earlier update to end: not over within the rollout's 60 s" in str(
        failure.value
    )
    assert str(failure.value).endswith(
        "the served versions were not changed: it serves version 2 (100 %) while Databricks still"
        " deploys version 2 (100 %) (an update cannot be cancelled)"
    )
    assert fake_workspace.served(NAME) == {"2": 100} and len(reasons) == 1


@pytest.mark.parametrize(
    "break_version",
    [
        lambda fake: fake.failing_versions.add("1"),
        lambda fake: fake.unready_versions.update({"1": math.inf}),
    ],
    ids=["update failed", "never ready"],
)
def test_a_first_endpoint_that_fails_is_deleted_again(w, fake_workspace, break_version):
    break_version(fake_workspace)
    reasons = []
    with pytest.raises(RolloutError) as failure:
        follow(w, "1", reasons)
    message = str(failure.value)
    assert len(message.splitlines()) == 1
    assert message.endswith(
        "; the endpoint this run created was deleted (it served nothing before)"
    )
    assert NAME not in fake_workspace.endpoints and len(reasons) == 1
    fake_workspace.failing_versions.clear()
    fake_workspace.unready_versions.clear()
    assert follow(w, "2").action == CREATED  # the next champion creates it again
    assert fake_workspace.served(NAME) == {"2": 100}


def test_an_endpoint_someone_else_created_is_never_deleted(w, fake_workspace):
    follow(w, "1")  # someone else's, created between the run's look and its create:
    fake_workspace.fail("GET", f"/serving-endpoints/{NAME}", status=404,
                        error_code="RESOURCE_DOES_NOT_EXIST")  # fmt: skip
    with pytest.raises(RolloutError, match="meanwhile by someone else; this run created no endpo"):
        follow(w, "2")
    assert not fake_workspace.calls("DELETE") and fake_workspace.served(NAME) == {"1": 100}


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


def test_an_inference_table_differing_only_in_case_changes_nothing(w, fake_workspace):
    upper = InferenceTable("Main", "Diabetes_Test", "Served")  # Unity Catalog stores lower case
    follow(w, "1", inference_table=upper)
    assert (
        fake_workspace.endpoints[NAME]["ai_gateway"]["inference_table_config"]["catalog_name"]
        == "main"
    )
    assert follow(w, "1", inference_table=upper).action == UNCHANGED
    assert not fake_workspace.calls("PUT", "/ai-gateway")
    assert InferenceTable.parse("Main.Diabetes_Test.Served") == InferenceTable(
        "main", "diabetes_test", "served"
    )


@pytest.mark.parametrize(
    "names, shares, words",
    [
        (["a", "b"], {"a": 90, "b": 5}, "adding up to 100"),
        (["a", "a"], {"a": 100}, "unique"),
        (["a", "b"], {"a": 90, "c": 10}, "do not name the served entities"),
        (["a", "b"], {"a": 100}, "do not name the served entities"),
    ],
    ids=[
        "shares add up to 95",
        "entity names repeat",
        "route to no entity",
        "entity without route",
    ],
)
def test_the_fake_refuses_configs_the_api_refuses(w, fake_workspace, names, shares, words):
    follow(w, "1")
    entities = [ServedEntityInput(name=n, entity_name=MODEL, entity_version=str(i + 1),
                                  workload_size="Small") for i, n in enumerate(names)]  # fmt: skip
    traffic = TrafficConfig(
        routes=[Route(served_model_name=n, traffic_percentage=p) for n, p in shares.items()]
    )
    with pytest.raises(InvalidParameterValue, match=words):
        w.serving_endpoints.update_config(NAME, served_entities=entities, traffic_config=traffic)
    assert fake_workspace.served(NAME) == {"1": 100}


def test_no_champion_means_no_endpoint_and_no_error(w, fake_workspace):
    outcome = follow_champion(w, settings(), None)
    assert outcome.action == NO_CHAMPION
    assert fake_workspace.endpoints == {} and not fake_workspace.calls("POST")


def test_shares_andquery_budget():
    assert scaled({"a": 100}, 90) == {"a": 90}
    assert scaled({"a": 70, "b": 30}, 90) == {"a": 63, "b": 27}
    three = scaled({"a": 1, "b": 1, "c": 1}, 80)
    assert sum(three.values()) == 80 and max(three.values()) - min(three.values()) == 1
    assert query_budget(10) == 132 and query_budget(1) == 1375 and query_budget(99) == 3


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
    """A new version trained (FAST), validated and promoted: the serving tests need versions.
    Each call trains with other CV folds (one alpha: the same model, an equal score), so each
    has something new to register. The promote step's outputs."""
    data = data_dir / "data_raw.csv"
    settings = {**FAST, "cv_folds": next(FOLDS), **kwargs}
    return train_validate_promote(model_name, EXPERIMENT, data, **settings)[2]


FOLDS = itertools.count(2)


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


def test_the_step_follows_the_champion(data_dir, model_name, fake_workspace, monkeypatch):
    from mlflow.tracking import MlflowClient

    fake_workspace.serving_update_polls = 0  # ready at the first look: no waiting
    clock = FakeClock()  # the rollout's and the rollback's deadlines pass without waiting
    monkeypatch.setattr(
        deploy_serving_module,
        "follow_champion",
        lambda *args, **kwargs: follow_champion(*args, clock=clock, **kwargs),
    )
    wrong = {"3"}
    serve_registered_models(fake_workspace, model_name, wrong_versions=wrong)
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

    def tags(number):
        return client.get_model_version(model_name, number).tags

    assert tags("2")["serving_endpoint"] == NAME
    assert "serving_endpoint" not in tags("1")  # replaced: no longer served there

    promoted_version(data_dir, model_name)  # version 3, which the fake serves wrongly
    with pytest.raises(RolloutError, match="smoke test: row 0") as failure:
        deploy_serving(model_name, **args)
    assert len(str(failure.value).splitlines()) == 1
    assert fake_workspace.served(NAME) == {"2": 100}
    reason = tags("3")["serving_rollback_reason"]
    assert reason.startswith("smoke test: row 0: the endpoint answered")
    assert "serving_endpoint" not in tags("3") and tags("2")["serving_endpoint"] == NAME

    wrong.clear()  # fixed: a repair of the run serves version 3 after all
    assert deploy_serving(model_name, **args)["serving"] == ROLLED_OUT
    assert tags("3")["serving_endpoint"] == NAME and "serving_rollback_reason" not in tags("3")
    assert "serving_endpoint" not in tags("2")

    # Version 4's canary never gets ready in time; Databricks lands it after the rollback gave
    # up. The step tells the rollout that 4 was rolled back (its tags): version 5's canary runs
    # beside version 3 alone, and 4 serves no more.
    promoted_version(data_dir, model_name)
    fake_workspace.unready_versions["4"] = math.inf
    with pytest.raises(RolloutError, match="rollback unfinished"):
        deploy_serving(model_name, **args)
    del fake_workspace.unready_versions["4"]
    fake_workspace.endpoints[NAME]["config"] = fake_workspace.endpoints[NAME]["pending"]
    fake_workspace.endpoints[NAME].update(pending=None, update="NOT_UPDATING")
    assert fake_workspace.served(NAME) == {"3": 90, "4": 10}
    promoted_version(data_dir, model_name)
    fake_workspace.requests.clear()
    assert deploy_serving(model_name, **args)["served_version"] == "5"
    canary, _ = config_updates(fake_workspace)
    assert routes(canary) == {f"{model_name}-3": 90, f"{model_name}-5": 10}
    assert fake_workspace.served(NAME) == {"5": 100}
    assert "serving_endpoint" not in tags("3") and "serving_endpoint" not in tags("4")


def test_a_missing_value_in_the_serving_example_is_sent_as_null(w, fake_workspace, monkeypatch):
    """MLflow writes NaN bare in serving_input_example.json: not JSON. The step sends null."""
    example = (
        '{"dataframe_split": {"columns": ["AGE", "SEX", "BMI"], "data": [[50.0, "Male", NaN]]}}'
    )
    seen = []

    class Model:
        def predict(self, frame):
            seen.append(frame)
            return [151.5]

    monkeypatch.setattr(deploy_serving_module, "load_serving_example", lambda uri: example)
    monkeypatch.setattr(deploy_serving_module, "load_version", lambda version: Model())
    candidate = deploy_serving_module.sample_predictions(SimpleNamespace(name=MODEL, version=1))
    assert candidate.rows == [[50.0, "Male", None]] and candidate.expected == [151.5]
    assert math.isnan(seen[0]["BMI"][0])  # the model itself predicted on the missing value

    def answer(name, entity, split):
        assert split["data"] == [[50.0, "Male", None]]  # null on the wire
        return [151.5]

    fake_workspace.predict = answer
    outcome = follow_champion(w, settings(), candidate, clock=FakeClock())
    assert outcome.action == CREATED
    (query,) = fake_workspace.calls("POST", "/invocations")
    assert b"null" in query.body and b"NaN" not in query.body


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
        ("serving_timeout_seconds", "5", "must be between 60 and 2400"),
        ("serving_timeout_seconds", "2401", "must be between 60 and 2400"),
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
    assert "tasks train -> validate -> approval -> promote -> deploy_serving" in out
    assert "job 'diabetes-model-deployment', tasks deploy_serving" in out


def test_the_local_training_job_runs_serving_as_a_no_op(repo, tmp_path, model_name):
    root = tmp_path / "local"
    data = root / "Volumes/main/diabetes/data"
    data.mkdir(parents=True)
    shutil.copy(repo / "ml_data" / "data_raw.csv", data)
    lines = []
    runner = LocalRunner(root, report=lines.append)  # on the session's store
    local = load_target("local", repo / "deploy.yml").parameters
    quick = {"model_name": model_name, "alphas": "3", "cv_folds": "2"}
    job = runner.run(repo / "job_specs" / "diabetes_model_training.json", quick, defaults=local)
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
    assert [t["task_key"] for t in training["tasks"]] == [
        "train",
        "validate",
        "approval",
        "promote",
    ]
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


@pytest.mark.parametrize("target, prefix", [("staging", ""), ("dev", "[dev alice@example.com] ")])
def test_back_to_a_task_trigger_deletes_the_deployment_job(
    fake_workspace, project, capsys, target, prefix
):
    """Two deployers must never race on one endpoint: the model-triggered job goes."""
    config = project / "deploy.yml"
    text = config.read_text()
    config.write_text(text.replace("serving_trigger: task", "serving_trigger: model"))
    assert deploy(project, target=target) == 0
    name = f"{prefix}diabetes-model-deployment"
    (job_id,) = [i for i, j in fake_workspace.jobs.items() if j["settings"]["name"] == name]
    # Same name without the prefix, or another name: not ours here, never touched.
    others = [fake_workspace.add_job({"name": n, "tasks": []}) for n in
              ("diabetes-model-deployment-old", f"x{name}", "someone-elses-job")]  # fmt: skip
    if prefix:
        others.append(fake_workspace.add_job({"name": "diabetes-model-deployment", "tasks": []}))
    config.write_text(text)  # back to serving_trigger: task
    capsys.readouterr()
    assert deploy(project, "--plan", target=target) == 0
    why = f"target '{target}' has serving_trigger: task, so it does not deploy this job"
    assert f"job '{name}': delete (job id {job_id}; {why})" in capsys.readouterr().out
    assert job_id in fake_workspace.jobs  # the plan changed nothing
    assert deploy(project, target=target) == 0
    assert f"job '{name}' deleted (job id {job_id}): {why}" in capsys.readouterr().out
    assert job_id not in fake_workspace.jobs and all(o in fake_workspace.jobs for o in others)
    (training,) = [j["settings"] for j in fake_workspace.jobs.values()
                   if j["settings"]["name"] == f"{prefix}diabetes-model-training"]  # fmt: skip
    assert training["tasks"][-1]["task_key"] == "deploy_serving"
    assert deploy(project, target=target) == 0  # nothing left to delete
    assert "deleted" not in capsys.readouterr().out


def test_deploy_goes_on_when_the_endpoint_may_not_be_read(fake_workspace, project, capsys):
    """Deploy does not manage the endpoint: a 403 on it is shown in the plan, not a failure."""
    fake_workspace.fail("GET", "/api/2.0/serving-endpoints/", status=403, times=10,
                        error_code="PERMISSION_DENIED")  # fmt: skip
    assert deploy(project, "--plan") == 0
    assert (
        "serving endpoint 'diabetes-staging' (job 'diabetes-model-training' task deploy_serving):"
        " unknown (PERMISSION_DENIED: injected fault)\n" in capsys.readouterr().out
    )
    assert deploy(project) == 0
    names = {j["settings"]["name"] for j in fake_workspace.jobs.values()}
    assert names == {"diabetes-model-training", "diabetes-batch-scoring"}


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


def test_a_champion_logged_before_the_contract_travelled_is_served_with_a_warning(
    data_dir, model_name, fake_workspace, caplog
):
    """Versions logged with plain mlflow.sklearn answer any request: served, and said so."""
    import logging

    import mlflow
    from mlflow.tracking import MlflowClient

    from diabetes.contract import FEATURES
    from diabetes_mlops.tracking.registry import CHAMPION, set_alias

    fake_workspace.serving_update_polls = 0
    rows = pd.read_csv(data_dir / "data_raw.csv")
    pipeline = load_version_of(promoted_version(data_dir, model_name), model_name)
    use_experiment(EXPERIMENT)  # its artifacts under the session's root, not ./mlruns
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            pipeline, name="plain", registered_model_name=model_name,
            input_example=rows[list(FEATURES)].head(3).astype({"AGE": "float64"}),
            pip_requirements=["scikit-learn"], serialization_format="cloudpickle",
        )  # fmt: skip
    set_alias(MlflowClient(), model_name, CHAMPION, str(info.registered_model_version))
    serve_registered_models(fake_workspace, model_name)
    with caplog.at_level(logging.WARNING, logger="diabetes_mlops"):
        out = deploy_serving(model_name, serving_endpoint=NAME, serving_timeout_seconds=60)
    assert out["serving"] == CREATED and out["served_version"] == "2"
    assert "was logged before the data contract travelled with the model" in caplog.text


def load_version_of(promoted: dict, model_name: str):
    from mlflow.tracking import MlflowClient

    return load_version(MlflowClient().get_model_version(model_name, promoted["champion_version"]))


# --- whose endpoint, and answers lost after the server acted -----------------------------------
def endpoint_tags(fake):
    return fake.endpoints[NAME]["tags"]


def test_the_endpoint_carries_its_owner_and_another_target_never_touches_it(w, fake_workspace):
    assert follow(w, "1", owner="staging").action == CREATED
    assert endpoint_tags(fake_workspace) == {"project": "diabetes-mlops", "target": "staging"}
    reasons = []
    with pytest.raises(RolloutError, match="belongs to target 'staging', and target 'prod'"):
        follow(w, "2", reasons, owner="prod")
    assert reasons == []  # not a failed version: nothing recorded on it
    assert config_updates(fake_workspace) == [] and fake_workspace.served(NAME) == {"1": 100}
    assert follow(w, "2", owner="staging").action == ROLLED_OUT


def test_an_untagged_endpoint_serving_our_model_is_claimed(w, fake_workspace):
    follow(w, "1")  # made before endpoints carried owner tags
    assert endpoint_tags(fake_workspace) == {}
    assert follow(w, "2", owner="staging").action == ROLLED_OUT
    assert endpoint_tags(fake_workspace) == {"project": "diabetes-mlops", "target": "staging"}


def test_an_untagged_endpoint_serving_another_model_is_refused(w, fake_workspace):
    follow(w, "1", model_name="main.other.model")
    with pytest.raises(RolloutError, match="was not made by diabetes-mlops for target 'staging'"):
        follow(w, "2", owner="staging")
    assert endpoint_tags(fake_workspace) == {} and config_updates(fake_workspace) == []


def test_a_lost_create_answer_still_serves_the_champion(w, fake_workspace):
    fake_workspace.lose_answer("POST", "/api/2.0/serving-endpoints")
    assert follow(w, "1", owner="staging").action == CREATED
    assert len(fake_workspace.calls("POST", "/api/2.0/serving-endpoints")) == 2  # sent again
    assert fake_workspace.served(NAME) == {"1": 100}
    assert endpoint_tags(fake_workspace)["target"] == "staging"


@pytest.mark.parametrize("times", [1, 2])  # the canary's update; both updates
def test_a_lost_update_answer_still_rolls_out(w, fake_workspace, times):
    follow(w, "1", owner="staging")
    fake_workspace.lose_answer("PUT", f"/serving-endpoints/{NAME}/config", times=times)
    assert follow(w, "2", owner="staging").action == ROLLED_OUT
    assert fake_workspace.served(NAME) == {"2": 100}
    assert len(config_updates(fake_workspace)) == 2 + times  # each lost one sent again


def test_deploy_refuses_an_endpoint_another_target_owns(fake_workspace, project, capsys):
    config = project / "deploy.yml"
    config.write_text(config.read_text().replace(
        "serving_endpoint: diabetes-{target}", "serving_endpoint: diabetes-shared"))  # fmt: skip
    w = WorkspaceClient(host=fake_workspace.url, token=fake_workspace.token, auth_type="pat")
    fake_workspace.predict = lambda name, entity, split: predictions(entity["entity_version"])
    shared = settings(name="diabetes-shared", owner="staging")
    follow_champion(w, shared, champion("1"), clock=FakeClock())
    assert deploy(project, target="prod") == 1
    err = capsys.readouterr().err
    assert "serving endpoint 'diabetes-shared' belongs to target 'staging'" in err
    assert fake_workspace.jobs == {} and fake_workspace.files == {}
