"""The ML library stays pure: no MLflow, Spark or Databricks imports anywhere in its source."""

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "diabetes"
FORBIDDEN = {"mlflow", "pyspark", "databricks"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_diabetes_imports_no_mlflow_spark_or_databricks():
    files = sorted(SOURCE.rglob("*.py"))
    assert files
    offenders = {str(f.name): imported_roots(f) & FORBIDDEN for f in files}
    assert {k: v for k, v in offenders.items() if v} == {}
