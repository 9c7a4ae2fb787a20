"""A batch-score run that SIGKILLs itself at a chosen point of its write (run as a child process by
test_crash_safety.py; the fault is patched in here, the production code has no hooks).

    python crash_writer.py POINT INPUT OUTPUT MODEL EXPERIMENT [WORK_DIR]

Points: writing (half the rows in the staging folder), staged (staging complete, before the
swap), between_renames (the two-rename fallback, after the first), swapped (after the exchange,
before the old output is deleted), spark_writing (a Spark write, killed once its job has started
writing; WORK_DIR gets the JVM's pid so the test can wait for it).
"""

from __future__ import annotations

import glob
import os
import signal
import sys
import threading
import time
from pathlib import Path


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str, output: str) -> None:
    import pandas as pd

    from diabetes_mlops.data import directory_swap

    if point == "writing":
        original = pd.DataFrame.to_parquet

        def half_then_die(self, path, *args, **kwargs):
            original(self.head(len(self) // 2), path, *args, **kwargs)
            die()

        pd.DataFrame.to_parquet = half_then_die
    elif point == "staged":
        directory_swap.publish = lambda *args, **kwargs: die()
    elif point == "between_renames":

        def cannot_exchange(a, b):
            raise directory_swap.ExchangeUnsupported(22, "Invalid argument")

        directory_swap.exchange = cannot_exchange
        rename = os.rename

        def die_before_the_second(src, dst):
            if ".staging-" in str(src) and str(dst) == output:
                die()
            rename(src, dst)

        os.rename = die_before_the_second
    elif point == "swapped":
        exchange, remove = directory_swap.exchange, directory_swap.remove
        swapped = []

        def exchange_then_note(a, b):
            exchange(a, b)
            swapped.append(a)

        def die_if_swapped(folder, marker):
            if folder in swapped:
                die()
            remove(folder, marker)

        directory_swap.exchange, directory_swap.remove = exchange_then_note, die_if_swapped
    elif point != "spark_writing":
        raise SystemExit(f"unknown point {point}")


def kill_once_spark_writes(output: str) -> None:
    """Spark's job has started when its _temporary folder appears in the staging folder."""
    pattern = str(Path(output).with_name(f".{Path(output).name}.staging-*")) + "/_temporary"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if glob.glob(pattern):
            die()
        time.sleep(0.002)


def main(point, source, output, model, experiment, work_dir=None) -> None:
    arm(point, output)
    from diabetes_mlops.steps import batch_score

    spark, engine = None, "pandas"
    if point == "spark_writing":
        from diabetes_mlops.local.spark import REMOTE_ENV, classic_session, local_spark_session

        if os.environ.get(REMOTE_ENV):  # Spark Connect: a server of its own, killed with it
            os.environ[REMOTE_ENV] = "local[1]"
        spark, engine = local_spark_session(Path(work_dir)), "spark"
        jvm = classic_session(Path(work_dir)).sparkContext._jvm  # the one this process runs
        pid = jvm.java.lang.ProcessHandle.current().pid()
        Path(work_dir, "jvm.pid").write_text(str(pid))
        threading.Thread(target=kill_once_spark_writes, args=(output,), daemon=True).start()
    batch_score(spark, source, output, model, experiment, engine=engine)
    print("the run finished: it was never killed")


if __name__ == "__main__":
    main(*sys.argv[1:])
