"""The steps a job runs. Each is a plain function; notebooks call them through `run_step`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from diabetes_mlops.runtime import step_runner
from diabetes_mlops.runtime.parameters import Declared, parameter_registry
from diabetes_mlops.steps.approval import approval
from diabetes_mlops.steps.batch_score import batch_score
from diabetes_mlops.steps.deploy_serving import deploy_serving
from diabetes_mlops.steps.monitor import monitor
from diabetes_mlops.steps.promote import promote
from diabetes_mlops.steps.train import train
from diabetes_mlops.steps.validate import validate

# Every step a notebook may run, by the name its `run_step(<step>, dbutils)` line uses.
STEPS: dict[str, Callable[..., Any]] = {
    step.__name__: step
    for step in (train, validate, approval, promote, batch_score, monitor, deploy_serving)
}


@cache
def parameter_rules() -> Mapping[str, Declared]:
    """Every parameter any step declares, with its type and rules (one meaning per name)."""
    return parameter_registry(STEPS.values())


def run_step(step: Callable[..., Mapping[str, Any] | None], dbutils: Any) -> dict[str, Any]:
    """Run `step` in a notebook; first judge every parameter of any step the task can see."""
    return step_runner.run_step(step, dbutils, known=parameter_rules())


__all__ = [
    "STEPS",
    "approval",
    "batch_score",
    "deploy_serving",
    "monitor",
    "parameter_rules",
    "promote",
    "run_step",
    "train",
    "validate",
]
