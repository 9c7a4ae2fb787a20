"""The fitted pipeline as plain numbers: what a scoring engine needs to predict without sklearn.

prediction = intercept
           + sum over numeric columns: coef * (fill_missing(x, mean_fill) - mean) / scale
           + the coefficient of the row's SEX category (missing or unknown -> no term)

which engines evaluate folded, with one multiply per column and no division:

prediction = offset + sum over numeric columns: weight * fill_missing(x, mean_fill) + SEX term

Spark (in diabetes_mlops) turns this into one native column expression. A pipeline of any other
shape raises NotLinear, and the caller falls back to running the model itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


class NotLinear(ValueError):
    """The model is not the imputer/scaler/one-hot/Ridge pipeline this module can read."""


@dataclass(frozen=True)
class NumericTerm:
    column: str
    fill: float  # imputation value learned at training
    mean: float
    scale: float
    coef: float

    @property
    def weight(self) -> float:
        """coef / scale: the scaler folded into the coefficient."""
        return self.coef / self.scale


@dataclass(frozen=True)
class CategoricalTerm:
    column: str
    coefs: dict[str, float]  # category -> coefficient; other values and missing add nothing


@dataclass(frozen=True)
class LinearForm:
    intercept: float
    numeric: tuple[NumericTerm, ...]
    categorical: tuple[CategoricalTerm, ...]

    @property
    def offset(self) -> float:
        """The intercept with each numeric term's constant part (-mean * weight) folded in."""
        return self.intercept - sum(t.mean * t.weight for t in self.numeric)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """The folded form in numpy: what the Spark expression computes, checkable without Spark."""
        total = np.full(len(frame), self.offset, dtype="float64")
        for t in self.numeric:
            values = frame[t.column]
            if values.dtype.kind != "f":  # typed frames (validated) skip the parse
                values = pd.to_numeric(values, errors="coerce")
            x = values.to_numpy("float64")
            total += np.where(np.isnan(x), t.fill, x) * t.weight
        for t in self.categorical:
            coefs = t.coefs
            total += np.fromiter(
                (coefs.get(v, 0.0) if isinstance(v, str) else 0.0 for v in frame[t.column]),
                dtype="float64",
                count=len(frame),
            )
        return total


def linear_form(model) -> LinearForm:
    """Read the numbers out of a fitted pipeline from diabetes.pipeline.build_pipeline."""
    steps = getattr(model, "steps", None)
    if not isinstance(model, Pipeline) or len(steps) != 2:
        raise NotLinear(f"expected a 2-step Pipeline, got {type(model).__name__}")
    features, regressor = steps[0][1], steps[1][1]
    if not isinstance(features, ColumnTransformer) or type(regressor) is not Ridge:
        raise NotLinear("expected ColumnTransformer then Ridge")
    if np.ndim(regressor.coef_) != 1:
        raise NotLinear("expected a single-output Ridge")
    numeric: list[NumericTerm] = []
    categorical: list[CategoricalTerm] = []
    coefs = iter(regressor.coef_.tolist())
    for name, transformer, columns in features.transformers_:
        if transformer == "drop" or name == "remainder":
            if transformer != "drop":
                raise NotLinear("remainder columns must be dropped")
            continue
        kinds = [type(step) for _, step in getattr(transformer, "steps", [])]
        if type(transformer) is OneHotEncoder:
            if transformer.handle_unknown != "ignore" or transformer.drop is not None:
                raise NotLinear("one-hot encoding must ignore unknown values and drop none")
            for i, column in enumerate(columns):
                levels = [str(c) for c in transformer.categories_[i]]
                categorical.append(CategoricalTerm(column, {v: next(coefs) for v in levels}))
        elif kinds == [SimpleImputer, StandardScaler]:
            imputer, scaler = transformer.steps[0][1], transformer.steps[1][1]
            if imputer.strategy != "mean" or imputer.add_indicator:
                raise NotLinear("numeric imputation must be by the mean")
            scale = scaler.scale_ if scaler.with_std else np.ones(len(columns))
            mean = scaler.mean_ if scaler.with_mean else np.zeros(len(columns))
            for i, column in enumerate(columns):
                numeric.append(
                    NumericTerm(
                        column,
                        float(imputer.statistics_[i]),
                        float(mean[i]),
                        float(scale[i]),
                        next(coefs),
                    )
                )
        else:
            raise NotLinear(f"transformer '{name}' is not imputer+scaler or one-hot")
    if next(coefs, None) is not None:
        raise NotLinear("more coefficients than features")
    return LinearForm(float(regressor.intercept_), tuple(numeric), tuple(categorical))
