"""Deploy-serving step: make the target's Model Serving endpoint serve the champion.

Runs after `promote` in the training job, and only does something when promotion happened (or,
with deploy.yml's `serving_trigger: model`, as the job Unity Catalog starts when the champion
alias moves). The rollout itself (create, canary, smoke test, full traffic, rollback) is
`diabetes_mlops.serving.rollout`; this step finds the champion, its sample rows and the model's
own predictions for them, and records on the version why a rollout was rolled back.

A target without an endpoint gives `serving_endpoint` an empty value (deploy.yml's `local`
target: the local runner runs this task too, and must never reach for a workspace).
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
import pandas as pd
from databricks.sdk import WorkspaceClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models.utils import SERVING_INPUT_FILENAME, load_serving_example
from mlflow.tracking import MlflowClient

from diabetes_mlops.runtime.errors import ModelNotFoundError
from diabetes_mlops.runtime.parameters import Between, OneOf, TableLocation
from diabetes_mlops.serving import served_model
from diabetes_mlops.serving.endpoint_config import (
    WORKLOAD_SIZES,
    Champion,
    EndpointSettings,
    InferenceTable,
)
from diabetes_mlops.serving.names import ServingEndpointName
from diabetes_mlops.serving.rollout import MAX_TIMEOUT_SECONDS, follow_champion
from diabetes_mlops.steps.common import ModelName, Registry
from diabetes_mlops.tracking.registry import (
    ROLLBACK_REASON_TAG,
    SERVED_BY_TAG,
    SERVED_SINCE_TAG,
    SERVED_UNTIL_TAG,
    champion,
    load_version,
    set_version_tags,
    version_uri,
)
from diabetes_mlops.tracking.runs import use_registry

log = logging.getLogger(__name__)

NO_ENDPOINT, SKIPPED = "none", "skipped"


def deploy_serving(
    model_name: ModelName,
    registry: Registry = "workspace",
    promoted: bool = True,
    serving_endpoint: Annotated[str, ServingEndpointName()] = "",
    canary_percent: Annotated[int, Between(1, 99)] = 10,
    workload_size: Annotated[str, OneOf(*WORKLOAD_SIZES)] = "Small",
    scale_to_zero: bool = True,
    inference_table: Annotated[str, TableLocation()] = "",
    # The rollout's deadline (all its waits together); a rollback gets as long again. At most
    # MAX_TIMEOUT_SECONDS (2400), so that 2 x that + TASK_MARGIN_SECONDS (600) fits the task's
    # timeout_seconds (5400) in both job specs (a test checks it).
    serving_timeout_seconds: Annotated[int, Between(60, MAX_TIMEOUT_SECONDS)] = 1200,
    deploy_target: str = "",
) -> dict[str, str]:
    """Serve the champion of `model_name` on `serving_endpoint` (empty: the target serves
    nothing). `promoted` is the promote task's verdict: false leaves the endpoint alone.
    `deploy_target` (the deploy fills it): the deploy.yml target the endpoint belongs to, its
    owner tag; an endpoint another target owns is never changed."""
    if not serving_endpoint:
        log.info("serving is not configured for this target (serving_endpoint is empty)")
        return {"serving": NO_ENDPOINT, "serving_endpoint": "", "served_version": ""}
    if not promoted:
        log.info(
            "the champion did not change (promoted=false): endpoint %s left as it is",
            serving_endpoint,
        )
        return {"serving": SKIPPED, "serving_endpoint": serving_endpoint, "served_version": ""}
    settings = endpoint_settings(
        model_name,
        serving_endpoint,
        canary_percent,
        workload_size,
        scale_to_zero,
        inference_table,
        serving_timeout_seconds,
        deploy_target,
    )
    use_registry(registry, model_name)
    client = MlflowClient()
    version = champion(client, model_name)

    def record(reason: str) -> None:
        set_version_tags(client, version, {ROLLBACK_REASON_TAG: reason})

    def rolled_back(number: str) -> bool:
        """Its rollout here was rolled back, and it has not served here at 100 % since."""
        tags = _version_tags(client, model_name, number)
        return ROLLBACK_REASON_TAG in tags and tags.get(SERVED_BY_TAG) != serving_endpoint

    candidate = None if version is None else sample_predictions(version)
    if version is not None and not served_model.checks_requests(version_uri(version)):
        log.warning(
            "%s version %s was logged before the data contract travelled with the model: the"
            " endpoint will not check requests against it; train again to serve one that does",
            model_name,
            version.version,
        )
    outcome = follow_champion(
        WorkspaceClient(), settings, candidate, on_failure=record, rolled_back=rolled_back
    )
    if version is not None:
        _record_served(client, version, serving_endpoint, outcome.replaced)
    return {
        "serving": outcome.action,
        "serving_endpoint": serving_endpoint,
        "served_version": outcome.version,
    }


def _version_tags(client: MlflowClient, model_name: str, number: str) -> dict[str, str]:
    try:
        return dict(client.get_model_version(model_name, number).tags)
    except MlflowException as exc:  # a version deleted from the registry: no tags to go by
        log.warning("version %s of %s: %s", number, model_name, exc.message)
        return {}


def _record_served(
    client: MlflowClient, version: ModelVersion, endpoint: str, replaced: tuple[str, ...]
) -> None:
    """The champion is served by `endpoint`: tag it so (and since when), drop its rollback reason
    (stale now), and on the versions it replaced there drop the endpoint tag and say until when
    they served (a tag naming another endpoint stays)."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    tags = _version_tags(client, version.name, str(version.version))
    since = {} if tags.get(SERVED_BY_TAG) == endpoint else {SERVED_SINCE_TAG: now}
    set_version_tags(client, version, {SERVED_BY_TAG: endpoint, **since})
    if ROLLBACK_REASON_TAG in tags:
        client.delete_model_version_tag(version.name, version.version, ROLLBACK_REASON_TAG)
    for number in replaced:
        if _version_tags(client, version.name, number).get(SERVED_BY_TAG) == endpoint:
            client.set_model_version_tag(version.name, number, SERVED_UNTIL_TAG, now)
            client.delete_model_version_tag(version.name, number, SERVED_BY_TAG)


