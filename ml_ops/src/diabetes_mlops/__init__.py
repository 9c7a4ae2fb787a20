"""MLOps for the diabetes model: steps wired to MLflow, the job context, specs and a local runner."""

__version__ = "0.1.0"
