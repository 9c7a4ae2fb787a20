"""Replacing a folder so that a reader finds the old one or the new one at every instant.

The new folder is built in a hidden sibling `.NAME.staging-RUNID`, then published:

- nothing at NAME yet, or an empty folder: one rename(2), which is atomic;
- a previous folder: renameat2(RENAME_EXCHANGE) swaps the two in one step (Linux, local
  filesystems); the old one, now under the staging name, is deleted afterwards;
- where the filesystem cannot exchange (EINVAL/ENOSYS/ENOTSUP: FUSE mounts such as Databricks'
  /Volumes and /dbfs, NFS, other systems), two renames: the old folder aside to
  `.NAME.previous-RUNID`, the new one in. Between the two there is no folder at NAME; a writer
  killed there leaves both halves, and `recover` (called by the next writer) finishes its swap.

A crash at any other instant leaves NAME complete, old or new, plus hidden leftovers that
`recover` removes once their writer is known to be dead. Nothing but NAME and names of exactly
that pattern (RUNID = 32 hex digits, an MLflow run id) is ever renamed or deleted.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

STAGING, PREVIOUS = "staging", "previous"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 1 << 1
_CANNOT_EXCHANGE = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP}


class ExchangeUnsupported(OSError):
    """The filesystem (or the C library) cannot exchange two paths atomically."""


@dataclass(frozen=True)
class Leftover:
    path: Path
    kind: str  # STAGING or PREVIOUS
    run_id: str


def sibling(target: Path, kind: str, run_id: str) -> Path:
    return target.with_name(f".{target.name}.{kind}-{run_id}")


def leftovers(target: Path) -> list[Leftover]:
    """Hidden siblings of `target` named by the pattern above, whoever's they are."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.({STAGING}|{PREVIOUS})-([0-9a-f]{{32}})")
    try:
        names = sorted(os.listdir(target.parent))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        match = pattern.fullmatch(name)
        if match:
            found.append(Leftover(target.parent / name, match.group(1), match.group(2)))
    return found


def publish(staging: Path, target: Path, aside: Path, marker: str) -> None:
    """Make the complete folder `staging` the folder at `target`.

    `target` must be absent, an empty folder, or a folder the caller has checked it may replace;
    that folder is deleted after the swap (its `marker` file first, so that a deletion cut short
    never looks complete). `aside` is where the two-rename fallback parks it meanwhile.
    """
    if not os.path.lexists(target) or (target.is_dir() and not any(target.iterdir())):
        os.rename(staging, target)  # fails (ENOTEMPTY) rather than replace a folder with content
        return
    try:
        exchange(staging, target)
    except ExchangeUnsupported:
        log.info("%s: this filesystem cannot exchange folders; replacing in two renames", target)
        os.rename(target, aside)
        try:
            os.rename(staging, target)
        except BaseException:
            os.rename(aside, target)  # an error, not a crash: put the previous folder back
            raise
        remove(aside, marker)
    else:
        remove(staging, marker)  # the previous folder, now under the staging name


def exchange(a: Path, b: Path) -> None:
    """Swap two existing paths in one atomic step: renameat2(RENAME_EXCHANGE)."""
    renameat2 = _renameat2()
    if renameat2 is None:
        raise ExchangeUnsupported(errno.ENOSYS, "renameat2 is not in this C library", str(a))
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        kind = ExchangeUnsupported if code in _CANNOT_EXCHANGE else OSError
        raise kind(code, os.strerror(code), str(a), None, str(b))


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    function.argtypes += [ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def remove(folder: Path, marker: str) -> None:
    """Delete a folder this module swapped out or staged: its marker first, then the rest."""
    (folder / marker).unlink(missing_ok=True)
    shutil.rmtree(folder)


def recover(target: Path, marker: str, is_dead: Callable[[Leftover], bool]) -> list[str]:
    """Finish the swaps dead writers left half done, then delete their leftovers.

    With no folder at `target` and a dead writer's `previous` folder beside it, that writer was
    between its two renames: its staging folder, if complete (it holds `marker`), is moved in
    (roll forward); otherwise its previous folder goes back. Returns what was done, for the log.
    """
    done = []
    dead = [left for left in leftovers(target) if is_dead(left)]
    if not os.path.lexists(target):
        parked = [left for left in dead if left.kind == PREVIOUS]
        if parked:
            last = max(parked, key=lambda left: left.path.stat().st_mtime)
            staged = sibling(target, STAGING, last.run_id)
            source = staged if (staged / marker).is_file() else last.path
            os.rename(source, target)
            action = "completed" if source == staged else "undid"
            done.append(f"{action} the swap that run {last.run_id} left half done")
    for left in dead:
        if os.path.lexists(left.path):
            remove(left.path, marker)
            done.append(f"removed {left.path.name}")
    for line in done:
        log.warning("%s: %s", target, line)
    return done
