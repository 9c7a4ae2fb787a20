"""A Model Serving endpoint that follows the champion: created with the first one, then each new
champion rolled out as a canary, smoke-tested through the endpoint, and only then given all the
traffic; any failure puts the endpoint back as it was.

Written against databricks-sdk's `WorkspaceClient` only: the caller hands in the champion (its
version, sample rows and the predictions the model itself makes for them) and a callback that
records why a rollout was rolled back, so this module needs no MLflow.

Databricks facts it relies on:
- an endpoint serves several entities with a traffic split, and each query answers with the
  entity that served it (`QueryEndpointResponse.served_model_name`, the `served-model-name`
  header): https://docs.databricks.com/machine-learning/model-serving/serve-multiple-models-to-serving-endpoint.html
  and databricks/sdk/service/serving.py;
- `state.config_update` is IN_PROGRESS while a new config is deployed (no other update is
  accepted meanwhile), then NOT_UPDATING, or UPDATE_FAILED / UPDATE_CANCELED, and the endpoint
  keeps serving its previous `config` until the new one is ready; `state.ready` is READY when
  every entity of the active config can be queried:
  https://docs.databricks.com/machine-learning/model-serving/manage-serving-endpoints.html
  and https://docs.databricks.com/api/azure/workspace/servingendpoints/create;
- inference tables go through the AI gateway (`put_ai_gateway`); changing their catalog, schema or
  prefix needs them disabled first (`AiGatewayInferenceTableConfig` docstrings in the SDK):
  https://docs.databricks.com/ai-gateway/inference-tables.html.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError, NotFound
from databricks.sdk.service.serving import (
    AiGatewayConfig,
    AiGatewayInferenceTableConfig,
    DataframeSplitInput,
    EndpointCoreConfigInput,
    EndpointStateConfigUpdate,
    EndpointStateReady,
    Route,
    ServedEntityInput,
    ServingEndpointDetailed,
    TrafficConfig,
)

from diabetes.scoring import same_prediction

log = logging.getLogger(__name__)

CREATED, UNCHANGED, UPDATED, ROLLED_OUT, NO_CHAMPION = (
    "created",
    "unchanged",
    "updated",
    "rolled_out",
    "no_champion",
)
WORKLOAD_SIZES = ("Small", "Medium", "Large")  # the documented sizes (ServedEntityInput)
POLL_SECONDS = 10.0
# How unlikely a canary that works is to be missed by the smoke test's queries (it gets only
# canary_percent of them): queries are sent until the canary answered or this is reached.
MISS_PROBABILITY = 1e-6
_FAILED = (EndpointStateConfigUpdate.UPDATE_FAILED, EndpointStateConfigUpdate.UPDATE_CANCELED)


@dataclass(frozen=True)
class InferenceTable:
    """Where the AI gateway logs served requests: tables `<catalog>.<schema>.<prefix>_*`."""

    catalog: str
    schema: str
    prefix: str

    @classmethod
    def parse(cls, text: str) -> InferenceTable | None:
        """`catalog.schema.prefix`, or None for an empty text (no inference table)."""
        return cls(*text.split(".")) if text else None

    def __str__(self) -> str:
        return f"{self.catalog}.{self.schema}.{self.prefix}"


@dataclass(frozen=True)
class EndpointSettings:
    """What the target asks of its endpoint (deploy.yml parameters, via the job)."""

    name: str
    model_name: str
    workload_size: str = "Small"
    scale_to_zero: bool = True
    canary_percent: int = 10
    inference_table: InferenceTable | None = None
    timeout_seconds: float = 1200.0

    def describe(self) -> str:
        table = self.inference_table or "none"
        return (
            f"model {self.model_name} @champion, workload {self.workload_size}, scale to zero"
            f" {'on' if self.scale_to_zero else 'off'}, canary {self.canary_percent} %,"
            f" inference table {table}, ready within {self.timeout_seconds:g} s"
        )


@dataclass(frozen=True)
class Champion:
    """The version to serve, sample rows (dataframe_split) and what the model predicts for them."""

    version: str
    columns: list[str]
    rows: list[list[Any]]
    expected: list[float]


@dataclass(frozen=True)
class Outcome:
    action: str  # created / unchanged / updated / rolled_out / no_champion
    endpoint: str
    version: str = ""


class RolloutError(RuntimeError):
    """The champion is not served; the endpoint was put back as it was. One line."""


class Clock:
    """Time for the waits; tests hand in one whose sleep only moves its own hands."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _Failure(Exception):
    """Why a rollout step did not succeed (becomes the rollback reason)."""


