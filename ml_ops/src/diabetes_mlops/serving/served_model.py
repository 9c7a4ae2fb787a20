"""The logged model as a server sees it: the fitted pipeline behind the data contract.

One MLflow model, two flavors. The `sklearn` flavor is the plain fitted pipeline, which training,
validation and batch scoring load in-process; batch scoring checks whole inputs itself, with its
own policies (quarantine, a tolerated share of unknown SEX codes). The `python_function` flavor,
which every server loads (`mlflow models serve`, Databricks Model Serving, `spark_udf`), puts
`diabetes.request_check.validate_request` in front of the pipeline: MLflow's signature enforcement
expresses column types only, so the ranges and the SEX codes of the data contract travel inside
the model, and any server refuses a request that breaks them with HTTP 400 naming the column,
the value and the row. No separate server does the checking.

The contract's code travels with the model too (`code/`, MLflow's `code_paths`), so a serving
container needs no wheel of ours: only the model's pip requirements.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import mlflow.sklearn
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import FLAVOR_NAME as PYFUNC
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import AnyType

import diabetes
import diabetes_mlops
from diabetes.contract import CATEGORICAL_FEATURE, FEATURES, DataValidationError
from diabetes.errors import UserError
from diabetes.linear_form import LinearForm, NotLinear, linear_form
from diabetes.request_check import validate_request

SKLEARN = mlflow.sklearn.FLAVOR_NAME
# The pyfunc loader every logged model names in its MLmodel file: a path that never moves
# (diabetes_mlops/served_model.py forwards to this module).
LOADER_MODULE = "diabetes_mlops.served_model"
# The packages whose source is shipped in the model's code/ folder: what this module imports.
SHIPPED_PACKAGES = (diabetes, diabetes_mlops)
# Everything the logged pipeline needs to load and predict: scikit-learn classes only, so the
# `diabetes` package itself is not a requirement of the model.
MODEL_PACKAGES = ("scikit-learn", "scipy", "numpy", "pandas", "cloudpickle")
# cloudpickle is MLflow's format on Databricks. skops would refuse unknown types on load, but its
# import scans every scikit-learn estimator (~1 s in each fresh job process), and loading models
# from our own registry is the trust boundary anyway.
SERIALIZATION = "cloudpickle"


class RequestRefused(MlflowException, UserError):
    """A request that breaks the contract: HTTP 400 whose message is our one line.

    MLflow's scoring server (which Databricks Model Serving runs too) rewrites the message of an
    MlflowException from `predict` to "Failed to predict data '<the whole request>'. Error:
    <message>" (mlflow/pyfunc/scoring_server/__init__.py, `invocations`), which buries the line
    under the request. This class keeps the line and drops the dump: the line names the column,
    the value and the row already."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._line

    @message.setter
    def message(self, text: str) -> None:
        self._line = text.rpartition("\nError: ")[2] if "\nError: " in text else text


class ServedModel:
    """What `mlflow.pyfunc.load_model` returns for our models (through `_load_pyfunc`)."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        # The pipeline's own numbers (diabetes.linear_form), as batch scoring on Spark uses them:
        # the same predictions (to ~1e-13) in a fraction of scikit-learn's per-call overhead,
        # which dominates a one-row request. Any other model is run as it is.
        try:
            self.form: LinearForm | None = linear_form(pipeline)
        except NotLinear:
            self.form = None

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None):
        if not isinstance(model_input, pd.DataFrame):
            raise RequestRefused(f"expected a table of features, got {type(model_input).__name__}")
        try:
            features = validate_request(model_input)
        except DataValidationError as error:  # HTTP 400 with our one line, from any server
            raise RequestRefused(str(error)) from None
        if self.form is not None:
            return self.form.predict(features)
        return self.pipeline.predict(features)

    def get_raw_model(self) -> Any:
        return self.pipeline


def checks_requests(model_uri: str) -> bool:
    """Whether a logged model's pyfunc flavor is this one: models logged before the contract
    travelled with the model load as plain `mlflow.sklearn` and answer any request."""
    flavor = Model.load(model_uri).flavors.get(PYFUNC, {})
    return flavor.get("loader_module") == LOADER_MODULE


def log_model(
    pipeline: Any, *, name: str, registered_model_name: str | None = None, **kwargs: Any
) -> ModelInfo:
    """`mlflow.sklearn.log_model`, plus the guarded pyfunc flavor and the code it needs.

    `kwargs` are those of `mlflow.sklearn.save_model` (input_example, ...); the signature, the
    pip requirements and the serialization format default to model_signature(),
    model_requirements() and SERIALIZATION."""
    kwargs.setdefault("signature", model_signature())
    kwargs.setdefault("pip_requirements", model_requirements())
    kwargs.setdefault("serialization_format", SERIALIZATION)
    with tempfile.TemporaryDirectory() as folder:
        return Model.log(
            artifact_path=None,
            name=name,
            flavor=sys.modules[__name__],
            registered_model_name=registered_model_name,
            sk_model=pipeline,
            code_paths=_clean_copies(Path(folder)),
            **kwargs,
        )


def model_signature() -> ModelSignature:
    """Declared from the contract, not inferred: every feature may be missing (the model
    imputes). The numeric features are declared as any type: a server casts a request's columns
    to the declared types before the model sees them (`cast_df_types_according_to_schema` in
    mlflow/utils/proto_json_utils.py: `astype(float64)`), which turns a JSON `true` into 1.0, a
    silent wrong answer. Left as given, a boolean reaches validate_request, which refuses it."""
    inputs = [
        ColSpec("string" if c == CATEGORICAL_FEATURE else AnyType(), c, required=False)
        for c in FEATURES
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("double")]))


def model_requirements() -> list[str]:
    """Exact versions of what the model needs: explicit, so log_model does not infer (7-13 s)."""
    return [f"{package}=={installed_version(package)}" for package in MODEL_PACKAGES]


def save_model(sk_model: Any, path: str, mlflow_model: Model, **kwargs: Any) -> None:
    """The flavor interface `Model.log` calls: save as sklearn, then point pyfunc at us."""
    mlflow.sklearn.save_model(sk_model, path, mlflow_model=mlflow_model, **kwargs)
    mlflow_model.flavors[PYFUNC]["loader_module"] = LOADER_MODULE
    # In-process loads of the sklearn flavor (batch scoring, validation) use the installed
    # packages; only a pyfunc load puts the model's code/ on sys.path.
    mlflow_model.flavors[SKLEARN]["code"] = None
    mlflow_model.save(str(Path(path) / "MLmodel"))


def _load_pyfunc(path: str) -> ServedModel:
    """MLflow's pyfunc loader hook; `path` is the model folder (or a file inside it)."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    return ServedModel(mlflow.sklearn.load_model(str(folder)))


def _clean_copies(folder: Path) -> list[str]:
    """The shipped packages' Python sources, without caches or build leftovers."""
    copies = []
    for package in SHIPPED_PACKAGES:
        source = Path(package.__file__).parent
        target = folder / source.name
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        copies.append(str(target))
    return copies
