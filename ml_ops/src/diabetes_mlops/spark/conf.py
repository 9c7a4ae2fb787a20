"""A Spark session setting changed for the length of a block, then put back as it was.

Steps tune a setting for one query (wider whole-stage codegen for the monitor's aggregation, row
input for Python UDFs) and must not leave the user's session changed behind them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@contextmanager
def temporary_conf(spark: SparkSession, key: str, value: str) -> Iterator[None]:
    """`key` is `value` inside the block; after it, the session's previous value, or unset when
    it had none. A session that refuses the setting raises before the block runs."""
    previous = spark.conf.get(key, None)
    spark.conf.set(key, value)
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, previous)
