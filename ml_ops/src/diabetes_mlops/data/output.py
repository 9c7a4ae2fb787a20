"""Where batch scoring writes: only over what this project wrote, and never half done.

An output is a folder marked by a manifest, `_diabetes_mlops_output.json` (Spark and pyarrow skip
`_`/`.` files when they read a folder), that records what wrote it: model, rows, input, format,
engine, time, MLflow run, and the files it holds. A run may write where nothing is, into an empty
folder, or over an output of this project in the same format that holds only the files its
manifest lists. Anything else there (a file, a data folder, a table, a user's file added to an
output) is refused with one ParameterError line before any work, and left untouched.

    target = prepare_output(location, fmt, engine=..., spark=..., others={"input_path": ...})
    with tracked_run(...) as run:                # orphaned runs of the step are marked first
        target.begin(run.info.run_id, run_is_over)  # finishes or removes dead runs' leftovers
        target.write_spark(frame)               # or write_pandas: into a hidden staging folder
        target.commit({"model_version": ...})   # manifest last, then the atomic swap

Parquet and CSV are swapped in whole (directory_swap). Delta is written in place: its
transaction log makes the overwrite atomic, and the manifest is written before its first commit.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from diabetes_mlops.data import directory_swap
from diabetes_mlops.data.locations import Location, locate_apart
from diabetes_mlops.data.ownership import (
    DELTA_LOG,
    inspect_claim,
    new_claim,
    read_claim,
    remove_stale_temp_files,
    write_claim,
)
from diabetes_mlops.runtime.errors import ParameterError
from diabetes_mlops.runtime.parameters import require_choice

log = logging.getLogger(__name__)

MANIFEST = "_diabetes_mlops_output.json"
FORMATS = {"spark": ("parquet", "delta"), "pandas": ("parquet", "csv")}  # by engine
OUTPUT_FORMATS = tuple(dict.fromkeys(fmt for formats in FORMATS.values() for fmt in formats))
PANDAS_PART = "part-00000"
DELTA = "delta"


def prepare_output(
    location: str,
    fmt: str,
    *,
    engine: str,
    spark: Any = None,
    parameter: str = "output_path",
    others: Mapping[str, str | None] | None = None,
) -> OutputTarget:
    """Check, before any work, that `location` may take a `fmt` output; touches nothing.

    `others` maps parameter names to locations the output must neither be, be inside, nor
    contain (the input; for a side output, the main output too); None values are skipped (an
    input that is a table name). Raises ParameterError naming `parameter` and what is there.
    """
    check_format(engine, fmt)
    target = locate_apart(location, parameter, others)
    if fmt == DELTA:
        require_delta(spark)
    existing = inspect_location(target, fmt, parameter)
    return OutputTarget(target, fmt, engine, parameter, existing)


def check_format(engine: str, fmt: str) -> None:
    """Spark writes parquet or delta; the pandas engine parquet or csv."""
    require_choice("engine", engine, tuple(FORMATS))
    if fmt not in FORMATS[engine]:
        raise ParameterError(
            f"parameter 'output_format': engine={engine} writes {' or '.join(FORMATS[engine])},"
            f" got {fmt!r}"
        )


def require_delta(spark: Any, parameter: str = "output_format") -> None:
    """Delta Lake must be in the session (it always is on Databricks); else one line naming
    `parameter`, the format parameter that asked for delta. Asked by analysing a read of a path
    that does not exist: a session without Delta fails with DATA_SOURCE_NOT_FOUND before it
    looks at the path. The same on classic Spark and Spark Connect (no JVM to reach)."""
    try:
        probe = spark.read.format(DELTA).load(f"/nonexistent-diabetes-mlops-{uuid.uuid4().hex}")
        _ = probe.columns  # analysed here (Spark Connect analyses lazily)
    except Exception as exc:  # noqa: BLE001 - any other failure is about the path: Delta is there
        if "DATA_SOURCE_NOT_FOUND" in str(exc) or "Failed to find the data source" in str(exc):
            raise ParameterError(
                f"parameter '{parameter}': delta needs Delta Lake, which this Spark session does"
                " not have (install delta-spark and configure the session, or use parquet)"
            ) from None


def inspect_location(target: Location, fmt: str, parameter: str) -> dict[str, Any] | None:
    """The manifest of this project's output at `target`, None when nothing (or an empty folder)
    is there; anything else raises ParameterError saying what is there."""
    return inspect_claim(
        target,
        parameter,
        claim_file=MANIFEST,
        noun="output",
        kind="an output folder of this project",
        fmt=fmt,
        owned=None if fmt == DELTA else lambda manifest, name: name in manifest.get("files", ()),
    )


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest in `folder` if this project wrote it, else None."""
    return read_claim(folder, MANIFEST)


def content_of(folder: Path, fmt: str) -> dict[str, Any]:
    """What says an output's data is still what was written: for Delta the table's latest
    version (its last commit in _delta_log), for files each data file's size by name (readers
    skip `_` and `.` files). The manifest records it when the output is written; a reader that
    finds it changed knows the data was rewritten or appended to since."""
    if fmt == DELTA:
        commits = [int(n[:-5]) for n in os.listdir(folder / DELTA_LOG) if _is_commit(n)]
        return {"delta_version": max(commits, default=-1)}
    names = sorted(n for n in os.listdir(folder) if not n.startswith(("_", ".")))
    return {"bytes": {name: (folder / name).stat().st_size for name in names}}


