"""Spark SQL text for names, numbers and literals, written one way for every query of the steps.

The steps hand Spark their wide expressions as SQL text in one call: built as Column objects,
each function and literal is a JVM round trip, over a second for the monitor's ~110 aggregates.
"""

from __future__ import annotations

import math

from pyspark.sql import types as T


def quote_identifier(text: str) -> str:
    """`text` as one backquoted Spark SQL identifier (a column, a path, a table name's part)."""
    return "`" + text.replace("`", "``") + "`"


def double_sql(column: str, kind: T.DataType) -> str:
    """A column as a double, in SQL: text trimmed, then parsed leniently (try_cast: a bad value
    is null, and ANSI mode does not fail the job; check_input has already rejected text that is
    not a number)."""
    if isinstance(kind, T.StringType):
        return f"try_cast(trim({quote_identifier(column)}) AS DOUBLE)"
    if isinstance(kind, T.DoubleType):
        return quote_identifier(column)
    return f"CAST({quote_identifier(column)} AS DOUBLE)"


def double_literal(value: float) -> str:
    """A double literal that is exactly `value` (repr round-trips; the D suffix makes it a
    double, not a decimal)."""
    value = float(value)
    if math.isfinite(value):
        return f"{value!r}D"
    return f"CAST('{value}' AS DOUBLE)"  # inf, -inf, nan


def text_literal(value: str) -> str:
    """A string literal written as its UTF-8 bytes: no quoting or escaping to get wrong."""
    return f"CAST(X'{value.encode().hex()}' AS STRING)"
