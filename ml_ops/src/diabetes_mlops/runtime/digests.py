"""One way to fold files into a digest, for everything that says "the same sources": a wheel's
version suffix, and what a model version was trained from."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any


def add_files(digest: Any, root: Path, files: Iterable[Path]) -> None:
    """Each file's name relative to `root` and its bytes, in the order given (a NUL after each,
    so that no two different sets of files feed the same bytes)."""
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
