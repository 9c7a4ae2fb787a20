"""Parameters several steps take, declared once: one name has one meaning in every step.

A job parameter reaches every task of its job, so `model_name` in `train` and in `promote` must
be judged by the same rules; `parameter_registry` refuses steps that disagree.
"""

from __future__ import annotations

from typing import Annotated

from diabetes_mlops.runtime.parameters import (
    NotEmpty,
    OneOf,
    RegisteredModelName,
    VersionOrAlias,
    cross_check,
)
from diabetes_mlops.tracking.runs import REGISTRIES, check_model_name

ModelName = Annotated[str, RegisteredModelName()]
ExperimentName = Annotated[str, NotEmpty()]
Registry = Annotated[str, OneOf(*REGISTRIES)]
ModelRef = Annotated[str, VersionOrAlias()]  # a version number or an alias


@cross_check
def model_name_fits_registry(registry: str, model_name: str) -> None:
    """Unity Catalog names a model catalog.schema.model: the rule `tracking.use_registry`
    applies when the step runs, judged before the job starts."""
    check_model_name(registry, model_name)
