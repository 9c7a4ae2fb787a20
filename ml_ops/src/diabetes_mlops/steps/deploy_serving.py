"""Deploy-serving step: make the target's Model Serving endpoint serve the champion.

Runs after `promote` in the training job, and only does something when promotion happened (or,
with deploy.yml's `serving_trigger: model`, as the job Unity Catalog starts when the champion
alias moves). The rollout itself (create, canary, smoke test, full traffic, rollback) is
`diabetes_mlops.deploy.serving`; this step finds the champion, its sample rows and the model's
own predictions for them, and records on the version why a rollout was rolled back.

A target without an endpoint gives `serving_endpoint` an empty value (deploy.yml's `local`
target: the local runner runs this task too, and must never reach for a workspace).
"""

from __future__ import annotations

import json
import logging
from typing import Annotated

import numpy as np
import pandas as pd
from databricks.sdk import WorkspaceClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models.utils import SERVING_INPUT_FILENAME, load_serving_example
from mlflow.tracking import MlflowClient

from diabetes_mlops.deploy.serving import (
    WORKLOAD_SIZES,
    Champion,
    EndpointSettings,
    InferenceTable,
    follow_champion,
)
from diabetes_mlops.errors import ModelNotFoundError
from diabetes_mlops.parameters import Between, OneOf, ServingEndpointName, TableLocation
from diabetes_mlops.registry import champion, load_version, set_version_tags
from diabetes_mlops.steps.common import ModelName, Registry
from diabetes_mlops.tracking import use_registry

log = logging.getLogger(__name__)

# Model-version tags: why the version is not served (set on a rollback), and where it is.
ROLLBACK_REASON_TAG = "serving_rollback_reason"
SERVED_BY_TAG = "serving_endpoint"
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
    serving_timeout_seconds: Annotated[int, Between(60, 3600)] = 1200,
) -> dict[str, str]:
    """Serve the champion of `model_name` on `serving_endpoint` (empty: the target serves
    nothing). `promoted` is the promote task's verdict: false leaves the endpoint alone."""
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
    )
    use_registry(registry, model_name)
    client = MlflowClient()
    version = champion(client, model_name)

    def record(reason: str) -> None:
        set_version_tags(client, version, {ROLLBACK_REASON_TAG: reason})

    candidate = None if version is None else sample_predictions(version)
    outcome = follow_champion(WorkspaceClient(), settings, candidate, on_failure=record)
    if version is not None:
        set_version_tags(client, version, {SERVED_BY_TAG: serving_endpoint})
    return {
        "serving": outcome.action,
        "serving_endpoint": serving_endpoint,
        "served_version": outcome.version,
    }


def endpoint_settings(
    model_name: str,
    serving_endpoint: str,
    canary_percent: int = 10,
    workload_size: str = "Small",
    scale_to_zero: bool = True,
    inference_table: str = "",
    serving_timeout_seconds: int = 1200,
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
    )


def sample_predictions(version: ModelVersion) -> Champion:
    """The rows logged with the model as its serving example (MLflow writes
    `serving_input_example.json`, a dataframe_split body, beside the model), and what the model
    loaded from the registry predicts for them: what the endpoint must answer."""
    uri = f"models:/{version.name}/{version.version}"
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
    return Champion(str(version.version), columns, rows, expected)
