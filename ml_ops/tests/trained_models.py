"""Trained models for the tests: one shared champion per session, and quick trainings.

Training, validating and promoting a model costs 2-4 s warm (the grid search is 45 fits), so a
test that only needs *a* champion uses the session's one (`champion` fixture) and leaves it as it
found it. A test of the registry's lifecycle (versions, aliases, tags) trains its own, with FAST
settings unless the model's quality is what it checks: one alpha (the one the default grid picks
on the sample data) and two folds.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
TRAINING_DATA = REPO / "ml_data" / "data_raw.csv"
FAST: dict[str, Any] = {"alphas": (3.0,), "cv_folds": 2}


def train_validate_promote(
    model_name: str, experiment: str, data: Path = TRAINING_DATA, **training: Any
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """train -> validate -> promote, as the training job chains them: each step's outputs."""
    from diabetes_mlops.steps import promote, train, validate

    trained = train(str(data), model_name, experiment, **training)
    verdict = validate(model_name, trained["model_version"], experiment)
    return trained, verdict, promote(model_name, trained["model_version"])


class Champion:
    """A registered, validated and promoted model version (alias `champion`)."""

    def __init__(self, name: str, version: str, experiment: str) -> None:
        self.name, self.version, self.experiment = name, version, experiment

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @cached_property
    def pipeline(self) -> Any:
        """The scikit-learn pipeline, as mlflow.sklearn loads it."""
        import mlflow

        return mlflow.sklearn.load_model(self.uri)

    @cached_property
    def pyfunc(self) -> Any:
        """The model as MLflow's scoring server loads it (the contract guard included)."""
        import mlflow

        return mlflow.pyfunc.load_model(self.uri)

    def state(self) -> tuple[Any, ...]:
        """What a test must not change: its versions, aliases and this version's tags."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient()
        versions = sorted(v.version for v in client.search_model_versions(f"name='{self.name}'"))
        model = client.get_registered_model(self.name)
        tags = client.get_model_version(self.name, self.version).tags
        return tuple(versions), dict(model.aliases), dict(model.tags), tags


def new_champion(name: str, experiment: str, **training: Any) -> Champion:
    trained, _, promoted = train_validate_promote(name, experiment, **training)
    assert promoted["promoted"] == "true", promoted
    return Champion(name, trained["model_version"], experiment)
