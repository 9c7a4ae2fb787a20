"""A serving endpoint's config as the rollout reads, compares and builds it: plain values and
pure functions, no calls to a workspace."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from databricks.sdk.service.serving import (
    AiGatewayConfig,
    AiGatewayInferenceTableConfig,
    EndpointCoreConfigOutput,
    EndpointPendingConfig,
    EndpointTag,
    Route,
    ServedEntityInput,
    ServingEndpointDetailed,
    TrafficConfig,
)

from diabetes_mlops.runtime.owner import PROJECT, PROJECT_TAG, TARGET_TAG, Owner, owner_tags

WORKLOAD_SIZES = ("Small", "Medium", "Large")  # the documented sizes (ServedEntityInput)


@dataclass(frozen=True)
class InferenceTable:
    """Where the AI gateway logs served requests: tables `<catalog>.<schema>.<prefix>_*`."""

    catalog: str
    schema: str
    prefix: str

    @classmethod
    def parse(cls, text: str) -> InferenceTable | None:
        """`catalog.schema.prefix`, or None for an empty text (no inference table). Lower-cased:
        Unity Catalog stores names so, and the endpoint reports them so."""
        return cls(*text.lower().split(".")) if text else None

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
    # The deploy.yml target whose endpoint this is (runtime.owner); empty: not known (a job
    # deployed before jobs passed it on), and the endpoint's owner is neither set nor checked.
    owner: str = ""

    def describe(self) -> str:
        table = self.inference_table or "none"
        return (
            f"model {self.model_name} @champion, workload {self.workload_size}, scale to zero"
            f" {'on' if self.scale_to_zero else 'off'}, canary {self.canary_percent} %,"
            f" inference table {table}, rollout within {self.timeout_seconds:g} s"
            f" (a rollback within as long again)"
        )


@dataclass(frozen=True)
class Champion:
    """The version to serve, sample rows (dataframe_split) and what the model predicts for them."""

    version: str
    columns: list[str]
    rows: list[list[Any]]
    expected: list[float]


@dataclass
class Served:
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

    def versions(self, model_name: str) -> list[str]:
        """The versions of `model_name` it serves (at any share), in order."""
        return [
            e.entity_version or "" for e in self.entities if same_name(e.entity_name, model_name)
        ]


def served(endpoint: ServingEndpointDetailed) -> Served:
    """What the endpoint serves now (its active config)."""
    return served_in(endpoint.config)


def served_in(config: EndpointCoreConfigOutput | EndpointPendingConfig | None) -> Served:
    """The entities and traffic of an active or pending config."""
    if config is None or not config.served_entities:
        return Served()
    entities = [as_input(e.as_dict()) for e in config.served_entities]
    routes = {
        route.served_model_name or route.served_entity_name or "": route.traffic_percentage
        for route in (config.traffic_config.routes or [] if config.traffic_config else [])
    }
    if not routes and len(entities) == 1:  # one entity without a traffic config gets it all
        routes = {entities[0].name or "": 100}
    return Served(entities, routes)


def as_input(entity: dict[str, Any]) -> ServedEntityInput:
    """A served entity as the endpoint reports it, as an update sends it again. A workload size
    and provisioned concurrency bounds may not be sent together (ServedEntityInput docstrings),
    so bounds the endpoint derived from a size are left out."""
    if entity.get("workload_size"):
        entity = {k: v for k, v in entity.items() if not k.endswith("_provisioned_concurrency")}
    return ServedEntityInput.from_dict(entity)


def same(one: Served, other: Served) -> bool:
    def key(served: Served) -> tuple:
        entities = sorted(
            (
                e.name or "",
                (e.entity_name or "").lower(),
                e.entity_version or "",
                e.workload_size or "",
                bool(e.scale_to_zero_enabled),
            )
            for e in served.entities
        )
        return tuple(entities), tuple(sorted(served.routes.items()))

    return key(one) == key(other)


def same_name(one: str | None, other: str | None) -> bool:
    """Model names as Unity Catalog compares them: without regard to case."""
    return (one or "").lower() == (other or "").lower()


def entity_name(model_name: str, version: str) -> str:
    """`main.diabetes.diabetes`, 3 -> `diabetes-3` (served entity names: letters, digits, '-',
    '_'; the SDK's default, `<entity_name>-<version>`, would keep the dots)."""
    short = re.sub(r"[^A-Za-z0-9_-]+", "-", model_name.rsplit(".", 1)[-1]).strip("-")
    return f"{short or 'model'}-{version}"


def traffic(routes: dict[str, int]) -> TrafficConfig:
    return TrafficConfig(
        routes=[Route(served_model_name=n, traffic_percentage=p) for n, p in routes.items()]
    )


def scaled(routes: dict[str, int], total: int) -> dict[str, int]:
    """The routes' shares scaled to `total`, as integers that add up to it exactly (largest
    remainder first)."""
    whole = sum(routes.values())
    if not whole:  # no shares at all: equal ones
        routes, whole = dict.fromkeys(routes, 1), len(routes) or 1
    exact = {name: share * total / whole for name, share in routes.items()}
    scaled = {name: math.floor(value) for name, value in exact.items()}
    by_remainder = sorted(exact, key=lambda n: exact[n] - scaled[n], reverse=True)
    for name in by_remainder[: total - sum(scaled.values())]:
        scaled[name] += 1
    return scaled


def gateway(table: InferenceTable) -> AiGatewayConfig:
    return AiGatewayConfig(
        inference_table_config=AiGatewayInferenceTableConfig(
            catalog_name=table.catalog,
            schema_name=table.schema,
            table_name_prefix=table.prefix,
            enabled=True,
        )
    )


def same_table(
    have: AiGatewayInferenceTableConfig | None, want: AiGatewayInferenceTableConfig | None
) -> bool:
    """Unity Catalog names are case-insensitive (stored lower-case), so compared so."""
    if want is None:
        return have is None or not have.enabled

    def key(config: AiGatewayInferenceTableConfig) -> tuple[str, str, str]:
        names = (config.catalog_name, config.schema_name, config.table_name_prefix)
        return tuple((name or "").lower() for name in names)  # type: ignore[return-value]

    return have is not None and bool(have.enabled) and key(have) == key(want)


def tags_for(settings: EndpointSettings) -> list[EndpointTag] | None:
    """The owner tags an endpoint the rollout creates carries (None: no owner known)."""
    if not settings.owner:
        return None
    return [EndpointTag(key=k, value=v) for k, v in owner_tags(settings.owner).items()]


def owner_problem(endpoint: ServingEndpointDetailed, settings: EndpointSettings) -> str | None:
    """Why the rollout for target `settings.owner` may not change this endpoint (None: it may).
    It may change one tagged with its own target, and an untagged one that serves nothing but
    its own model (made by this project before endpoints carried owner tags). No owner known:
    no check."""
    if not settings.owner:
        return None
    owner = Owner.of_tags(endpoint.tags)
    if owner.is_target(settings.owner):
        return None
    name = settings.name
    if owner.ours and owner.target:
        return (
            f"serving endpoint '{name}' belongs to target '{owner.target}', and target"
            f" '{settings.owner}' would serve on it too: give the two targets distinct"
            " serving_endpoint values in deploy.yml; the endpoint was not changed"
        )
    models = {e.entity_name for e in served(endpoint).entities}
    models |= {e.entity_name for e in served_in(endpoint.pending_config).entities}
    if models and all(same_name(model, settings.model_name) for model in models):
        return None
    what = ", ".join(sorted(str(m) for m in models)) or "nothing"
    return (
        f"serving endpoint '{name}' was not made by {PROJECT} for target '{settings.owner}' (it"
        f" has no tags {PROJECT_TAG}={PROJECT}, {TARGET_TAG}={settings.owner} and serves"
        f" {what}, not only {settings.model_name}): name another serving_endpoint in"
        " deploy.yml; the endpoint was not changed"
    )