@dataclass
class _Served:
    """The part of an endpoint's config a rollback restores: its entities and traffic."""

    entities: list[ServedEntityInput] = field(default_factory=list)
    routes: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        if not self.entities:
            return "nothing"
        return ", ".join(
            f"version {e.entity_version} ({self.routes.get(e.name or '', 0)} %)"
            for e in self.entities
        )


def follow_champion(
    w: WorkspaceClient,
    settings: EndpointSettings,
    champion: Champion | None,
    on_failure: Callable[[str], None] = lambda reason: None,
    clock: Clock | None = None,
) -> Outcome:
    """Make the endpoint serve `champion` at 100 %, or leave it serving what it served and
    raise RolloutError, after `on_failure(reason)` recorded why (on the model version). No
    champion: no endpoint, nothing done."""
    if champion is None:
        log.info("no champion of %s yet: no serving endpoint", settings.model_name)
        return Outcome(NO_CHAMPION, settings.name)
    return _Rollout(w, settings, champion, on_failure, clock or Clock()).run()


def endpoint_state(w: WorkspaceClient, name: str) -> str:
    """What `make deploy-plan` shows of the endpoint now."""
    endpoint = _get(w, name)
    if endpoint is None:
        return "absent (created with the first champion)"
    text = f"serving {_served(endpoint).describe()}"
    state = endpoint.state
    if state and state.config_update and state.config_update.value != "NOT_UPDATING":
        text += f", config update {state.config_update.value}"
    if state and state.ready:
        text += f", {state.ready.value}"
    return text


