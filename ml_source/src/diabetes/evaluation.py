"""Metrics and evaluation artefacts (plots as matplotlib figures, feature statistics as HTML)."""

from __future__ import annotations

import html

import matplotlib

matplotlib.use("Agg")  # no display on clusters or in CI

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score  # noqa: E402

from diabetes.contract import FEATURES, TARGET  # noqa: E402


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """rmse, mae and r2 as plain floats (ready to log)."""
    return {
        "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)),
    }


def evaluate(model, frame: pd.DataFrame) -> dict[str, float]:
    """Metrics of `model` on a validated frame that has the target."""
    return regression_metrics(frame[TARGET], model.predict(frame[list(FEATURES)]))


def mean_baseline(frame: pd.DataFrame) -> dict[str, float]:
    """Metrics of always predicting the frame's own target mean: the bar any model must clear."""
    y = frame[TARGET]
    return regression_metrics(y, np.full(len(y), y.mean()))


def predicted_vs_actual_plot(y_true, y_pred) -> Figure:
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.scatter(y_true, y_pred, s=12, alpha=0.7)
    low = float(min(np.min(y_true), np.min(y_pred)))
    high = float(max(np.max(y_true), np.max(y_pred)))
    ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="actual", ylabel="predicted", title="Holdout: predicted vs actual")
    fig.tight_layout()
    return fig


def residuals_plot(y_true, y_pred) -> Figure:
    residuals = np.asarray(y_true) - np.asarray(y_pred)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.scatter(y_pred, residuals, s=12, alpha=0.7)
    ax.axhline(0, color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="predicted", ylabel="actual - predicted", title="Holdout: residuals")
    fig.tight_layout()
    return fig


def feature_statistics(frame: pd.DataFrame) -> pd.DataFrame:
    """Per column: count, missing, mean/std/min/max for numbers, distinct values for categories."""
    rows = []
    for column in [c for c in (*FEATURES, TARGET) if c in frame.columns]:
        values = frame[column]
        row = {"column": column, "count": int(values.notna().sum())}
        row["missing"] = int(values.isna().sum())
        if pd.api.types.is_numeric_dtype(values):
            row.update(mean=values.mean(), std=values.std(), min=values.min(), max=values.max())
        else:
            counts = values.value_counts()
            row["values"] = ", ".join(f"{k}: {v}" for k, v in counts.items())
        rows.append(row)
    return pd.DataFrame(rows)


def feature_statistics_html(frame: pd.DataFrame, title: str = "Feature statistics") -> str:
    table = feature_statistics(frame).to_html(index=False, float_format="%.4g", na_rep="")
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h2>{html.escape(title)}</h2><p>{len(frame)} rows</p>{table}</body></html>"
    )