def _is_commit(name: str) -> bool:
    return name.endswith(".json") and name[:-5].isdigit()


# (run id, when its leftover was last written, in seconds since the epoch) -> whether it ended
RunIsOver = Callable[[str, float], bool]


class OutputTarget:
    """One output being written: checked by prepare_output, then begin, write_*, commit."""

    def __init__(
        self,
        location: Location,
        fmt: str,
        engine: str,
        parameter: str,
        existing: dict[str, Any] | None,
    ) -> None:
        self.location = location
        self.format = fmt
        self.engine = engine
        self.parameter = parameter
        self.existing = existing
        self.run_id: str | None = None
        self.rows: int | None = None
        self.manifest: dict[str, Any] | None = None

    @property
    def staging(self) -> Location:
        if self.run_id is None:
            raise RuntimeError("call begin(run_id) first")
        kind = directory_swap.STAGING
        return self.location.sibling(
            directory_swap.sibling(self.location.path, kind, self.run_id).name
        )

    def begin(self, run_id: str, run_is_over: RunIsOver) -> OutputTarget:
        """In the step's run, before writing: finish or undo the swap a dead run left half done,
        remove dead runs' leftovers, and check the location again. `run_is_over(run_id,
        last_written)` says whether the run that left something behind has ended (the tracking
        store knows; `diabetes_mlops.tracking.runs.run_is_over`)."""
        self.run_id = run_id
        self._run_is_over = run_is_over
        directory_swap.recover(self.location.path, MANIFEST, self._left_by_a_dead_run)
        self.existing = inspect_location(self.location, self.format, self.parameter)
        if self.format == DELTA and self.existing is not None:  # written in place: tidy it
            remove_stale_temp_files(self.location.path, lambda name: name == MANIFEST)
        if self.format == DELTA and self.existing is None:  # claim it before the first commit
            self.location.path.mkdir(parents=True, exist_ok=True)
            write_claim(self.location.path, MANIFEST, self._manifest({"state": "writing"}))
        return self

    def _left_by_a_dead_run(self, leftover: directory_swap.Leftover) -> bool:
        if leftover.run_id == self.run_id:
            return False
        return self._run_is_over(leftover.run_id, leftover.path.stat().st_mtime)

    def write_pandas(self, frame: Any) -> int:
        """One part file in the staging folder; returns the number of rows."""
        folder = self.staging.path
        folder.mkdir(parents=True)
        try:
            part = folder / f"{PANDAS_PART}.{self.format}"
            if self.format == "parquet":
                frame.to_parquet(part, index=False)
            else:
                frame.to_csv(part, index=False, lineterminator="\n")
        except BaseException:
            self.discard()
            raise
        self.rows = len(frame)
        return self.rows

    def write_spark(self, frame: Any) -> int:
        """Parquet into the staging folder, Delta in place (one transaction); returns the number
        of rows written, read back from what was written."""
        spark = frame.sparkSession
        if self.format == DELTA:
            writer = frame.write.format(DELTA).mode("overwrite").option("overwriteSchema", "true")
            writer.save(self.location.spark)
            self.rows = spark.read.format(DELTA).load(self.location.spark).count()
            return self.rows
        self.location.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            frame.write.format(self.format).mode("error").save(self.staging.spark)
            self.rows = spark.read.format(self.format).load(self.staging.spark).count()
        except BaseException:
            self.discard()
            raise
        return self.rows

    def commit(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Write the manifest (with `fields`) and publish: the staging folder replaces the
        previous output in one step. Returns the manifest."""
        manifest = self.stage(fields)
        self.publish()
        return manifest

    def stage(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Complete the staging folder with its manifest (with `fields`), ready to publish: a
        step with two outputs stages both, then publishes them back to back, so a failure in
        either write or manifest changes neither. Returns the manifest."""
        if self.rows is None:
            raise RuntimeError("nothing written: call write_pandas or write_spark first")
        self.manifest = self._manifest({"rows": self.rows, **fields})
        if self.format == DELTA:
            self.manifest["content"] = content_of(self.location.path, DELTA)
            return self.manifest
        try:
            self.manifest["files"] = sorted(os.listdir(self.staging.path))
            self.manifest["content"] = content_of(self.staging.path, self.format)
            write_claim(self.staging.path, MANIFEST, self.manifest)
        except BaseException:
            self.discard()
            raise
        return self.manifest

    def publish(self) -> None:
        """Swap the staged folder in (Delta: record the manifest of the committed table)."""
        if self.manifest is None:
            raise RuntimeError("nothing staged: call stage first")
        if self.format == DELTA:
            write_claim(self.location.path, MANIFEST, self.manifest)
            return
        try:
            inspect_location(self.location, self.format, self.parameter)  # still ours or empty?
            aside = directory_swap.sibling(self.location.path, directory_swap.PREVIOUS, self.run_id)
            directory_swap.publish(self.staging.path, self.location.path, aside, MANIFEST)
        except BaseException:
            self.discard()
            raise
        log.info("wrote %d rows into %s", self.rows, self.location.given)

    def discard(self) -> None:
        """Remove this run's staging folder, if any (a failed write leaves nothing behind)."""
        if self.run_id is not None and os.path.lexists(self.staging.path):
            directory_swap.remove(self.staging.path, MANIFEST)

    def _manifest(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        return new_claim(self.format, engine=self.engine, mlflow_run_id=self.run_id, **fields)