class _Rollout:
    def __init__(
        self,
        w: WorkspaceClient,
        settings: EndpointSettings,
        champion: Champion,
        on_failure: Callable[[str], None],
        clock: Clock,
    ) -> None:
        self.w, self.settings, self.champion = w, settings, champion
        self.on_failure, self.clock = on_failure, clock
        self.api = w.serving_endpoints
        self.entity = _entity_name(settings.model_name, champion.version)

    def run(self) -> Outcome:
        name, version = self.settings.name, self.champion.version
        current = _get(self.w, name)
        if current is None:
            self._create()
            return Outcome(CREATED, name, version)
        try:  # nothing served changes here, so a failure needs no rollback
            current = self._wait(until_idle=True, reason="an earlier update to end")
            self._apply_gateway(current)
        except (_Failure, DatabricksError, TimeoutError) as failure:
            self._fail(None, _first_line(failure))
        previous = _served(current)
        if self._serves_champion(previous):
            log.info("endpoint %s already serves version %s: nothing to change", name, version)
            return Outcome(UNCHANGED, name, version)
        try:
            action = self._roll_out(previous)
        except (_Failure, DatabricksError, TimeoutError) as failure:
            self._fail(previous, _first_line(failure))
        log.info("endpoint %s serves version %s at 100 %%", name, version)
        return Outcome(action, name, version)

    # --- the steps ---------------------------------------------------------------------------
    def _create(self) -> None:
        """The endpoint is created with the first champion, never empty."""
        name, table = self.settings.name, self.settings.inference_table
        log.info("creating endpoint %s with version %s", name, self.champion.version)
        try:
            self.api.create(
                name,
                config=EndpointCoreConfigInput(
                    name=name,
                    served_entities=[self._target_entity()],
                    traffic_config=_traffic({self.entity: 100}),
                ),
                ai_gateway=_gateway(table) if table else None,
            )
            self._wait()
            self._smoke_test(shared=False)
        except (_Failure, DatabricksError, TimeoutError) as failure:
            # Nothing was served before, so there is nothing to go back to; the next run updates
            # the endpoint to the champion of then.
            self._fail(_Served(), _first_line(failure))

    def _roll_out(self, previous: _Served) -> str:
        target = [self._target_entity()]
        routes = {self.entity: 100}
        version = self.champion.version
        model = self.settings.model_name
        served = [(e.entity_name, e.entity_version) for e in previous.entities]
        if (model, version) in served or not served:
            # Already served (other settings, or a canary a stopped run left behind), or the
            # endpoint serves nothing: no canary, one update.
            log.info("updating endpoint %s to version %s", self.settings.name, version)
            self._update(target, routes)
            self._wait()
            self._smoke_test(shared=False)
            return UPDATED
        canary = self.settings.canary_percent
        log.info(
            "canary: version %s gets %d %% of %s beside %s",
            version,
            canary,
            self.settings.name,
            previous.describe(),
        )
        self._update(
            previous.entities + target,
            _scaled(previous.routes, 100 - canary) | {self.entity: canary},
        )
        self._wait()
        self._smoke_test(shared=True)
        log.info("canary passed: version %s gets 100 %%", version)
        self._update(target, routes)
        self._wait()
        return ROLLED_OUT

    def _fail(self, previous: _Served | None, reason: str) -> NoReturn:
        """Roll back to `previous` (None: nothing was changed), record why, raise one line."""
        name, version = self.settings.name, self.champion.version
        log.error("endpoint %s: version %s failed: %s", name, version, reason)
        restored = "the served config was not changed"
        if previous is not None:
            restored = self._roll_back(previous)
        try:
            self.on_failure(reason)
        except Exception as exc:  # recording the reason must not hide the failure itself
            log.warning("could not record the rollback reason: %s", _first_line(exc))
        raise RolloutError(
            f"serving endpoint '{name}': version {version} not served: {reason}; {restored}"
        ) from None

    def _roll_back(self, previous: _Served) -> str:
        """Put back the entities and traffic the endpoint had; say what it serves now."""
        if not previous.entities:
            return "it served nothing before, so nothing was rolled back"
        try:
            current = self._wait(until_idle=True, reason="the failed update to end")
            if _same(_served(current), previous):
                return f"it still serves {previous.describe()}"
            self._update(previous.entities, previous.routes)
            self._wait()
            return f"rolled back to {previous.describe()}"
        except (_Failure, DatabricksError, TimeoutError) as exc:
            log.error("rollback of %s failed: %s", self.settings.name, exc)
            return f"ROLLBACK FAILED ({_first_line(exc)}): see the endpoint's page"

    # --- requests ----------------------------------------------------------------------------
    def _target_entity(self) -> ServedEntityInput:
        return ServedEntityInput(
            name=self.entity,
            entity_name=self.settings.model_name,
            entity_version=self.champion.version,
            workload_size=self.settings.workload_size,
            scale_to_zero_enabled=self.settings.scale_to_zero,
        )

    def _update(self, entities: list[ServedEntityInput], routes: dict[str, int]) -> None:
        self.api.update_config(
            self.settings.name, served_entities=entities, traffic_config=_traffic(routes)
        )

    def _wait(self, until_idle: bool = False, reason: str = "") -> ServingEndpointDetailed:
        """Poll until the config update is over and the endpoint READY (`until_idle`: only until
        no update is in progress, whatever its end), within the target's timeout."""
        timeout = self.settings.timeout_seconds
        deadline = self.clock.now() + timeout
        while True:
            endpoint = self.api.get(self.settings.name)
            update = endpoint.state.config_update if endpoint.state else None
            ready = endpoint.state.ready if endpoint.state else None
            if until_idle and update != EndpointStateConfigUpdate.IN_PROGRESS:
                return endpoint
            if not until_idle and update in _FAILED:
                raise _Failure(f"the config update ended {update.value}")
            if (
                update != EndpointStateConfigUpdate.IN_PROGRESS
                and ready == EndpointStateReady.READY
            ):
                return endpoint
            if self.clock.now() >= deadline:
                waited = f"waiting for {reason}" if reason else "not READY"
                raise _Failure(
                    f"{waited} after {timeout:g} s (config update"
                    f" {update.value if update else '?'}, {ready.value if ready else '?'})"
                )
            self.clock.sleep(POLL_SECONDS)

    def _smoke_test(self, shared: bool) -> None:
        """Query the endpoint with the sample rows until the champion's entity answered (it gets
        only the canary's share while `shared`), and compare its predictions with the model's."""
        champion = self.champion
        rows = DataframeSplitInput(columns=champion.columns, data=champion.rows)
        budget = _query_budget(self.settings.canary_percent) if shared else 1
        for _ in range(budget):
            answer = self.api.query(self.settings.name, dataframe_split=rows)
            served_by = answer.served_model_name
            if served_by != self.entity and (shared or served_by is not None):
                continue  # the current version answered: not what is being tested
            _compare(answer.predictions or [], champion)
            log.info("smoke test: %d rows served as predicted", len(champion.expected))
            return
        raise _Failure(f"smoke test: the canary did not answer any of {budget} queries")

    def _apply_gateway(self, endpoint: ServingEndpointDetailed) -> None:
        """Make the inference table what the target says; other AI gateway settings (rate limits,
        guardrails, ...) are kept as they are."""
        gateway = endpoint.ai_gateway
        have = gateway.inference_table_config if gateway else None
        table = self.settings.inference_table
        want = _gateway(table).inference_table_config if table else None
        if _same_table(have, want):
            return
        kept = {
            "fallback_config": gateway.fallback_config if gateway else None,
            "guardrails": gateway.guardrails if gateway else None,
            "rate_limits": gateway.rate_limits if gateway else None,
            "usage_tracking_config": gateway.usage_tracking_config if gateway else None,
        }
        if have is not None and have.enabled:  # moved or removed: disable first
            disabled = AiGatewayInferenceTableConfig(enabled=False)
            self.api.put_ai_gateway(self.settings.name, inference_table_config=disabled, **kept)
        if want is not None:
            self.api.put_ai_gateway(self.settings.name, inference_table_config=want, **kept)
        log.info("endpoint %s: inference table %s", self.settings.name, table or "disabled")

    def _serves_champion(self, served: _Served) -> bool:
        if len(served.entities) != 1 or served.routes.get(self.entity) != 100:
            return False
        entity = served.entities[0]
        return (
            entity.name == self.entity
            and entity.entity_name == self.settings.model_name
            and entity.entity_version == self.champion.version
            and entity.workload_size == self.settings.workload_size
            and bool(entity.scale_to_zero_enabled) == self.settings.scale_to_zero
        )


