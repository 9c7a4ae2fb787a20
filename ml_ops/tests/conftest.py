import os
import shutil
import uuid
from pathlib import Path

import mlflow
import pytest

from diabetes_mlops.tracking import ARTIFACT_ROOT_ENV

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_databricks_env(monkeypatch):
    """A developer's real workspace settings must never reach a test."""
    for key in list(os.environ):
        if key.startswith("DATABRICKS_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory):
    """One sqlite store for the session (creating one costs ~2 s); tests use unique model names."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_TRACKING_URI", uri)
    patch.setenv(ARTIFACT_ROOT_ENV, str(root / "artifacts"))
    patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    mlflow.set_tracking_uri(uri)
    yield uri
    patch.undo()


@pytest.fixture
def model_name() -> str:
    return f"diabetes_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """A copy of ml_data that tests may spoil."""
    target = tmp_path / "data"
    shutil.copytree(REPO / "ml_data", target)
    return target
