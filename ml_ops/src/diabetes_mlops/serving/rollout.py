"""A Model Serving endpoint that follows the champion: created with the first one, then each new
champion rolled out as a canary, smoke-tested through the endpoint, and only then given all the
traffic; any failure puts the endpoint back as it was.

Written against databricks-sdk's `WorkspaceClient` only: the caller hands in the champion (its
version, sample rows and the predictions the model itself makes for them) and a callback that
records why a rollout was rolled back, so this module needs no MLflow.

The Model Serving behaviour it relies on (traffic splits, `state.config_update`, no way to cancel
an update, integer routes, inference tables through the AI gateway, lower-case Unity Catalog
names), with the Databricks and databricks-sdk sources for each: docs/serving.md, "Model Serving
facts the rollout relies on".

Time: the rollout (waiting for an earlier update, the canary, the full traffic) has one deadline,
`timeout_seconds` from its start; a rollback gets a budget of its own of the same length. So a
run waits at most 2 x `timeout_seconds`, plus the smoke test's queries (bounded in number): the
task's timeout must leave room for that (MAX_TIMEOUT_SECONDS, TASK_MARGIN_SECONDS).

The inference table is a setting of the target, not of a model version, so it is not part of a
rollback: it is applied (only when it differs) after any earlier update ended and before the
served entities change; if applying it fails, nothing else was changed. A rollback of the served
entities leaves it as the target asks, because it is right for whatever version serves, and
putting the old one back would only make the next run move it again (moving a table needs it
disabled first, a gap in the logged requests each time).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import (
    DatabricksError,
    NotFound,
    ResourceAlreadyExists,
    ResourceConflict,
)
from databricks.sdk.service.serving import (
    AiGatewayInferenceTableConfig,
    DataframeSplitInput,
    EndpointCoreConfigInput,
    EndpointStateConfigUpdate,
    EndpointStateReady,
    ServedEntityInput,
    ServingEndpointDetailed,
)

from diabetes_mlops.runtime.errors import UserError, first_line
from diabetes_mlops.serving import endpoint_config, smoke_test
from diabetes_mlops.serving.endpoint_config import (
    Champion,
    EndpointSettings,
    Served,
)

log = logging.getLogger(__name__)

CREATED, UNCHANGED, UPDATED, ROLLED_OUT, NO_CHAMPION = (
    "created",
    "unchanged",
    "updated",
    "rolled_out",
    "no_champion",
)

POLL_SECONDS = 10.0
# serving_timeout_seconds is at most this, so that the rollout's deadline, the rollback's budget
# and TASK_MARGIN_SECONDS (notebook start, the model loaded for the expected predictions, the
# smoke test's queries, API calls) fit in the deploy_serving task's timeout (5400 s in both job
# specs): 2 x 2400 + 600 = 5400.
MAX_TIMEOUT_SECONDS = 2400
TASK_MARGIN_SECONDS = 600
_FAILED = (EndpointStateConfigUpdate.UPDATE_FAILED, EndpointStateConfigUpdate.UPDATE_CANCELED)


@dataclass(frozen=True)
class Outcome:
    action: str  # created / unchanged / updated / rolled_out / no_champion
    endpoint: str
    version: str = ""
    # Versions of the model the endpoint served before and serves no more (replaced).
    replaced: tuple[str, ...] = ()


class RolloutError(UserError, RuntimeError):
    """The champion is not served; the endpoint was put back as it was. One line."""


class Clock:
    """Time for the waits; tests hand in one whose sleep only moves its own hands."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _Failure(Exception):
    """Why a rollout step did not succeed (becomes the rollback reason)."""


class _Foreign(Exception):
    """The endpoint holds a config (or an update) this run did not send: someone else's."""


class _Budget:
    """One deadline for a series of waits: the rollout's, or a rollback's."""

    def __init__(self, clock: Clock, seconds: float, what: str) -> None:
        self.clock, self.seconds, self.what = clock, seconds, what
        self.end = clock.now() + seconds

    def over(self) -> bool:
        return self.clock.now() >= self.end

    def __str__(self) -> str:
        return f"the {self.what}'s {self.seconds:g} s"


