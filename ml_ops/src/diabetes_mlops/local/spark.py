"""A local SparkSession, created only when a notebook first touches `spark`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Extra JVM options for the local session's driver. The tests set "-XX:TieredStopAtLevel=1":
# their many short queries on small data run in ~30 % less time without the C2 compiler, whose
# work only pays off on long runs (docs/testing.md). Unset: the JVM's defaults.
JAVA_OPTIONS_ENV = "DIABETES_MLOPS_SPARK_JAVA_OPTIONS"
# Spark's own log, under the local root: its errors come with JVM stack traces that would bury
# the one line a failed task prints (the runner points at this file instead).
SPARK_LOG = "spark.log"
_LOG_CONFIG = """\
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
appender.file.type = File
appender.file.name = file
appender.file.fileName = {path}
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{{yy/MM/dd HH:mm:ss}} %p %c{{1}}: %m%n%ex
"""


def local_spark_session(work_dir: Path) -> Any:
    """local[*] Spark bound to loopback, UDF workers on this interpreter, no UI."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    work_dir.mkdir(parents=True, exist_ok=True)
    log_config = work_dir / "log4j2.properties"
    log_config.write_text(_LOG_CONFIG.format(path=work_dir / SPARK_LOG))
    java_options = (
        f"-Dderby.system.home={work_dir} -Dlog4j2.configurationFile={log_config}"
        f" {os.environ.get(JAVA_OPTIONS_ENV, '')}"
    )
    session = (
        SparkSession.builder.master("local[*]")
        .appName("diabetes-mlops-local")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.warehouse.dir", str(work_dir / "spark-warehouse"))
        .config("spark.driver.extraJavaOptions", java_options.strip())
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


class LazySpark:
    """Stands in for `spark` in a notebook; the first attribute access creates the session."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._session: Any = None

    @property
    def started(self) -> bool:
        return self._session is not None

    def __getattr__(self, name: str) -> Any:
        if self._session is None:
            self._session = self._factory()
        return getattr(self._session, name)
