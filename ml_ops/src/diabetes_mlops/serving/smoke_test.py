"""The smoke test of a rollout: enough queries that a canary is sure to answer some, and every
answer held to what the model itself predicts for the sample rows."""

from __future__ import annotations

import math
from typing import Any

from diabetes.scoring import same_prediction
from diabetes_mlops.serving.endpoint_config import Champion

# How unlikely a canary that works is to be missed by the smoke test's queries (it gets only
# canary_percent of them): queries are sent until the canary answered or this is reached.
MISS_PROBABILITY = 1e-6


def query_budget(canary_percent: int) -> int:
    """Queries needed so that a canary that gets `canary_percent` % of them answers none with
    probability below MISS_PROBABILITY (10 % -> 132 queries, 1 % -> 1375)."""
    return math.ceil(math.log(MISS_PROBABILITY) / math.log(1 - canary_percent / 100))


def problem(predictions: list[Any], champion: Champion) -> str | None:
    """What is wrong with the endpoint's answers for the sample rows; None when each is what
    the champion predicts."""
    expected = champion.expected
    if len(predictions) != len(expected):
        return f"smoke test: {len(predictions)} predictions for {len(expected)} sample rows"
    for row, (served, own) in enumerate(zip(predictions, expected, strict=True)):
        value = _number(served)
        if value is None or not same_prediction(value, own):
            return (
                f"smoke test: row {row}: the endpoint answered {served!r}, version"
                f" {champion.version} predicts {own!r}"
            )
    return None


def _number(prediction: Any) -> float | None:
    """A prediction as a number: a plain number, or a one-item list or mapping around one."""
    if isinstance(prediction, dict) and len(prediction) == 1:
        prediction = next(iter(prediction.values()))
    if isinstance(prediction, list) and len(prediction) == 1:
        prediction = prediction[0]
    if isinstance(prediction, bool) or not isinstance(prediction, int | float):
        return None
    return float(prediction)
