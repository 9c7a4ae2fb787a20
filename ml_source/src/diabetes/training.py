"""Training: a seeded holdout split, alpha chosen by K-fold CV, a refit, holdout metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import GridSearchCV, KFold, train_test_split
from sklearn.pipeline import Pipeline

from diabetes.contract import FEATURES, TARGET, DataValidationError
from diabetes.evaluation import regression_metrics
from diabetes.pipeline import build_pipeline

DEFAULT_ALPHAS: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


@dataclass(frozen=True)
class TrainingConfig:
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    test_size: float = 0.2
    cv_folds: int = 5
    seed: int = 42

    def __post_init__(self) -> None:
        if not self.alphas or any(not 0 < a < math.inf for a in self.alphas):
            raise ValueError(f"alphas must be positive finite numbers, got {list(self.alphas)}")
        if not 0 < self.test_size < 1:
            raise ValueError(f"test_size must be between 0 and 1, got {self.test_size}")
        if self.cv_folds < 2:
            raise ValueError(f"cv_folds must be at least 2, got {self.cv_folds}")


@dataclass
class TrainingResult:
    model: Pipeline
    alpha: float
    cv_results: pd.DataFrame  # one row per candidate alpha: alpha, cv_rmse_mean, cv_rmse_std
    train: pd.DataFrame
    holdout: pd.DataFrame
    metrics: dict[str, float] = field(default_factory=dict)  # rmse, mae, r2 on the holdout


def split_holdout(
    frame: pd.DataFrame, test_size: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Deterministic split: the same data and seed always give the same holdout rows."""
    train, holdout = train_test_split(frame, test_size=test_size, random_state=seed)
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def row_fingerprints(frame: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash of each row's features and target (of a validated frame).

    Kept with a model so a later validation can tell which rows that model was trained on.
    """
    return pd.util.hash_pandas_object(frame[[*FEATURES, TARGET]], index=False).to_numpy()


def train_model(
    frame: pd.DataFrame, config: TrainingConfig | None = None, source: str = "training data"
) -> TrainingResult:
    """Fit the pipeline on a validated training frame; every CV candidate's score is returned."""
    config = config or TrainingConfig()
    train, holdout = split_holdout(frame, config.test_size, config.seed)
    if len(train) < 2 * config.cv_folds or len(holdout) < 2:
        raise DataValidationError(
            source,
            None,
            f"{len(frame)} rows are too few: {config.cv_folds}-fold CV on the training split"
            f" needs at least {2 * config.cv_folds} rows and the holdout at least 2",
        )
    search = GridSearchCV(
        build_pipeline(),
        param_grid={"ridge__alpha": list(config.alphas)},
        scoring="neg_root_mean_squared_error",
        cv=KFold(n_splits=config.cv_folds, shuffle=True, random_state=config.seed),
        refit=True,
    )
    search.fit(train[list(FEATURES)], train[TARGET])
    cv = search.cv_results_
    cv_results = pd.DataFrame(
        {
            "alpha": [float(a) for a in cv["param_ridge__alpha"]],
            "cv_rmse_mean": -cv["mean_test_score"],
            "cv_rmse_std": cv["std_test_score"],
        }
    )
    model = search.best_estimator_
    predictions = model.predict(holdout[list(FEATURES)])
    return TrainingResult(
        model=model,
        alpha=float(search.best_params_["ridge__alpha"]),
        cv_results=cv_results,
        train=train,
        holdout=holdout,
        metrics=regression_metrics(holdout[TARGET], predictions),
    )
