"""A local SparkSession, created only when a notebook first touches `spark`: classic, or Spark
Connect when SPARK_REMOTE is set, as on serverless compute and standard access mode clusters.

SPARK_REMOTE=sc://host:port connects to that Spark Connect server. SPARK_REMOTE=local[N] starts
one on this machine: a local Spark in this process serving Spark Connect on a free loopback port
(what pyspark itself does for `local`, except that pyspark always takes port 15002 on every
interface), and the steps get only the Connect session: no JVM, no sparkContext.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from diabetes_mlops.runtime.errors import UserError
from diabetes_mlops.runtime.tcp import free_port, open_problem

REMOTE_ENV = "SPARK_REMOTE"

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


_LOCAL_MASTER = re.compile(r"local(\[(\*|[1-9][0-9]*)\])?")
CONNECT_PORT = 15002  # Spark Connect's default port, when sc://host names none


class SparkRemoteError(UserError, RuntimeError):
    """SPARK_REMOTE names no Spark this runner can use."""


def local_spark_session(work_dir: Path) -> Any:
    """The session SPARK_REMOTE asks for (module docstring); without it, classic local[*]."""
    remote = os.environ.get(REMOTE_ENV, "").strip()
    if remote.startswith("sc://"):
        check_answers(remote)
        return _connect(remote)
    if remote and not _LOCAL_MASTER.fullmatch(remote):
        raise SparkRemoteError(
            f"{REMOTE_ENV}={remote!r}: give sc://host:port (a Spark Connect server) or local[N]"
            " (one started here)"
        )
    if remote:
        return connect_session(classic_session(work_dir, master=remote))
    return classic_session(work_dir)


def check_answers(url: str, seconds: float = 5.0) -> None:
    """A server must accept connections at the URL's host and port: the Spark Connect client
    would otherwise retry for minutes before its first query fails."""
    parsed = urlparse(url.split(";", 1)[0])
    host, port = parsed.hostname or "", parsed.port or CONNECT_PORT
    found = open_problem(host, port, dns_seconds=seconds, connect_seconds=seconds)
    if found is not None:
        raise SparkRemoteError(
            f"{REMOTE_ENV}={url}: no Spark Connect server at {host}:{port} ({found[1]})"
        )


def describe(spark: Any) -> str:
    """Which Spark a session is, for the runner's first lines."""
    if is_connect(spark):
        remote = os.environ.get(REMOTE_ENV, "")
        where = "a local server" if remote and not remote.startswith("sc://") else remote
        return f"Spark Connect ({REMOTE_ENV}={remote}: {where})"
    return f"classic Spark {spark.conf.get('spark.master')}"


def is_connect(spark: Any) -> bool:
    return type(spark).__module__.startswith("pyspark.sql.connect")


def connect_session(classic: Any) -> Any:
    """A Spark Connect session served by this process's classic session."""
    return _connect(start_connect_server(classic))


def start_connect_server(classic: Any) -> str:
    """Serve Spark Connect on the classic session's Spark (once per process, on a free
    loopback port); its sc:// URL."""
    context = classic._jsc.sc()
    conf = context.conf()
    if conf.get("spark.connect.grpc.binding.address", "") != "127.0.0.1":
        conf.set("spark.connect.grpc.binding.address", "127.0.0.1")
        conf.set("spark.connect.grpc.binding.port", str(free_port()))
        classic._jvm.org.apache.spark.sql.connect.service.SparkConnectService.start(context)
    return f"sc://127.0.0.1:{conf.get('spark.connect.grpc.binding.port')}"


# pyspark.sql.functions builds Spark Connect columns while this is set (pyspark sets it whenever
# it builds a Connect session; `is_remote()`): from here on, this process speaks Spark Connect.
CONNECT_MODE_ENV = "SPARK_CONNECT_MODE_ENABLED"


def _connect(url: str) -> Any:
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    os.environ[CONNECT_MODE_ENV] = "1"
    return ConnectSession.builder.remote(url).getOrCreate()


@contextlib.contextmanager
def _classic_builder_env() -> Iterator[None]:
    """The environment without SPARK_REMOTE and SPARK_CONNECT_MODE_ENABLED inside: pyspark's
    builder builds a Connect session whenever either is set, and refuses a master beside it."""
    saved = {name: os.environ.pop(name, None) for name in (REMOTE_ENV, CONNECT_MODE_ENV)}
    try:
        yield
    finally:
        os.environ.update({k: v for k, v in saved.items() if v is not None})


def classic_session(work_dir: Path, master: str = "local[*]") -> Any:
    """Classic local Spark bound to loopback, UDF workers on this interpreter, no UI."""
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
    with _classic_builder_env():  # the builder checks them at each .config() already
        session = (
            SparkSession.builder.master(master)
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
