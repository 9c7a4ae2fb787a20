"""Writing scoring output atomically: readers see the old file or the new one, never a part."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd

from diabetes_mlops.errors import ParameterError

FORMATS = {".parquet": "parquet", ".csv": "csv"}


def output_format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ParameterError(
            f"parameter 'output_path': {path!r} must end in one of {', '.join(FORMATS)}"
        )
    return FORMATS[suffix]


def write_atomically(frame: pd.DataFrame, path: str) -> None:
    """Write to a hidden temporary file beside `path`, then rename it over `path`.

    A failure at any point removes the temporary file and leaves a previous `path` untouched.
    """
    fmt = output_format(path)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        if fmt == "parquet":
            frame.to_parquet(temporary, index=False)
        else:
            frame.to_csv(temporary, index=False, lineterminator="\n")
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