# --- helpers ---------------------------------------------------------------------------------
def _get(w: WorkspaceClient, name: str) -> ServingEndpointDetailed | None:
    try:
        return w.serving_endpoints.get(name)
    except NotFound:
        return None


def _served(endpoint: ServingEndpointDetailed) -> _Served:
    config = endpoint.config
    if config is None or not config.served_entities:
        return _Served()
    entities = [_as_input(e.as_dict()) for e in config.served_entities]
    routes = {
        route.served_model_name or route.served_entity_name or "": route.traffic_percentage
        for route in (config.traffic_config.routes or [] if config.traffic_config else [])
    }
    if not routes and len(entities) == 1:  # one entity without a traffic config gets it all
        routes = {entities[0].name or "": 100}
    return _Served(entities, routes)


def _as_input(entity: dict[str, Any]) -> ServedEntityInput:
    """A served entity as the endpoint reports it, as an update sends it again. A workload size
    and provisioned concurrency bounds may not be sent together (ServedEntityInput docstrings),
    so bounds the endpoint derived from a size are left out."""
    if entity.get("workload_size"):
        entity = {k: v for k, v in entity.items() if not k.endswith("_provisioned_concurrency")}
    return ServedEntityInput.from_dict(entity)


def _same(one: _Served, other: _Served) -> bool:
    def key(served: _Served) -> tuple:
        entities = sorted(
            (e.name, e.entity_name, e.entity_version, e.workload_size, e.scale_to_zero_enabled)
            for e in served.entities
        )
        return tuple(entities), tuple(sorted(served.routes.items()))

    return key(one) == key(other)


