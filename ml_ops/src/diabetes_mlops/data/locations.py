"""Where a path lives, seen from the driver's Python and from Spark: the rules every reader and
writer of this project shares (dbfs:/ and /dbfs/, file: URIs, what Databricks lets both see).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from diabetes_mlops.runtime.context import fuse_path
from diabetes_mlops.runtime.errors import ParameterError
from diabetes_mlops.runtime.parameters import Rule

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
# On Databricks only these are the same place for Spark and for the driver's file APIs.
_DATABRICKS_SHARED = ("/Volumes/", "/dbfs/")


@dataclass(frozen=True)
class Location:
    """One location seen two ways: `path` for Python on the driver, `spark` for Spark."""

    given: str
    path: Path
    spark: str

    def sibling(self, name: str) -> Location:
        return Location(name, self.path.with_name(name), f"{self.spark.rsplit('/', 1)[0]}/{name}")


def locate(location: str, parameter: str) -> Location:
    """The driver's and Spark's view of an output path: dbfs:/x is /dbfs/x on the driver
    (Databricks' FUSE mount) and /dbfs/x is dbfs:/x for Spark; other URI schemes (s3://, ...)
    are not supported, and on Databricks only /Volumes/ and DBFS are seen alike by both."""
    problem = location_problem(location)
    if problem:
        raise ParameterError(f"parameter '{parameter}': {location!r} {problem}")
    path = driver_path(location)
    spark = path
    if _on_databricks():
        if not path.startswith(_DATABRICKS_SHARED):
            raise ParameterError(
                f"parameter '{parameter}': {location!r}: on Databricks, write under /Volumes/"
                " or dbfs:/ (elsewhere Spark and the driver see different places)"
            )
        if path.startswith("/dbfs/"):
            spark = "dbfs:/" + path[len("/dbfs/") :]
    return Location(location, Path(path), spark)


def locate_apart(
    location: str, parameter: str, others: Mapping[str, str | None] | None
) -> Location:
    """`locate`, then `check_apart` from each of `others` (name -> location; None skipped): the
    location rules of every output this project writes."""
    target = locate(location, parameter)
    for name, other in (others or {}).items():
        check_apart(target, parameter, name, other)
    return target


def location_problem(location: str) -> str | None:
    """What is wrong with an output location from its text alone, or None: judged before a job
    starts (the OutputFolder rule on the step's parameters) and again when the step runs."""
    if is_remote(location):
        return (
            f"uses {location.split(':', 1)[0]}:, which is not supported for output; use a"
            " /Volumes/... or dbfs:/ path (or a local one)"
        )
    text = location.strip()
    if text.startswith("file:"):
        text = urlsplit(text).path
    if not text or os.path.normpath(fuse_path(text)) in ("/", ".", "..", "/Volumes", "/dbfs"):
        return "is not a folder to write: name the output's own folder"
    return None


@dataclass(frozen=True)
class OutputFolder(Rule):
    """A step parameter naming an output folder (see location_problem)."""

    def problem(self, value: Any) -> str | None:
        return location_problem(str(value))


def driver_path(location: str) -> str:
    """Absolute and normalised, as Python on the driver sees it (file: and dbfs:/ resolved)."""
    text = location.strip()
    if text.startswith("file:"):
        text = urlsplit(text).path
    return os.path.abspath(fuse_path(text))


def _on_databricks() -> bool:
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def check_apart(target: Location, parameter: str, name: str, other: str | None) -> None:
    """`target` may neither be, be inside, nor contain `other` (a path named `name`)."""
    if not other or is_remote(other):
        return  # a table name or a remote store: not a path on this machine
    relation = nesting(os.path.realpath(target.path), os.path.realpath(driver_path(other)))
    if relation is None:
        return
    problem = f"is {name} itself" if relation == SAME else f"{relation} {name} {other}"
    raise ParameterError(
        f"parameter '{parameter}': {target.given} {problem}; an output must be apart from it"
    )


SAME, INSIDE, CONTAINS = "is the same as", "is inside", "contains"


def nesting(path: str, other: str) -> str | None:
    """How two normalised absolute paths relate: SAME, INSIDE (path is inside other), CONTAINS,
    or None when they are apart."""
    if path == other:
        return SAME
    if path.startswith(other.rstrip("/") + "/"):
        return INSIDE
    if other.startswith(path.rstrip("/") + "/"):
        return CONTAINS
    return None


def is_remote(location: str) -> bool:
    """A URI of another store (s3://, abfss://, ...): no path on the driver, nor one we write."""
    return bool(_SCHEME.match(location)) and not location.startswith(("dbfs:/", "file:"))
