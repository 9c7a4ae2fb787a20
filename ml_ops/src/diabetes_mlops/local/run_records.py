"""What the local runner keeps of a job run that failed, so that it can be repaired as Databricks
repairs a run: the failed tasks, and those after them, run again with the parameters and the task
values of the tasks that succeeded (`diabetes-mlops approve --local` repairs the run that waits
for an approval).

One JSON file per run under <local root>/runs/, written whole (temporary file, then renamed), so
a crash leaves the previous record or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from diabetes_mlops.runtime.errors import UserError

FOLDER = "runs"


class NoSuchRun(UserError, LookupError):
    """No record of that run under the local root."""


@dataclass
class RunRecord:
    run_id: str
    job: str
    spec: str  # the spec file the run ran
    notebooks: str  # the folder of its notebooks
    parameters: dict[str, dict[str, str]]  # task key -> the values it received
    defaults: dict[str, str]  # the target's parameters, for the jobs its run_job tasks run
    task_values: dict[str, dict[str, Any]]
    statuses: dict[str, str] = field(default_factory=dict)  # task key -> SUCCESS, FAILED, ...
    outcomes: dict[str, str | None] = field(default_factory=dict)  # condition task outcomes


def path(root: Path, run_id: str) -> Path:
    return root / FOLDER / f"{run_id}.json"


def save(root: Path, record: RunRecord) -> None:
    folder = root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(asdict(record), indent=1, default=str)
    with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False) as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(file.name, path(root, record.run_id))


def load(root: Path, run_id: str) -> RunRecord:
    try:
        data = json.loads(path(root, run_id).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NoSuchRun(
            f"no local run {run_id!r} under {root / FOLDER} (a run is kept there when it fails)"
        ) from None
    return RunRecord(**data)
