"""What a task reads when it runs locally: `{{...}}` references filled from the job run's task
values, and a condition task's outcome. Kept apart from the runner, which decides what runs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from diabetes_mlops.jobs.control_tasks import (
    ConditionError,
    ConditionTask,
    evaluate,
    operand_value_problem,
)
from diabetes_mlops.jobs.specs import REFERENCE, TASK_VALUE
from diabetes_mlops.runtime.errors import ParameterError


def resolve_references(
    value: str, task_values: Mapping[str, Mapping[str, Any]], task_key: str, run_id: str
) -> str:
    """Fill Databricks dynamic value references such as {{tasks.train.values.model_version}}."""

    def fill(match) -> str:
        reference = match.group(1)
        task_value = TASK_VALUE.match(reference)
        if task_value:
            upstream, key = task_value.groups()
            if key not in task_values.get(upstream, {}):
                raise ParameterError(f"task '{upstream}' did not set value '{key}'")
            return task_value_text(task_values[upstream][key])
        known = {"job.id": "local", "job.run_id": run_id, "task.name": task_key}
        known["task.run_id"] = f"{run_id}-{task_key}"
        if reference not in known:
            raise ParameterError(f"unsupported reference {match.group(0)}")
        return known[reference]

    return REFERENCE.sub(fill, value)


def task_value_text(value: Any) -> str:
    """A task value as a reference reads it: a string as is, anything else as JSON. Databricks:
    "if a task value is set to a boolean value, it is serialized to "true" or "false""
    (https://docs.databricks.com/jobs/if-else.html); Python's str(True) would say "True"."""
    return value if isinstance(value, str) else json.dumps(value)


def condition_outcome(
    task: ConditionTask, task_values: Mapping[str, Mapping[str, Any]], run_id: str
) -> tuple[str, str, str]:
    """(left, right, "true" or "false"): the operands with their references filled, compared by
    the task's operator (see control_tasks.evaluate)."""
    operands = []
    for text in (task.left, task.right):
        for match in map(TASK_VALUE.match, REFERENCE.findall(text)):
            values = task_values.get(match.group(1), {}) if match else {}
            if match and match.group(2) in values:
                problem = operand_value_problem(values[match.group(2)])
                if problem:
                    raise ConditionError(f"{problem} ({{{{{match.group(0)}}}}})")
        operands.append(resolve_references(text, task_values, task.key, run_id))
    left, right = operands
    return left, right, "true" if evaluate(task.op, left, right) else "false"
