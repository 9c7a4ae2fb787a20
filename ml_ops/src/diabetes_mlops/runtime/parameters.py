"""Step parameters: their rules, declared once on the step signatures, and reading them from text.

A step says what a parameter must be right where it takes it:

    seed: Annotated[int, Between(0, 2**32 - 1)] = 42

Everything that judges a value reads these declarations: `run_step` before a step runs, and the
checks before a job starts (`diabetes_mlops.jobs.preflight`: `make validate`, deploy, the local
runner, `diabetes-mlops run`). So a value is refused the same way everywhere, before anything is
written, with one line naming the parameter, the rule and the value. Notebooks hold no rules.

Rules that tie several parameters together are plain functions decorated with `cross_check`;
their parameter names say which step parameters they judge.
"""

from __future__ import annotations

import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from diabetes_mlops.runtime import model_refs
from diabetes_mlops.runtime.context import FilePath, SparkPath
from diabetes_mlops.runtime.errors import ParameterError

_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n"}
PATH_KINDS = (FilePath, SparkPath)


class Rule:
    """A rule on a parameter's typed value: `problem` says what is wrong, or None."""

    def problem(self, value: Any) -> str | None:  # pragma: no cover - every rule overrides it
        raise NotImplementedError


@dataclass(frozen=True)
class Between(Rule):
    low: float
    high: float

    def problem(self, value: Any) -> str | None:
        return (
            None
            if self.low <= value <= self.high
            else f"must be between {self.low} and {self.high}"
        )


@dataclass(frozen=True)
class AtLeast(Rule):
    low: float

    def problem(self, value: Any) -> str | None:
        return None if value >= self.low else f"must be >= {self.low}"


@dataclass(frozen=True)
class Above(Rule):
    low: float

    def problem(self, value: Any) -> str | None:
        return None if value > self.low else f"must be > {self.low}"


@dataclass(frozen=True)
class Below(Rule):
    high: float

    def problem(self, value: Any) -> str | None:
        return None if value < self.high else f"must be < {self.high}"


@dataclass(frozen=True)
class OneOf(Rule):
    choices: tuple[str, ...]

    def __init__(self, *choices: str) -> None:
        object.__setattr__(self, "choices", tuple(choices))

    def problem(self, value: Any) -> str | None:
        return None if value in self.choices else f"must be one of {', '.join(self.choices)}"


@dataclass(frozen=True)
class NotEmpty(Rule):
    def problem(self, value: Any) -> str | None:
        return None if len(value) else "must not be empty"


@dataclass(frozen=True)
class Each(Rule):
    """`rule` holds for every item of a list parameter."""

    rule: Rule

    def problem(self, value: Any) -> str | None:
        for item in value:
            problem = self.rule.problem(item)
            if problem:
                return f"each value {problem}"
        return None


@dataclass(frozen=True)
class AllowNonFinite(Rule):
    """Lets a float parameter be nan or inf, which are refused otherwise."""

    def problem(self, value: Any) -> str | None:
        return None


@dataclass(frozen=True)
class RegisteredModelName(Rule):
    """What MLflow accepts as a registered model name (its stores refuse '/', ':' and '%',
    and names that resolve to other names as paths). Unity Catalog's three-level form depends on
    the registry: see the cross check of `registry` and `model_name` in the steps."""

    def problem(self, value: Any) -> str | None:
        if not value:
            return "must not be empty"
        bad = [c for c in "/:%" if c in value]
        if bad:
            return f"a registered model name cannot contain {' or '.join(repr(c) for c in bad)}"
        if value != value.strip() or value in (".", "..") or value.startswith(".."):
            return "is not a usable registered model name (spaces at an end, or leading '..')"
        return None


@dataclass(frozen=True)
class VersionOrAlias(Rule):
    """A model version number ("3") or an alias ("champion"); MLflow's alias characters."""

    def problem(self, value: Any) -> str | None:
        if model_refs.is_version_number(value) or model_refs.is_alias(value):
            return None
        return model_refs.PROBLEM


