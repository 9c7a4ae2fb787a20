"""Benchmark: `diabetes-mlops deploy` twice against the fake workspace (from the test suite).

Each round copies the project to a fresh folder (so the first deploy builds the wheels) and starts
a fresh fake workspace; the first deploy uploads everything and creates the jobs, the second
should upload nothing and reset no job (the jobs are unchanged).
Each deploy is a separate process, as `make deploy` runs it. Prints medians of --runs rounds.

    python ml_ops/benchmarks/deploy_twice.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "ml_ops" / "tests"))

from fake_workspace import FakeWorkspace  # noqa: E402

PARTS = ("ml_source", "ml_ops", "orchestrator_notebooks", "job_specs", "deploy.yml")


def deploy(project: Path, fake: FakeWorkspace) -> tuple[float, int, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABRICKS_")}
    env.update(DATABRICKS_HOST=fake.url, DATABRICKS_TOKEN=fake.token, DATABRICKS_AUTH_TYPE="pat")
    before = fake.uploaded_bytes()
    resets = len(fake.calls("POST", "/jobs/reset"))
    command = [sys.executable, "-m", "diabetes_mlops.cli", "deploy", "--target", "staging",
               "--repo", str(project), "--config", str(project / "deploy.yml")]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"deploy failed:\n{done.stdout}\n{done.stderr}")
    return seconds, fake.uploaded_bytes() - before, len(fake.calls("POST", "/jobs/reset")) - resets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-deploy-") as folder:
            project = Path(folder)
            for part in PARTS:
                source = REPO / part
                if source.is_dir():
                    ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests")
                    shutil.copytree(source, project / part, ignore=ignore)
                else:
                    shutil.copy(source, project / part)
            fake = FakeWorkspace().start()
            try:
                first = deploy(project, fake)
                second = deploy(project, fake)
            finally:
                fake.stop()
            rows.append((first, second))
    print(f"{args.runs} rounds, each: fresh project copy + fresh fake workspace, 2 deploys")
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}\n")
    header = f"{'deploy':34} {'median wall':>12} {'min-max':>14} {'bytes uploaded':>15}"
    header += f" {'jobs reset':>11}"
    print(header + "\n" + "-" * len(header))
    for index, label in enumerate(("first (build + upload everything)", "second (no change)")):
        walls = [row[index][0] for row in rows]
        sent = {row[index][1] for row in rows}
        span = f"{min(walls):.2f}-{max(walls):.2f} s"
        sizes = "/".join(map(str, sorted(sent)))
        resets = "/".join(map(str, sorted({row[index][2] for row in rows})))
        print(f"{label:34} {statistics.median(walls):10.2f} s {span:>14} {sizes:>15} {resets:>11}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