def follow_champion(
    w: WorkspaceClient,
    settings: EndpointSettings,
    champion: Champion | None,
    on_failure: Callable[[str], None] = lambda reason: None,
    clock: Clock | None = None,
    rolled_back: Callable[[str], bool] = lambda version: False,
) -> Outcome:
    """Make the endpoint serve `champion` at 100 %, or leave it serving what it served and
    raise RolloutError, after `on_failure(reason)` recorded why (on the model version). No
    champion: no endpoint, nothing done.

    `rolled_back(version)`: whether that version of the model had its rollout on this endpoint
    rolled back and was not served successfully since (the step reads the version's tags). The
    endpoint may still serve such a version, beside the one that served before: a canary whose
    update Databricks finished after the rollback had to give up. It is never kept beside a new
    canary nor put back by a rollback; as the champion it is rolled out again as a canary."""
    if champion is None:
        log.info("no champion of %s yet: no serving endpoint", settings.model_name)
        return Outcome(NO_CHAMPION, settings.name)
    return _Rollout(w, settings, champion, on_failure, rolled_back, clock or Clock()).run()


class _Rollout:
    def __init__(
        self,
        w: WorkspaceClient,
        settings: EndpointSettings,
        champion: Champion,
        on_failure: Callable[[str], None],
        rolled_back: Callable[[str], bool],
        clock: Clock,
    ) -> None:
        self.w, self.settings, self.champion = w, settings, champion
        self.on_failure, self.clock = on_failure, clock
        self.rolled_back = functools.cache(rolled_back)  # one look per version and run
        self.api = w.serving_endpoints
        self.entity = endpoint_config.entity_name(settings.model_name, champion.version)
        self.deadline = _Budget(clock, settings.timeout_seconds, "rollout")
        self.before = Served()  # what the endpoint served when the rollout began
        self.sent: list[Served] = []  # the configs this run sent (or tried to), in order
        self.seen: ServingEndpointDetailed | None = None  # the endpoint as last read

    def run(self) -> Outcome:
        name, version = self.settings.name, self.champion.version
        try:
            current = find_endpoint(self.w, name)
        except DatabricksError as exc:
            self._fail(_reason(exc), lambda: "the served versions were not changed")
        if current is None:
            return self._create()
        problem = endpoint_config.owner_problem(current, self.settings)
        if problem:  # not this target's endpoint: no rollout, and no version marked as failed
            raise RolloutError(problem)
        try:  # nothing served changes here, so a failure needs no rollback
            self._claim(current)
            current = self._wait(self.deadline, until_idle=True, reason="an earlier update to end")
            self._apply_gateway(current)
        except Exception as failure:
            self._fail(_reason(failure), self._unchanged)
        self.before = endpoint_config.served(current)
        if self._serves_champion(self.before):
            log.info("endpoint %s already serves version %s: nothing to change", name, version)
            return Outcome(UNCHANGED, name, version)
        try:
            action = self._roll_out()
        except Exception as failure:  # whatever failed, the endpoint goes back
            self._fail(_reason(failure), self._roll_back)
        log.info("endpoint %s serves version %s at 100 %%", name, version)
        replaced = [v for v in self.before.versions(self.settings.model_name) if v != version]
        return Outcome(action, name, version, tuple(dict.fromkeys(replaced)))

    # --- the steps ---------------------------------------------------------------------------
    def _create(self) -> Outcome:
        """The endpoint is created with the first champion, never empty: if that fails, the
        endpoint this run created is deleted again (it served nothing before)."""
        name, table = self.settings.name, self.settings.inference_table
        target = self._target()
        log.info("creating endpoint %s with version %s", name, self.champion.version)
        undo = self._not_created
        try:
            self.sent.append(target)
            try:
                self.api.create(
                    name,
                    config=EndpointCoreConfigInput(
                        name=name,
                        served_entities=target.entities,
                        traffic_config=endpoint_config.traffic(target.routes),
                    ),
                    ai_gateway=endpoint_config.gateway(table) if table else None,
                    tags=endpoint_config.tags_for(self.settings),
                )
            except ResourceAlreadyExists:
                self._created_meanwhile(target)
            undo = self._delete_created  # ours from here on: we just created it
            self._wait(self.deadline)
            self._smoke_test(shared=False)
        except Exception as failure:
            self._fail(_reason(failure), undo)
        return Outcome(CREATED, name, self.champion.version)

    def _created_meanwhile(self, target: Served) -> None:
        """The create was refused because the endpoint exists: made by this very create, sent
        again by the SDK after its answer was lost (then it is this target's and updating to
        `target`), or by someone else meanwhile (raised: not ours to delete)."""
        endpoint = self.seen = self.api.get(self.settings.name)
        problem = endpoint_config.owner_problem(endpoint, self.settings)
        pending = endpoint_config.served_in(endpoint.pending_config)
        config = endpoint_config.served(endpoint)
        if problem or not (
            endpoint_config.same(pending, target) or endpoint_config.same(config, target)
        ):
            raise _Failure(problem or "the endpoint exists, created meanwhile by someone else")
        log.info(
            "endpoint %s exists with what this run sent: its create went through", endpoint.name
        )

    def _claim(self, endpoint: ServingEndpointDetailed) -> None:
        """Tag an endpoint of this target made before endpoints carried owner tags."""
        tags = endpoint_config.tags_for(self.settings)
        have = {(t.key, t.value) for t in endpoint.tags or []}
        if tags and not {(t.key, t.value) for t in tags} <= have:
            self.api.patch(self.settings.name, add_tags=tags)
            log.info("endpoint %s: tagged as target %s's", self.settings.name, self.settings.owner)

    def _roll_out(self) -> str:
        before, version = self.before, self.champion.version
        target = self._target()
        kept = self._trusted(before, leave_out=version)
        champion_served = version in before.versions(self.settings.model_name)
        if (champion_served and not self.rolled_back(version)) or not kept.entities:
            # The champion served here before (other settings, or it is the previous version
            # again), or nothing trustworthy serves beside which a canary could run (nothing at
            # all, or only versions whose rollout was rolled back): one update, smoke-tested.
            log.info("updating endpoint %s to version %s", self.settings.name, version)
            self._send(target)
            self._wait(self.deadline)
            self._smoke_test(shared=False)
            return UPDATED
        share = self.settings.canary_percent
        canary = Served(
            kept.entities + target.entities,
            endpoint_config.scaled(kept.routes, 100 - share) | {self.entity: share},
        )
        if endpoint_config.same(
            before, canary
        ):  # a canary an earlier run left: tested again, not resent
            log.info("canary already in place: %s", canary.describe())
        else:
            log.info("canary: %s on %s", canary.describe(), self.settings.name)
            self._send(canary)
        self._wait(self.deadline)
        self._smoke_test(shared=True)
        log.info("canary passed: version %s gets 100 %%", version)
        self._send(target)
        self._wait(self.deadline)
        return ROLLED_OUT

    def _fail(self, reason: str, undo: Callable[[], str]) -> NoReturn:
        """Undo what this run changed (`undo` says what the endpoint serves then), record why,
        raise one line."""
        name, version = self.settings.name, self.champion.version
        log.error("endpoint %s: version %s failed: %s", name, version, reason)
        restored = undo()
        try:
            self.on_failure(reason)
        except Exception as exc:  # recording the reason must not hide the failure itself
            log.warning("could not record the rollback reason: %s", first_line(exc))
        raise RolloutError(
            f"serving endpoint '{name}': version {version} not served: {reason}; {restored}"
        ) from None

    def _unchanged(self) -> str:
        return f"the served versions were not changed: {self._serving_now()}"

    def _not_created(self) -> str:
        return "this run created no endpoint, so it deleted none"

    def _delete_created(self) -> str:
        """The endpoint this run created never served anything before: deleted, so that it is
        not left without a version to serve. The next run creates it again."""
        try:
            self.api.delete(self.settings.name)
        except NotFound:
            pass
        except DatabricksError as exc:
            return (
                f"the endpoint this run created could not be deleted ({first_line(exc)}):"
                f" {self._serving_now()}; the next run of this task finishes the job"
            )
        return "the endpoint this run created was deleted (it served nothing before)"

    def _roll_back(self) -> str:
        """Put back what the endpoint served before this run, less any version whose rollout was
        rolled back; within a budget of its own. Only over a config this run sent: an endpoint
        someone else changed meanwhile is left as it is. Say what the endpoint serves now."""
        restore = self._restore_target()
        if not restore.entities:
            return "it served nothing before, so nothing was rolled back"
        budget = _Budget(self.clock, self.settings.timeout_seconds, "rollback")
        try:
            endpoint = self._wait(
                budget, until_idle=True, reason="the failed update to end", check_pending=True
            )
            current = endpoint_config.served(endpoint)
            if endpoint_config.same(current, restore):
                return f"it still serves {restore.describe()}"
            if not any(
                endpoint_config.same(current, config) for config in [self.before, *self.sent]
            ):
                raise _Foreign(f"it serves {current.describe()}, a config this run did not send")
            log.info("rolling %s back to %s", self.settings.name, restore.describe())
            self._send(restore)
            self._wait(budget)
            return f"rolled back to {restore.describe()}"
        except _Foreign as exc:
            return f"NOT rolled back: someone else changed the endpoint meanwhile ({exc})"
        except _Failure as exc:  # the rollback's budget ran out, or its update failed
            return (
                f"rollback unfinished ({exc}): {self._serving_now()}; the next run of this task"
                " finishes the job"
            )
        except Exception as exc:
            log.error("rollback of %s failed: %s", self.settings.name, _reason(exc))
            return (
                f"ROLLBACK FAILED ({first_line(exc)}): {self._serving_now()}; the next run of"
                " this task finishes the job"
            )

    def _restore_target(self) -> Served:
        """What a rollback puts back: the previous config without versions whose rollout was
        rolled back (their shares go to the others); the previous config itself if nothing
        else is left, so that the endpoint never serves nothing."""
        trusted = self._trusted(self.before)
        return trusted if trusted.entities else self.before

    def _trusted(self, served: Served, leave_out: str | None = None) -> Served:
        """`served` without the entities of version `leave_out` and of versions whose rollout
        was rolled back, their traffic shared by the others in proportion (to 100 %)."""
        model = self.settings.model_name
        entities = [
            e
            for e in served.entities
            if not endpoint_config.same_name(e.entity_name, model)
            or (e.entity_version != leave_out and not self.rolled_back(e.entity_version or ""))
        ]
        names = [e.name or "" for e in entities]
        return Served(
            entities, endpoint_config.scaled({n: served.routes.get(n, 0) for n in names}, 100)
        )

    def _serving_now(self) -> str:
        """What the endpoint serves as last read, and the update Databricks is still deploying."""
        if self.seen is None:
            return "see the endpoint's page for what it serves"
        text = f"it serves {endpoint_config.served(self.seen).describe()}"
        state = self.seen.state
        if state and state.config_update == EndpointStateConfigUpdate.IN_PROGRESS:
            pending = endpoint_config.served_in(self.seen.pending_config).describe()
            text += f" while Databricks still deploys {pending} (an update cannot be cancelled)"
        return text

    # --- requests ----------------------------------------------------------------------------
    def _target(self) -> Served:
        """The champion alone at 100 %, with the target's settings."""
        entity = ServedEntityInput(
            name=self.entity,
            entity_name=self.settings.model_name,
            entity_version=self.champion.version,
            workload_size=self.settings.workload_size,
            scale_to_zero_enabled=self.settings.scale_to_zero,
        )
        return Served([entity], {self.entity: 100})

    def _send(self, config: Served) -> None:
        # Counted as sent before the request: one the SDK retried may have been applied.
        self.sent.append(config)
        try:
            self.api.update_config(
                self.settings.name,
                served_entities=config.entities,
                traffic_config=endpoint_config.traffic(config.routes),
            )
        except ResourceConflict:
            # One update at a time: refused as in progress. When the update in progress is this
            # one (the SDK sent it again after its answer was lost), it went through.
            endpoint = self.seen = self.api.get(self.settings.name)
            pending = endpoint_config.served_in(endpoint.pending_config)
            if not (endpoint.pending_config and endpoint_config.same(pending, config)):
                raise
            log.info(
                "endpoint %s: the update to %s went through", endpoint.name, pending.describe()
            )

    def _wait(
        self,
        budget: _Budget,
        until_idle: bool = False,
        reason: str = "",
        check_pending: bool = False,
    ) -> ServingEndpointDetailed:
        """Poll until the config update is over and the endpoint READY (`until_idle`: only until
        no update is in progress, whatever its end), by `budget`'s deadline. `check_pending`: an
        update in progress must be the last config this run sent (else _Foreign)."""
        while True:
            endpoint = self.seen = self.api.get(self.settings.name)
            update = endpoint.state.config_update if endpoint.state else None
            ready = endpoint.state.ready if endpoint.state else None
            if check_pending and update == EndpointStateConfigUpdate.IN_PROGRESS:
                pending = endpoint_config.served_in(endpoint.pending_config)
                if endpoint.pending_config and not (
                    self.sent and endpoint_config.same(pending, self.sent[-1])
                ):
                    raise _Foreign(
                        f"an update to {pending.describe()} this run did not send is in progress"
                    )
            if until_idle and update != EndpointStateConfigUpdate.IN_PROGRESS:
                return endpoint
            if not until_idle and update in _FAILED:
                raise _Failure(f"the config update ended {update.value}")
            if (
                update != EndpointStateConfigUpdate.IN_PROGRESS
                and ready == EndpointStateReady.READY
            ):
                return endpoint
            if budget.over():
                waited = f"waiting for {reason}: not over" if reason else "not READY"
                raise _Failure(
                    f"{waited} within {budget} (config update"
                    f" {update.value if update else '?'}, {ready.value if ready else '?'})"
                )
            self.clock.sleep(POLL_SECONDS)

    def _smoke_test(self, shared: bool) -> None:
        """Query the endpoint with the sample rows until the champion's entity answered (it gets
        only the canary's share while `shared`), and compare its predictions with the model's."""
        champion = self.champion
        rows = DataframeSplitInput(columns=champion.columns, data=champion.rows)
        budget = smoke_test.query_budget(self.settings.canary_percent) if shared else 1
        for _ in range(budget):
            answer = self.api.query(self.settings.name, dataframe_split=rows)
            served_by = answer.served_model_name
            if served_by != self.entity and (shared or served_by is not None):
                continue  # the current version answered: not what is being tested
            wrong = smoke_test.problem(answer.predictions or [], champion)
            if wrong:
                raise _Failure(wrong)
            log.info("smoke test: %d rows served as predicted", len(champion.expected))
            return
        raise _Failure(f"smoke test: the canary did not answer any of {budget} queries")

    def _apply_gateway(self, endpoint: ServingEndpointDetailed) -> None:
        """Make the inference table what the target says; other AI gateway settings (rate limits,
        guardrails, ...) are kept as they are."""
        gateway = endpoint.ai_gateway
        have = gateway.inference_table_config if gateway else None
        table = self.settings.inference_table
        want = endpoint_config.gateway(table).inference_table_config if table else None
        if endpoint_config.same_table(have, want):
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

    def _serves_champion(self, served: Served) -> bool:
        if len(served.entities) != 1 or served.routes.get(self.entity) != 100:
            return False
        entity = served.entities[0]
        return (
            entity.name == self.entity
            and endpoint_config.same_name(entity.entity_name, self.settings.model_name)
            and entity.entity_version == self.champion.version
            and entity.workload_size == self.settings.workload_size
            and bool(entity.scale_to_zero_enabled) == self.settings.scale_to_zero
        )


# --- helpers ---------------------------------------------------------------------------------
def find_endpoint(w: WorkspaceClient, name: str) -> ServingEndpointDetailed | None:
    try:
        return w.serving_endpoints.get(name)
    except NotFound:
        return None


def _reason(exc: Exception) -> str:
    """A failure as one line; one no step anticipated is logged with its traceback too."""
    if not isinstance(exc, _Failure | DatabricksError | TimeoutError):
        log.error("unexpected failure", exc_info=exc)
        return f"{type(exc).__name__}: {first_line(exc)}"
    return first_line(exc)
