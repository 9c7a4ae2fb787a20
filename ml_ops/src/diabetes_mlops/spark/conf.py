"""A Spark session setting changed for the length of a block, then put back as it was.

Steps tune a setting for one query (wider whole-stage codegen for the monitor's aggregation, row
input for Python UDFs, Arrow for a collect) and must not leave the user's session changed behind
them. Every such setting changes speed only, never a result, so a session that refuses it
(serverless compute and standard access mode refuse many) runs the block without it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


@contextmanager
def temporary_conf(spark: SparkSession, key: str, value: str) -> Iterator[None]:
    """`key` is `value` inside the block; after it, the session's previous value, or unset when
    it had none. A session that refuses to read or set it: the block runs as the session is."""
    try:
        previous = spark.conf.get(key, None)
        spark.conf.set(key, value)
    except Exception as exc:  # noqa: BLE001 - refused (CANNOT_MODIFY_CONFIG, ...): slower only
        log.info("this Spark session keeps %s as it is (%s): slower, same results", key, exc)
        yield
        return
    try:
        yield
    finally:
        if previous is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, previous)
