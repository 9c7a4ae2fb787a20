"""`run_step`: the one call a notebook makes. Widgets in, typed arguments, step, task values out.

Steps are plain functions with annotated parameters; the annotation says how a widget's text
becomes the argument (int, float, bool, comma-separated floats, or a FilePath resolved by the
context) and, with `typing.Annotated`, which rules the value must meet (see
`diabetes_mlops.runtime.parameters`). A step
parameter without a widget takes the function's default.
"""

from __future__ import annotations

import inspect
import logging
import sys
import typing
from collections.abc import Callable, Mapping
from typing import Any

from diabetes_mlops.runtime.context import FilePath, JobContext, context_for
from diabetes_mlops.runtime.errors import ParameterError
from diabetes_mlops.runtime.parameters import (
    Declared,
    declaration,
    declared_parameters,
    is_spark_session,
    read_arguments,
    visible_problems,
)

log = logging.getLogger(__name__)


def run_step(
    step: Callable[..., Mapping[str, Any] | None],
    dbutils: Any,
    known: Mapping[str, Declared] | None = None,
) -> dict[str, Any]:
    """Run `step` with arguments from the notebook's widgets; publish its outputs as task values.

    Before the step starts, every value the task can see of a parameter in `known` (the
    parameters of all steps) is judged too. Databricks pushes job parameters down to every task
    of the job, so the first task refuses a value that only a later task takes, before anything
    is written: a bad `rmse_tolerance` stops the job in `train`, not after it registered a model.
    """
    configure_logging()
    context = context_for(dbutils)
    own = declared_parameters(step)
    others = {name: p for name, p in (known or {}).items() if name not in own}
    problems = visible_problems(others, context.get_param)
    try:
        arguments = bind_parameters(step, context)
    except ParameterError as exc:
        problems.insert(0, str(exc))
    if problems:
        raise ParameterError("\n".join(problems))
    log.info("step %s starts", step.__name__)
    outputs = dict(step(**arguments) or {})
    for key, value in outputs.items():
        context.set_task_value(key, value)
    log.info("step %s done: %s", step.__name__, outputs)
    return outputs


def bind_parameters(step: Callable[..., Any], context: JobContext) -> dict[str, Any]:
    """The step's arguments from the context; ParameterError lists every problem, one a line."""
    arguments, problems = read_arguments(step, context.get_param, _resolver(context))
    if problems:
        raise ParameterError("\n".join(problems))
    hints = typing.get_type_hints(step)
    for name in inspect.signature(step).parameters:
        if is_spark_session(hints.get(name)):
            arguments[name] = context.spark_session()
    return arguments


def convert(name: str, text: str, kind: Any, context: JobContext) -> Any:
    """Turn a widget's text into the annotated type, with an error naming the parameter."""
    return declaration(name, kind).parse(text, _resolver(context))


def _resolver(context: JobContext) -> Callable[[Any, str], str]:
    def resolve(kind: Any, path: str) -> str:
        return context.resolve_path(path) if kind is FilePath else context.resolve_spark_path(path)

    return resolve


def configure_logging() -> None:
    """Steps log to stdout, which shows in the notebook output and the local runner's console."""
    for name in ("diabetes", "diabetes_mlops"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            handler = _StdoutHandler()
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
            )
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is now (notebook output, pytest capture), not at creation."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass
