"""Drift over time, for people: each feature's metric across the last batches, as small multiples.

"Drifting for three days" is easier to see than to read from one report per batch. The figure
takes the monitoring table's rows (one per batch, feature and metric: `batch_id, batch_time,
model_version, feature, metric, value, threshold, drifted`), keeps the last `last` batches, and
draws one panel per feature: the metric's value batch after batch, its threshold as a dashed line,
the batches past it in red (diabetes.drift.is_over: a p-value below it, a missing-rate change
beyond it either way), and a dotted line where another model version took over (each version
is compared with its own reference). It reads only those rows, never data.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on clusters or in CI

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from diabetes.drift import is_over  # noqa: E402
from diabetes.drift_report import (  # noqa: E402
    BATCH_COLOR,
    DRIFT_COLOR,
    FONT_SIZE,
    REFERENCE_COLOR,
    png_base64,
)

DEFAULT_LAST = 30
COLUMNS = 4
PANEL_INCHES = (3.3, 2.1)
MARGINS = {"left": 0.07, "right": 0.99, "top": 0.9, "bottom": 0.12, "hspace": 0.75, "wspace": 0.3}
NEEDED = ("batch_id", "batch_time", "model_version", "feature", "metric", "value", "threshold")


def last_batches(history: pd.DataFrame, last: int = DEFAULT_LAST) -> pd.DataFrame:
    """The rows of the `last` most recent batches (by batch time), oldest first."""
    missing = [c for c in NEEDED if c not in history.columns]
    if missing:
        raise ValueError(f"the monitoring rows lack column(s) {', '.join(missing)}")
    times = history.groupby("batch_id", sort=False)["batch_time"].max().sort_values()
    kept = times.index[-last:] if last > 0 else times.index[:0]
    order = {batch: i for i, batch in enumerate(kept)}
    rows = history[history["batch_id"].isin(order)].copy()
    rows["order"] = rows["batch_id"].map(order)
    return rows.sort_values("order")


def history_figure(
    history: pd.DataFrame, metric: str, features: Sequence[str], last: int = DEFAULT_LAST
) -> Figure | None:
    """One panel per feature with `metric` across the last batches; None when no batch has it."""
    rows = last_batches(history, last)
    rows = rows[(rows["metric"] == metric) & rows["feature"].isin(features)]
    if rows.empty:
        return None
    shown = [f for f in features if f in set(rows["feature"])]
    grid_rows = math.ceil(len(shown) / COLUMNS)
    fig = Figure(figsize=(PANEL_INCHES[0] * COLUMNS, PANEL_INCHES[1] * grid_rows + 0.5))
    fig.subplots_adjust(**MARGINS)
    axes = fig.subplots(grid_rows, COLUMNS, squeeze=False).ravel()
    batches = rows.drop_duplicates("order").set_index("order").sort_index()
    labels = _time_labels(batches["batch_time"])
    for ax, name in zip(axes, shown, strict=False):
        _panel(ax, rows[rows["feature"] == name], batches, labels)
        ax.set_title(name, fontsize=FONT_SIZE + 2, loc="left")
    for ax in axes[len(shown) :]:
        ax.set_axis_off()
    fig.suptitle(
        f"{metric} per batch, last {len(batches)} batch(es); dashed: threshold, red: over it",
        fontsize=FONT_SIZE + 2,
        x=0.01,
        ha="left",
    )
    return fig


def _time_labels(times: pd.Series) -> list[str]:
    """Month-day hour:minute, with seconds when that would show two batches alike."""
    for pattern in ("%m-%d %H:%M", "%m-%d %H:%M:%S"):
        labels = [pd.Timestamp(t).strftime(pattern) for t in times]
        if len(set(labels)) == len(labels):
            return labels
    return labels


def _panel(ax, rows: pd.DataFrame, batches: pd.DataFrame, labels: list[str]) -> None:
    rows = rows.sort_values("order")
    x, y = rows["order"].to_numpy(), rows["value"].astype("float64").to_numpy()
    ax.plot(x, y, color=BATCH_COLOR, linewidth=1.4, marker="o", markersize=3.5)
    thresholds = rows["threshold"].astype("float64")
    names = rows["metric"].to_numpy()
    over = np.array(
        [is_over(m, v, t) for m, v, t in zip(names, y, thresholds, strict=True)], dtype=bool
    )
    ax.plot(x[over], y[over], linestyle="none", marker="o", markersize=5, color=DRIFT_COLOR)
    if thresholds.notna().any():
        ax.plot(x, thresholds, linestyle="--", linewidth=1, color=DRIFT_COLOR, alpha=0.7)
    versions = batches["model_version"].to_numpy()
    for i in range(1, len(versions)):
        if versions[i] != versions[i - 1]:
            ax.axvline(i - 0.5, linestyle=":", color=REFERENCE_COLOR, linewidth=1)
            ax.annotate(f"v{versions[i]}", (i - 0.45, 1), xycoords=("data", "axes fraction"),
                        va="top", fontsize=FONT_SIZE - 1, color=REFERENCE_COLOR)  # fmt: skip
    ticks = list(range(len(labels)))
    step = max(1, math.ceil(len(ticks) / 6))
    ax.set_xticks(ticks[::step], labels[::step], fontsize=FONT_SIZE - 1)
    ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.tick_params(axis="y", labelsize=FONT_SIZE)
    ax.set_ylim(bottom=min(0.0, float(pd.Series(y).min(skipna=True) or 0.0)))
    ax.grid(axis="y", alpha=0.3)


def batches_shown(history: pd.DataFrame, last: int = DEFAULT_LAST) -> int:
    return int(last_batches(history, last)["batch_id"].nunique())


def history_html(figure: Figure | None, metric: str, batches: int) -> str:
    """The report's section: the figure of `batches` batches inline, or why there is none."""
    heading = f"<h2>Drift over time: {html.escape(metric)} in the last {batches} batch(es)</h2>"
    if figure is None:
        return heading + "<p class='note'>No batch in the monitoring table has this metric yet.</p>"
    return (
        heading + "<img class='history' alt='"
        + html.escape(f"{metric} of each feature across the last batches")
        + f"' src='data:image/png;base64,{png_base64(figure)}'>"
    )  # fmt: skip
