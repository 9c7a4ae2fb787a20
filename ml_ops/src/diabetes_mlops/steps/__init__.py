"""The steps a job runs. Each is a plain function; notebooks call them through `run_step`."""

from diabetes_mlops.step_runner import run_step
from diabetes_mlops.steps.batch_score import batch_score
from diabetes_mlops.steps.promote import promote
from diabetes_mlops.steps.train import train
from diabetes_mlops.steps.validate import validate

__all__ = ["batch_score", "promote", "run_step", "train", "validate"]
