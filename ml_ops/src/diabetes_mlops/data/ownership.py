"""Owning a folder: how this project marks a folder it wrote, and what it checks before writing
into one. Batch-scoring outputs (data/output.py) and the monitoring table (data/monitoring_table.py)
share these rules, so both refuse what they did not write with the same words, and both write
their files whole or not at all.

A folder is ours when it holds a claim file (a JSON document with `"written_by": WRITTEN_BY`):
the manifest of an output, the marker of a monitoring table. Files are written under a hidden
temporary name beside their final one, flushed and fsynced, then renamed onto it; a crash leaves
the temporary file, which readers skip and a later writer removes once no live writer can own it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from diabetes_mlops.data.locations import Location
from diabetes_mlops.runtime.errors import ParameterError

log = logging.getLogger(__name__)

WRITTEN_BY = "diabetes-mlops"
DELTA_LOG = "_delta_log"
# A temporary file younger than this may belong to a writer still at work; older, to a dead one.
# Writing one file takes well under a second, so this is generous.
TEMP_STALE_SECONDS = 15 * 60
# `.<final name>.<32 hex digits>.tmp`: only names of this pattern, for a final name we own, are
# ever deleted.
_TEMP_FILE = re.compile(r"\.(?P<final>.+?)\.[0-9a-f]{32}\.tmp")


def read_claim(folder: Path, name: str) -> dict[str, Any] | None:
    """The claim file `name` in `folder` if this project wrote it, else None."""
    try:
        claim = json.loads((folder / name).read_text())
    except (OSError, ValueError):
        return None
    return claim if isinstance(claim, dict) and claim.get("written_by") == WRITTEN_BY else None


def new_claim(fmt: str, **fields: Any) -> dict[str, Any]:
    """A claim file's content: who wrote it, in which format, when, and `fields`."""
    written_at = datetime.now(UTC).isoformat(timespec="seconds")
    return {"written_by": WRITTEN_BY, "format": fmt, "written_at": written_at, **fields}


def write_claim(folder: Path, name: str, claim: Mapping[str, Any]) -> None:
    text = json.dumps(claim, indent=2, sort_keys=True, default=str) + "\n"
    write_atomically(folder / name, lambda file: file.write(text.encode()))


def write_atomically(final: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write `final` whole or not at all: into a hidden temporary file beside it (readers skip
    `.` files), flushed and fsynced, then renamed onto it in one step. An error removes the
    temporary file; a crash leaves it, for remove_stale_temp_files."""
    temp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temp, "xb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _fsync_folder(final.parent)


def temp_file_of(name: str) -> str | None:
    """The final name a temporary file of write_atomically stands for; None for other names."""
    match = _TEMP_FILE.fullmatch(name)
    return match["final"] if match else None


def remove_stale_temp_files(
    folder: Path, ours: Callable[[str], bool], older_than_seconds: float = TEMP_STALE_SECONDS
) -> None:
    """Temporary files of crashed writers: of a file we own by name (`ours(final name)`), and too
    old for a live writer."""
    for name in os.listdir(folder):
        final = temp_file_of(name)
        if final is None or not ours(final):
            continue
        with contextlib.suppress(FileNotFoundError):  # another writer removed it first
            if time.time() - (folder / name).stat().st_mtime > older_than_seconds:
                (folder / name).unlink()
                log.warning("%s: removed %s, left by a writer that died", folder, name)


def existing_entries(target: Location, parameter: str, kind: str) -> list[str] | None:
    """The names in the folder at `target`, sorted; None when nothing is there. Its parent must
    not be a file, and the location must be no symbolic link and no file (`kind` names what the
    folder would be, for that line)."""
    path, refused = target.path, f"parameter '{parameter}': {target.given}"
    for parent in path.parents:
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise ParameterError(f"{refused} is under {parent}, which is a file")
            break
    if path.is_symlink():
        raise ParameterError(f"{refused} is a symbolic link; give the folder itself")
    if not path.exists():
        return None
    if not path.is_dir():
        raise ParameterError(f"{refused} is a file, not {kind}; nothing was changed")
    return sorted(os.listdir(path))


def inspect_claim(
    target: Location,
    parameter: str,
    *,
    claim_file: str,
    noun: str,
    kind: str,
    fmt: str,
    owned: Callable[[dict[str, Any], str], bool] | None,
    others: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """The claim of this project's `noun` (an output, a monitoring table) in format `fmt` at
    `target`; None when nothing is there, an empty folder, or only what a crash left while
    claiming it. Anything else is one ParameterError line naming `parameter`, the location and
    what is there: data we did not write (`others` maps another claim file of ours to what it
    marks), another format, or files beside ours that `owned(claim, name)` does not own (None:
    not checked, as for a Delta table, whose files its own log owns). `kind` says what the
    folder would be, for a location that is a file."""
    article = "an" if noun[0] in "aeiou" else "a"
    entries = existing_entries(target, parameter, kind)
    if not entries or all(temp_file_of(e) == claim_file for e in entries):
        return None
    refused = f"parameter '{parameter}': {target.given}"
    claim = read_claim(target.path, claim_file)
    if claim is None:
        marked = [what for file, what in (others or {}).items() if file in entries]
        if marked:
            what = f"{marked[0]} of this project"
        elif DELTA_LOG in entries:
            what = "a Delta table this project did not write"
        else:
            what = f"{len(entries)} entries this project did not write"
        raise ParameterError(
            f"{refused} holds {what} ({some(entries)}), not {article} {noun}; nothing was"
            " changed: choose a new or empty folder"
        )
    if claim.get("format") != fmt:
        raise ParameterError(
            f"{refused} holds a {claim.get('format')} {noun} of this project, not {fmt}; nothing"
            " was changed: choose another folder, or the same format"
        )
    if owned is not None:

        def ours(name: str) -> bool:
            return name == claim_file or owned(claim, name)

        foreign = [e for e in entries if not ours(e) and not ours(temp_file_of(e) or "")]
        if foreign:
            raise ParameterError(
                f"{refused} is {article} {noun} of this project but also holds files it did not"
                f" write ({some(foreign)}); nothing was changed"
            )
    return claim


def some(names: list[str], limit: int = 3) -> str:
    """The first `limit` names and how many more: a line stays one line."""
    more = f", ... {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable where the filesystem allows it (FUSE mounts may refuse; the
    rename is atomic either way)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
