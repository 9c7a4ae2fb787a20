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


MAX_FIELDS = "spark.sql.codegen.maxFields"


@contextmanager
def wide_codegen(spark: SparkSession, fields: int) -> Iterator[None]:
    """While inside, an operator with `fields` output fields keeps whole-stage code generation
    (above spark.sql.codegen.maxFields, 100 by default, Spark drops it for an aggregate with that
    many buffer fields, which doubles its cost).

    Performance only: the query's result is the same either way. Like any session setting it is
    seen by queries other threads run on the same session meanwhile (it can only speed them up).
    """
    try:
        enough = int(spark.conf.get(MAX_FIELDS)) >= fields
    except Exception:  # noqa: BLE001 - a session may not show it: temporary_conf decides
        enough = False
    if enough:
        yield
        return
    with temporary_conf(spark, MAX_FIELDS, str(fields)):  # refused (serverless): just slower
        yield