def endpoint_settings(
    model_name: str,
    serving_endpoint: str,
    canary_percent: int = 10,
    workload_size: str = "Small",
    scale_to_zero: bool = True,
    inference_table: str = "",
    serving_timeout_seconds: int = 1200,
    deploy_target: str = "",
) -> EndpointSettings:
    """The step's parameters as the rollout takes them (also what `make deploy-plan` shows)."""
    return EndpointSettings(
        name=serving_endpoint,
        model_name=model_name,
        workload_size=workload_size,
        scale_to_zero=scale_to_zero,
        canary_percent=canary_percent,
        inference_table=InferenceTable.parse(inference_table),
        timeout_seconds=float(serving_timeout_seconds),
        owner=deploy_target,
    )


def sample_predictions(version: ModelVersion) -> Champion:
    """The rows logged with the model as its serving example (MLflow writes
    `serving_input_example.json`, a dataframe_split body, beside the model), and what the model
    loaded from the registry predicts for them: what the endpoint must answer."""
    uri = version_uri(version)
    try:
        example = json.loads(load_serving_example(uri))["dataframe_split"]
        columns, rows = list(example["columns"]), list(example["data"])
    except (MlflowException, OSError, KeyError, TypeError, ValueError) as exc:
        raise ModelNotFoundError(
            f"{uri} has no usable {SERVING_INPUT_FILENAME} to smoke-test the endpoint with"
            f" (log the model with an input_example): {type(exc).__name__}"
        ) from None
    predicted = load_version(version).predict(pd.DataFrame(rows, columns=columns))
    expected = np.asarray(predicted, dtype=float).ravel().tolist()
    # MLflow writes a missing value as a bare NaN, which is no JSON: the SDK refuses to send it
    # (json.dumps(allow_nan=False) in databricks/sdk/_base_client.py), and a strict JSON parser
    # in front of the endpoint would refuse it too (assumed). null is what a missing value is in
    # JSON (MLflow does the same for input examples: mlflow/mlflow#5000), and the scoring server
    # reads it back as NaN, which the expected predictions were made on.
    rows = [[_json_value(value) for value in row] for row in rows]
    return Champion(str(version.version), columns, rows, expected)


def _json_value(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value