@dataclass(frozen=True)
class TableLocation(Rule):
    """Empty (none) or `catalog.schema.name` of plain Unity Catalog identifiers (letters, digits,
    '_'), which need no quoting anywhere they are written."""

    def problem(self, value: Any) -> str | None:
        if not value or re.fullmatch(r"[A-Za-z0-9_]+\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+", value):
            return None
        return "must be empty or catalog.schema.name (letters, digits and '_' in each part)"


def require_choice(parameter: str, value: str, allowed: tuple[str, ...]) -> None:
    """The OneOf rule where a value is judged outside a step's signature."""
    problem = OneOf(*allowed).problem(value)
    if problem:
        raise ParameterError(f"parameter '{parameter}': {problem}, got {value!r}")


@dataclass(frozen=True)
class Declared:
    """A step parameter as its signature declares it."""

    name: str
    kind: Any  # str, int, float, bool, tuple[float, ...], tuple[str, ...], FilePath or SparkPath
    rules: tuple[Rule, ...] = ()
    optional: bool = False  # `X | None`: an empty value means None
    required: bool = True  # no default in the signature

    @property
    def meaning(self) -> tuple[Any, ...]:
        """What must agree when two steps take a parameter of the same name (not the default)."""
        return (self.kind, self.optional, self.rules)

    @property
    def is_path(self) -> bool:
        return self.kind in PATH_KINDS

    def parse(self, text: str, resolve: Callable[[Any, str], str] | None = None) -> Any:
        """The typed value of `text`, after every rule; ParameterError names the parameter.

        `resolve(kind, path)` turns a FilePath/SparkPath into a usable path; without it a path
        stays as written (the pre-run checks judge values without touching any file system).
        """
        value = _convert(self.name, text, self.kind, self.optional, resolve)
        if value is None:
            return None
        for problem in self._problems(value):
            raise ParameterError(f"parameter '{self.name}': {problem}, got {text!r}")
        return value

    def _problems(self, value: Any) -> Iterable[str]:
        if not any(isinstance(rule, AllowNonFinite) for rule in self.rules):
            numbers = value if isinstance(value, tuple) else (value,)
            if any(isinstance(x, float) and not math.isfinite(x) for x in numbers):
                yield "must be finite numbers" if isinstance(value, tuple) else "must be finite"
        for rule in self.rules:
            problem = rule.problem(value)
            if problem:
                yield problem


def declared_parameters(step: Callable[..., Any]) -> dict[str, Declared]:
    """The step's parameters (a SparkSession one aside: the context provides it)."""
    hints = typing.get_type_hints(step, include_extras=True)
    found = {}
    for name, parameter in inspect.signature(step).parameters.items():
        hint = hints.get(name, str)
        if not is_spark_session(hint):
            required = parameter.default is inspect.Parameter.empty
            found[name] = declaration(name, hint, required)
    return found


def declaration(name: str, hint: Any, required: bool = True) -> Declared:
    """`Annotated[X | None, rule, ...]` -> Declared(kind X, rules, optional)."""
    rules: tuple[Rule, ...] = ()
    if typing.get_origin(hint) is typing.Annotated:
        hint, *metadata = typing.get_args(hint)
        rules = tuple(m for m in metadata if isinstance(m, Rule))
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = len(kinds) < len(typing.get_args(hint)), kinds[0]
    return Declared(name, hint, rules, optional, required)


def is_spark_session(hint: Any) -> bool:
    return getattr(hint, "__name__", None) == "SparkSession"