def _entity_name(model_name: str, version: str) -> str:
    """`main.diabetes.diabetes`, 3 -> `diabetes-3` (served entity names: letters, digits, '-',
    '_'; the SDK's default, `<entity_name>-<version>`, would keep the dots)."""
    short = re.sub(r"[^A-Za-z0-9_-]+", "-", model_name.rsplit(".", 1)[-1]).strip("-")
    return f"{short or 'model'}-{version}"


def _traffic(routes: dict[str, int]) -> TrafficConfig:
    return TrafficConfig(
        routes=[Route(served_model_name=n, traffic_percentage=p) for n, p in routes.items()]
    )


def _scaled(routes: dict[str, int], total: int) -> dict[str, int]:
    """The routes' shares scaled to `total`, as integers that add up to it exactly (largest
    remainder first)."""
    whole = sum(routes.values()) or 1
    exact = {name: share * total / whole for name, share in routes.items()}
    scaled = {name: math.floor(value) for name, value in exact.items()}
    by_remainder = sorted(exact, key=lambda n: exact[n] - scaled[n], reverse=True)
    for name in by_remainder[: total - sum(scaled.values())]:
        scaled[name] += 1
    return scaled


def _query_budget(canary_percent: int) -> int:
    """Queries needed so that a canary that gets `canary_percent` % of them answers none with
    probability below MISS_PROBABILITY (10 % -> 132 queries, 1 % -> 1375)."""
    return math.ceil(math.log(MISS_PROBABILITY) / math.log(1 - canary_percent / 100))


def _compare(predictions: list[Any], champion: Champion) -> None:
    expected = champion.expected
    if len(predictions) != len(expected):
        raise _Failure(
            f"smoke test: {len(predictions)} predictions for {len(expected)} sample rows"
        )
    for row, (served, own) in enumerate(zip(predictions, expected, strict=True)):
        value = _number(served)
        if value is None or not same_prediction(value, own):
            raise _Failure(
                f"smoke test: row {row}: the endpoint answered {served!r}, version"
                f" {champion.version} predicts {own!r}"
            )


def _number(prediction: Any) -> float | None:
    """A prediction as a number: a plain number, or a one-item list or mapping around one."""
    if isinstance(prediction, dict) and len(prediction) == 1:
        prediction = next(iter(prediction.values()))
    if isinstance(prediction, list) and len(prediction) == 1:
        prediction = prediction[0]
    if isinstance(prediction, bool) or not isinstance(prediction, int | float):
        return None
    return float(prediction)


def _gateway(table: InferenceTable) -> AiGatewayConfig:
    return AiGatewayConfig(
        inference_table_config=AiGatewayInferenceTableConfig(
            catalog_name=table.catalog,
            schema_name=table.schema,
            table_name_prefix=table.prefix,
            enabled=True,
        )
    )


def _same_table(
    have: AiGatewayInferenceTableConfig | None, want: AiGatewayInferenceTableConfig | None
) -> bool:
    if want is None:
        return have is None or not have.enabled
    return have is not None and bool(have.enabled) and have.as_dict() == want.as_dict()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
