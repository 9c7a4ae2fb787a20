"""Which fields JobSettings has, and what type each holds: read from the databricks-sdk
dataclasses, so a spec is checked against the same API version the deployer sends it with.

One exception to the SDK's types: run_job_task.job_id holds the placeholder ${job_id.<spec name>}
(a string) where the SDK expects the int the deployer fills in, since a literal id would be one
workspace's.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import types
import typing
from typing import Any

from databricks.sdk.service import jobs

from diabetes_mlops.jobs.control_tasks import JOB_ID, JOB_ID_FIELD


def unknown_fields(settings: dict[str, Any]) -> list[str]:
    """Fields JobSettings does not know, and values the SDK cannot read (e.g. a bad enum)."""
    problems = _walk(settings, jobs.JobSettings, "")
    if problems:
        return problems
    settings = _with_int_job_ids(settings)  # from_dict reads job_id with int()
    roundtrip = jobs.JobSettings.from_dict(settings).as_dict()
    return [f"field '{p}': invalid value" for p in _dropped(settings, roundtrip, "")]


def _with_int_job_ids(settings: dict[str, Any]) -> dict[str, Any]:
    """A copy with every ${job_id.X} (the walk let it through) read as an int would be."""
    settings = copy.deepcopy(settings)
    for task in settings.get("tasks") or []:
        run_job = task.get("run_job_task") or {}
        if isinstance(run_job.get("job_id"), str):
            run_job["job_id"] = 0
    return settings


def _walk(value: Any, kind: Any, where: str) -> list[str]:
    kind = _unwrap(kind)
    origin = typing.get_origin(kind)
    expected = _scalar(kind)
    if expected is not None:
        if kind is int and JOB_ID_FIELD.fullmatch(where):  # ${job_id.<spec name>}, filled by deploy
            if isinstance(value, str) and JOB_ID.fullmatch(value):
                return []
            if not isinstance(value, int) or isinstance(value, bool):
                got = f"{type(value).__name__} {value!r}"
                return [f"field '{where}': expected ${{job_id.<spec name>}}, got {got}"]
        types_, name = expected
        if isinstance(value, types_) and not (isinstance(value, bool) and bool not in types_):
            return []
        return [f"field '{where}': expected {name}, got {type(value).__name__} {value!r}"]
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            return [f"field '{where or 'JobSettings'}': expected an object"]
        hints = typing.get_type_hints(kind)
        problems = []
        for key, item in value.items():
            path = f"{where}.{key}" if where else key
            if key not in hints:
                problems.append(f"unknown field '{path}' (not in {kind.__name__})")
            else:
                problems += _walk(item, hints[key], path)
        return problems
    if origin is list:
        if not isinstance(value, list):
            return [f"field '{where}': expected a list"]
        (inner,) = typing.get_args(kind)
        return [p for i, item in enumerate(value) for p in _walk(item, inner, f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"field '{where}': expected an object"]
        inner = typing.get_args(kind)[1]
        return [p for k, item in value.items() for p in _walk(item, inner, f"{where}.{k}")]
    return []


def _scalar(kind: Any) -> tuple[tuple[type, ...], str] | None:
    if kind is str or (isinstance(kind, type) and issubclass(kind, enum.Enum)):
        return (str,), "a string"
    if kind is bool:
        return (bool,), "true or false"
    if kind is int:
        return (int,), "an integer"
    if kind is float:
        return (int, float), "a number"
    return None


def _unwrap(kind: Any) -> Any:
    """Optional[X] -> X."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return args[0] if len(args) == 1 else kind
    return kind


def _dropped(given: Any, kept: Any, where: str) -> list[str]:
    """Paths whose non-empty value did not survive from_dict/as_dict."""
    if isinstance(given, dict):
        kept = kept if isinstance(kept, dict) else {}
        return [
            p
            for key, item in given.items()
            for p in (
                _dropped(item, kept[key], f"{where}.{key}" if where else key)
                if key in kept
                else ([f"{where}.{key}" if where else key] if item not in ({}, [], None) else [])
            )
        ]
    if isinstance(given, list):
        kept = kept if isinstance(kept, list) else []
        return [
            p
            for i, item in enumerate(given)
            for p in (
                _dropped(item, kept[i], f"{where}[{i}]") if i < len(kept) else [f"{where}[{i}]"]
            )
        ]
    return []
