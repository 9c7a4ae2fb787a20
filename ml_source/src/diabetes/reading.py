"""Reading CSV files strictly with pandas and pyarrow: every row as text, the lines that do not
parse reported (never shifted or padded), then the batch contract applied (`read_dataset`)."""

from __future__ import annotations

import gzip
from os import PathLike

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from diabetes.batch_check import check_frame
from diabetes.contract import (
    LINE_BREAK,
    TRIMMED,
    DataValidationError,
    Malformed,
    Purpose,
    check_header,
    garbled_problem,
    header_fields,
    is_blank_line,
    malformed_error,
    malformed_problem,
    sniff_text_file,
)
from diabetes.errors import first_line

_HEAD_BYTES = 64 * 1024
_BLOCK = 64 << 20  # pyarrow parses in blocks; a row must fit in one


def read_dataset(path: str | PathLike[str], purpose: Purpose) -> pd.DataFrame:
    """Read a CSV file and validate it for `purpose`; any broken rule is an error."""
    frame, malformed = read_csv_rows(path)
    return check_frame(frame, str(path), purpose, malformed=malformed).valid


def read_table(path: str | PathLike[str]) -> pd.DataFrame:
    """Read a CSV file strictly, every value as text; a row that does not parse is an error."""
    frame, malformed = read_csv_rows(path)
    if malformed:
        raise malformed_error(str(path), malformed)
    return frame


def read_csv_rows(path: str | PathLike[str]) -> tuple[pd.DataFrame, list[Malformed]]:
    """Every row of a CSV file that parses, as text, and the lines that do not.

    Strict where pandas' own reader is lenient: a row with more or fewer fields than the header,
    or a quoted value that spans lines (Spark reads lines), is reported, never shifted or padded.
    Nothing is treated as missing here: the contract decides that (contract.MISSING_TEXTS).
    """
    source = str(path)
    head = read_head(path, source)
    problem = sniff_text_file(head)
    if problem:
        raise DataValidationError(source, None, problem)
    lines = LINE_BREAK.split(head.decode("utf-8", errors="replace").removeprefix("\ufeff"))
    index = next((i for i, line in enumerate(lines) if not is_blank_line(line)), None)
    if index is None:
        raise DataValidationError(source, None, "file is empty (no header, no rows)")
    names = [name.strip(TRIMMED) for name in header_fields(lines[index])]
    check_header(names, source)
    malformed: list[Malformed] = []

    def invalid(row) -> str:
        if is_blank_line(row.text):  # spaces, a tab, a form feed or Ctrl-Z alone: no row
            return "skip"
        number = (row.number or 0) - 1
        problem = malformed_problem(row.expected_columns, row.actual_columns)
        malformed.append(Malformed(number, row.text, problem))
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=index + 1, use_threads=False, block_size=_BLOCK
            ),
            parse_options=pacsv.ParseOptions(invalid_row_handler=invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                null_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        reason = first_line(exc)
        if "UTF8" in reason:
            raise DataValidationError(source, None, garbled_problem(1)) from None
        if "straddl" in reason:
            problem = f"a row is longer than {_BLOCK >> 20} MB: not a valid CSV file"
            raise DataValidationError(source, None, problem) from None
        raise DataValidationError(source, None, f"not a valid CSV file: {reason}") from None
    garbled = _rows_holding(table, "\ufffd")
    if garbled.any():
        raise DataValidationError(source, None, garbled_problem(int(garbled.sum())))
    spans = _rows_holding(table, r"[\r\n]")
    if spans.any():
        rows = np.flatnonzero(spans)
        malformed += [
            Malformed(int(r) + 1, "", "a quoted value spans lines (one row per line)") for r in rows
        ]
        table = table.filter(pa.array(~spans))
    malformed.sort(key=lambda m: m.row)
    return table.to_pandas(), malformed


def read_head(path: str | PathLike[str], source: str) -> bytes:
    """The first bytes of a file (decompressed when it is named .gz), enough to sniff what it
    is; DataValidationError when it cannot be read."""
    try:
        if source.endswith(".gz"):
            with gzip.open(path, "rb") as stream:
                return stream.read(_HEAD_BYTES)
        with open(path, "rb") as stream:
            return stream.read(_HEAD_BYTES)
    except gzip.BadGzipFile:
        raise DataValidationError(source, None, "is named .gz but is not gzip-compressed") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise DataValidationError(source, None, f"cannot read file: {reason}") from None


def _rows_holding(table: pa.Table, pattern: str) -> np.ndarray:
    found = np.zeros(table.num_rows, dtype=bool)
    for column in table.columns:
        match = pc.match_substring_regex(column, pattern)
        found |= np.asarray(match.to_numpy(zero_copy_only=False), dtype=bool)
    return found
