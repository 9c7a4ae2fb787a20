"""A Spark session that refuses session settings as serverless compute does.

Serverless compute lets a session set only a few `spark.sql.*` settings; any other is refused
with CONFIG_NOT_AVAILABLE ("Configuration X is not available", SQLSTATE 42K0I). The official
list (https://docs.databricks.com/aws/en/spark/conf, "Configure Spark properties for serverless
notebooks and jobs") could not be read here; ALLOWED is the list as secondary sources quote it,
and the official limitations page names spark.sql.session.timeZone and spark.sql.ansi.enabled
(https://docs.databricks.com/compute/serverless/limitations). The settings the scoring and
monitor passes change for speed (codegen width, Arrow, columnar UDF input) are not on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from unittest import mock

from pyspark.sql.conf import RuntimeConfig
from pyspark.sql.connect.conf import RuntimeConf

ALLOWED = {
    "spark.sql.shuffle.partitions",
    "spark.sql.session.timeZone",
    "spark.sql.ansi.enabled",
    "spark.sql.files.maxPartitionBytes",
    "spark.sql.legacy.timeParserPolicy",
}


class ConfigNotAvailable(Exception):
    pass


def _refused(key: str) -> bool:
    return key.startswith("spark.sql.") and key not in ALLOWED


@contextmanager
def refusing_settings() -> Iterator[list[str]]:
    """Inside, every Spark session (classic or Connect) refuses to set or unset a `spark.sql.*`
    setting serverless does not allow; yields the keys refused, in order. Reads pass: pyspark's
    client reads settings for itself (spark.sql.stackTracesInDataFrameContext, ...)."""
    refused: list[str] = []

    def guard(original):
        def call(self, key, *args, **kwargs):
            if _refused(key):
                refused.append(key)
                raise ConfigNotAvailable(
                    f"[CONFIG_NOT_AVAILABLE] Configuration {key} is not available. SQLSTATE: 42K0I"
                )
            return original(self, key, *args, **kwargs)

        return call

    with ExitStack() as stack:
        for cls in (RuntimeConf, RuntimeConfig):
            for name in ("set", "unset"):
                stack.enter_context(mock.patch.object(cls, name, guard(getattr(cls, name))))
        yield refused