def defaults(step: Callable[..., Any]) -> dict[str, Any]:
    return {
        name: parameter.default
        for name, parameter in inspect.signature(step).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def read_arguments(
    step: Callable[..., Any],
    texts: Callable[[str], str | None],
    resolve: Callable[[Any, str], str] | None = None,
    unknown: Iterable[str] = (),
) -> tuple[dict[str, Any], list[str]]:
    """The step's typed arguments from parameter texts (`texts(name)`, None when not given),
    and every problem found, one line each: values against their rules, then the cross checks
    between parameters. Names in `unknown` (values known only when the job runs) are skipped."""
    unknown = set(unknown)
    arguments: dict[str, Any] = {}
    problems: list[str] = []
    for name, parameter in declared_parameters(step).items():
        if name in unknown:
            continue
        text = texts(name)
        if text is None:
            if parameter.required:
                problems.append(
                    f"step '{step.__name__}' needs parameter '{name}': declare a widget for it"
                )
            continue
        try:
            arguments[name] = parameter.parse(text, resolve)
        except ParameterError as exc:
            problems.append(str(exc))
    if not problems:
        values = {k: v for k, v in defaults(step).items() if k not in unknown} | arguments
        problems += cross_problems(values)
    return arguments, problems


def visible_problems(
    known: Mapping[str, Declared], texts: Callable[[str], str | None]
) -> list[str]:
    """Problems in every value `texts` can show of a parameter any step declares: what the
    first task of a job runs to judge the job parameters that later tasks will use."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, parameter in known.items():
        text = texts(name)
        if text is None:
            continue
        try:
            values[name] = parameter.parse(text)
        except ParameterError as exc:
            problems.append(str(exc))
    return problems or cross_problems(values)


def parameter_registry(steps: Iterable[Callable[..., Any]]) -> dict[str, Declared]:
    """Every parameter name the steps declare; one name has one meaning (type and rules) in
    every step, so a job parameter that reaches several tasks is judged the same in each."""
    registry: dict[str, Declared] = {}
    owner: dict[str, str] = {}
    for step in steps:
        for name, parameter in declared_parameters(step).items():
            if name in registry and registry[name].meaning != parameter.meaning:
                raise TypeError(
                    f"parameter '{name}' means different things in steps '{owner[name]}' and"
                    f" '{step.__name__}': {registry[name].meaning} vs {parameter.meaning}"
                )
            registry.setdefault(name, parameter)
            owner.setdefault(name, step.__name__)
    return registry


# --- rules between parameters ----------------------------------------------------------------
_CROSS_CHECKS: list[Callable[..., None]] = []


def cross_check(check: Callable[..., None]) -> Callable[..., None]:
    """Register a rule between parameters. Its parameter names are step parameter names; it
    judges every step (and every set of visible job parameters) that has all of them, and raises
    ParameterError naming the parameter at fault."""
    _CROSS_CHECKS.append(check)
    return check


def cross_problems(values: Mapping[str, Any]) -> list[str]:
    problems = []
    for check in _CROSS_CHECKS:
        names = list(inspect.signature(check).parameters)
        if all(name in values for name in names):
            try:
                check(**{name: values[name] for name in names})
            except ParameterError as exc:
                problems.append(str(exc))
    return problems


# --- text -> value ---------------------------------------------------------------------------
def _convert(
    name: str,
    text: str,
    kind: Any,
    optional: bool,
    resolve: Callable[[Any, str], str] | None,
) -> Any:
    value = text.strip()
    if kind is str:
        return value
    if not value:
        if optional:
            return None
        raise ParameterError(f"parameter '{name}' is empty; it needs a value")
    if kind in PATH_KINDS:
        try:
            return resolve(kind, value) if resolve else value
        except ParameterError as exc:  # the context's own check: say which parameter
            raise ParameterError(f"parameter '{name}': {exc}") from None
    if kind is bool:
        if value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ParameterError(f"parameter '{name}': expected true or false, got {text!r}")
    if kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            expected = "an integer" if kind is int else "a number"
            raise ParameterError(f"parameter '{name}': expected {expected}, got {text!r}") from None
    if typing.get_origin(kind) is tuple and typing.get_args(kind) == (float, ...):
        try:
            return tuple(float(part) for part in value.split(","))
        except ValueError:
            raise ParameterError(
                f"parameter '{name}': expected comma-separated numbers, got {text!r}"
            ) from None
    if typing.get_origin(kind) is tuple and typing.get_args(kind) == (str, ...):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    raise TypeError(f"parameter '{name}': unsupported annotation {kind!r}")
