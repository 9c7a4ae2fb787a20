"""Wall time per stage of a step, so a user sees where a job's time goes.

The steps log these as MLflow metrics `seconds_<stage>` on their run (the batch job's benchmark
reads the same figures, so what it reports is what a run records)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

PREFIX = "seconds_"


class StageClock:
    """Seconds spent in each named stage; a stage entered twice adds up."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed

    def metrics(self) -> dict[str, float]:
        """{"seconds_<stage>": seconds}, to log on the step's run."""
        return {f"{PREFIX}{name}": round(value, 4) for name, value in self.seconds.items()}
