"""Diabetes progression model: pure ML (scikit-learn, pandas), no MLflow, Spark or Databricks."""

from diabetes.batch_check import validate_frame
from diabetes.contract import DataValidationError
from diabetes.evaluation import evaluate, mean_baseline, regression_metrics
from diabetes.pipeline import build_pipeline
from diabetes.reading import read_dataset
from diabetes.scoring import score_frame
from diabetes.training import TrainingConfig, TrainingResult, train_model

__version__ = "0.1.0"

__all__ = [
    "DataValidationError",
    "TrainingConfig",
    "TrainingResult",
    "build_pipeline",
    "evaluate",
    "mean_baseline",
    "read_dataset",
    "regression_metrics",
    "score_frame",
    "train_model",
    "validate_frame",
]
