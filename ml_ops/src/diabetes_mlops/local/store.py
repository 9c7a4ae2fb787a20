"""Where the local MLflow store lives under a local root: one rule for the runner and `serve`."""

from __future__ import annotations

from pathlib import Path

STORE_FILE = "mlflow.db"


def tracking_uri(local_root: str | Path) -> str:
    """The sqlite store of `local_root` (which also holds its registry)."""
    return f"sqlite:///{Path(local_root).absolute() / STORE_FILE}"


UI_PORT = 5000


def ui_url(local_root: str | Path, experiment_name: str, port: int = UI_PORT) -> str:
    """Where `make mlflow-ui` shows the experiment's runs. MLflow 3.17's UI opens an experiment
    on its GenAI overview unless the "Model training" view is chosen: by hand, or by the
    `workflowType=machine_learning` search parameter this link carries (the UI reads it before
    the choice it keeps in the browser; the experiment's mlflow.experimentKind tag is not
    consulted while the UI shows that toggle)."""
    from mlflow.tracking import MlflowClient

    experiment = None
    if (Path(local_root) / STORE_FILE).is_file():  # never create a store just to look
        client = MlflowClient(tracking_uri=tracking_uri(local_root))
        experiment = client.get_experiment_by_name(experiment_name)
    route = f"experiments/{experiment.experiment_id}" if experiment else "experiments"
    return f"http://127.0.0.1:{port}/#/{route}?workflowType=machine_learning"
