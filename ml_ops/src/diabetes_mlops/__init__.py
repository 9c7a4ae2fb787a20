"""MLOps for the diabetes model: MLflow-wired steps, the job context, specs, a local runner."""

__version__ = "0.1.0"
