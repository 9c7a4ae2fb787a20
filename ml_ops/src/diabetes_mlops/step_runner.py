"""`run_step`: the one call a notebook makes. Widgets in, typed arguments, step, task values out.

Steps are plain functions with annotated parameters; the annotation says how a widget's text
becomes the argument (int, float, bool, comma-separated floats, or a FilePath resolved by the
context). A step parameter without a widget takes the function's default.
"""

from __future__ import annotations

import inspect
import logging
import sys
import typing
from collections.abc import Callable, Mapping
from typing import Any

from diabetes_mlops.context import FilePath, JobContext, SparkPath, context_for
from diabetes_mlops.errors import ParameterError

log = logging.getLogger(__name__)

_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n"}


def run_step(step: Callable[..., Mapping[str, Any] | None], dbutils: Any) -> dict[str, Any]:
    """Run `step` with arguments from the notebook's widgets; publish its outputs as task values."""
    configure_logging()
    context = context_for(dbutils)
    arguments = bind_parameters(step, context)
    log.info("step %s starts", step.__name__)
    outputs = dict(step(**arguments) or {})
    for key, value in outputs.items():
        context.set_task_value(key, value)
    log.info("step %s done: %s", step.__name__, outputs)
    return outputs


def bind_parameters(step: Callable[..., Any], context: JobContext) -> dict[str, Any]:
    hints = typing.get_type_hints(step)
    arguments: dict[str, Any] = {}
    for name, parameter in inspect.signature(step).parameters.items():
        if getattr(hints.get(name), "__name__", None) == "SparkSession":
            arguments[name] = context.spark_session()
            continue
        text = context.get_param(name)
        if text is None:
            if parameter.default is inspect.Parameter.empty:
                raise ParameterError(
                    f"step '{step.__name__}' needs parameter '{name}': declare a widget for it"
                )
            continue
        arguments[name] = convert(name, text, hints.get(name, str), context)
    return arguments


def convert(name: str, text: str, kind: Any, context: JobContext) -> Any:
    """Turn a widget's text into the annotated type, with an error naming the parameter."""
    value = text.strip()
    if kind is str:
        return value
    if not value:
        raise ParameterError(f"parameter '{name}' is empty; it needs a value")
    if kind is FilePath:
        return context.resolve_path(value)
    if kind is SparkPath:
        return context.resolve_spark_path(value)
    if kind is bool:
        if value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ParameterError(f"parameter '{name}': expected true or false, got {text!r}")
    if kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            raise ParameterError(
                f"parameter '{name}': expected {'an integer' if kind is int else 'a number'},"
                f" got {text!r}"
            ) from None
    if typing.get_origin(kind) is tuple and typing.get_args(kind) == (float, ...):
        try:
            return tuple(float(part) for part in value.split(","))
        except ValueError:
            raise ParameterError(
                f"parameter '{name}': expected comma-separated numbers, got {text!r}"
            ) from None
    raise TypeError(f"parameter '{name}': unsupported annotation {kind!r}")


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
