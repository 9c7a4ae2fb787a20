"""The layer contracts (pyproject.toml, docs/architecture.md) hold on the tree, and fail on an
import that points up, crosses between sibling layers, makes a cycle or makes the ML library
impure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(sources: list[Path]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(s) for s in sources)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


def copy_of_the_sources(tmp_path: Path) -> Path:
    for package in ("ml_source/src/diabetes", "ml_ops/src/diabetes_mlops"):
        shutil.copytree(ROOT / package, tmp_path / Path(package).name,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    return tmp_path


def test_the_tree_keeps_every_contract():
    result = lint_imports([ROOT / "ml_source/src", ROOT / "ml_ops/src"])
    assert result.returncode == 0, result.stdout[-2000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, added, broken",
    [
        ("diabetes_mlops/runtime/errors.py", "import diabetes_mlops.cli",
         "diabetes_mlops.runtime.errors -> diabetes_mlops.cli"),
        ("diabetes_mlops/steps/train.py", "from diabetes_mlops.deploy import wheels",
         "diabetes_mlops.steps.train -> diabetes_mlops.deploy.wheels"),
        ("diabetes_mlops/spark/scoring.py", "from diabetes_mlops.tracking import registry",
         "diabetes_mlops.spark.scoring -> diabetes_mlops.tracking.registry"),
        ("diabetes/drift.py", "import mlflow", "diabetes.drift -> mlflow"),
        ("diabetes_mlops/data/output.py", "import diabetes_mlops.data.monitoring_table",
         "- .output -> .monitoring_table"),
    ],
    ids=["runtime imports the cli", "a step imports deploy tooling",
         "one adapter imports another", "the ML library imports MLflow",
         "two modules of a package import each other"],
)  # fmt: skip
def test_an_import_against_the_layers_breaks_the_contract(tmp_path, module, added, broken):
    sources = copy_of_the_sources(tmp_path)
    path = sources / module
    path.write_text(path.read_text() + f"\n{added}  # noqa\n")
    result = lint_imports([sources])
    assert result.returncode != 0
    assert broken in result.stdout


# What Spark Connect (serverless compute, standard access mode) does not have: a JVM to reach.
JVM_ONLY = ("._jvm", ".sparkContext", "._jsc", "._jdf", "._jsparkSession", "SparkContext")


def test_no_code_that_runs_in_a_job_reaches_the_jvm():
    """Only the local runner's session set-up (diabetes_mlops/local/, which starts the local
    Spark that serves Spark Connect) may touch the JVM; steps and adapters run on serverless."""
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for top in (ROOT / "ml_source/src", ROOT / "ml_ops/src")
        for path in sorted(top.rglob("*.py"))
        if "diabetes_mlops/local/" not in path.as_posix()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if any(name in line for name in JVM_ONLY)
    ]
    assert found == []
