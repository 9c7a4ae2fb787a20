"""Where the local MLflow store lives under a local root: one rule for the runner and `serve`."""

from __future__ import annotations

from pathlib import Path

STORE_FILE = "mlflow.db"


def tracking_uri(local_root: str | Path) -> str:
    """The sqlite store of `local_root` (which also holds its registry)."""
    return f"sqlite:///{Path(local_root).absolute() / STORE_FILE}"
