"""What a drift check found, for people: a figure of reference vs batch per feature, and one
self-contained HTML page (summary table, one histogram per feature) to attach to a run or mail.

Both read only profiles (counts) and the metrics `diabetes.drift.compare` returned, never data,
so they draw the same picture whichever engine counted the batch. The page holds everything
inline (CSS, PNGs as base64): it opens from an artifact store or a mail with no network, and no
text from the caller or the data can inject markup (everything is escaped).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import matplotlib

matplotlib.use("Agg")  # no display on clusters or in CI

from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from diabetes.drift import (  # noqa: E402
    PSI,
    CategoryProfile,
    DriftMetric,
    NumericProfile,
    Profile,
)

REFERENCE_COLOR = "#9aa5b1"
BATCH_COLOR = "#1f6fb2"
DRIFT_COLOR = "#c0392b"
GRID_COLUMNS = 4
FONT_SIZE = 8  # ticks, axis label, legend: ~10 px at the report's dpi
PANEL_INCHES = (4.2, 3.0)  # one panel of the grid figure
FEATURE_INCHES = (
    5.9,
    2.6,
)  # two side by side in a 1200 px window  # the figure of one feature in the HTML page
# Fixed margins (room for the rotated bin labels): a layout engine would measure every text
# first, which doubles the drawing time of the page's eleven figures.
FEATURE_MARGINS = {"left": 0.1, "right": 0.98, "top": 0.88, "bottom": 0.27}
REPORT_DPI = 90  # sharp enough on screen, small enough to keep the page light and fast
PNG_COMPRESSION = 1  # zlib level: the default (6) takes longer than drawing, for 10 % fewer bytes
_NO_DETAILS: Mapping[str, str] = MappingProxyType({})

Column = NumericProfile | CategoryProfile


# --- labels ------------------------------------------------------------------------------------


def short_numbers(values: Sequence[float], digits: int = 3) -> list[str]:
    """Each value with about `digits` significant digits, more only where two would read alike:
    a bin label has to be short to fit under a bar, yet adjacent edges must stay distinct."""
    for significant in range(digits, 16):
        texts = [_short(v, significant) for v in values]
        if len(set(texts)) == len(texts):
            return texts
    return [repr(float(v)) for v in values]  # pragma: no cover - distinct floats differ by 16


def _short(value: float, significant: int) -> str:
    """Fixed-point (never 1.2e+03: edges are read as values of the feature), zeros trimmed."""
    magnitude = math.floor(math.log10(abs(value))) if value else 0
    decimals = max(0, significant - 1 - magnitude)
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def bin_labels(edges: Sequence[float]) -> list[str]:
    """The range of each bin, with the profile's rule that an edge belongs to the lower bin:
    "≤ a", "a–b" (meaning a < x ≤ b), ..., "> z"."""
    if not edges:
        return ["all"]
    texts = short_numbers(edges)
    middle = [f"{a}–{b}" for a, b in zip(texts, texts[1:], strict=False)]
    return [f"≤ {texts[0]}", *middle, f"> {texts[-1]}"]


def _percent(share: float) -> str:
    return f"{share:.1%}"


def _number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


# --- what belongs to one feature -----------------------------------------------------------------


def profiled_features(profile: Profile) -> list[str]:
    """The features in the order a profile (and compare) lists them: numeric, then categorical."""
    return [*profile.numeric, *profile.categorical]


def _column(profile: Profile, name: str) -> Column:
    if name in profile.numeric:
        return profile.numeric[name]
    if name in profile.categorical:
        return profile.categorical[name]
    raise ValueError(f"'{name}': the profile does not count this column")


def _metrics_of(metrics: Sequence[DriftMetric], name: str) -> list[DriftMetric]:
    return [m for m in metrics if m.feature == name]


def _is_drifted(metrics: Sequence[DriftMetric], name: str) -> bool:
    """A deciding metric of the feature is over its threshold."""
    return any(m.decides_drift for m in _metrics_of(metrics, name))


def _psi_text(metrics: Sequence[DriftMetric], name: str) -> str:
    values = [m.value for m in _metrics_of(metrics, name) if m.metric == PSI]
    return f"PSI {_number(values[0])}" if values else "PSI n/a"


def rates_text(reference: Column, batch: Column) -> str:
    """Missing rate (and, for a category, unknown share) reference → batch: what PSI, which
    compares only present values, cannot show."""
    text = f"missing {_percent(reference.missing_rate)} → {_percent(batch.missing_rate)}"
    if isinstance(reference, CategoryProfile) and isinstance(batch, CategoryProfile):
        unknown = f"{_percent(reference.unknown_share)} → {_percent(batch.unknown_share)}"
        text += f" · unknown {unknown}"
    return text


def _bar_labels(column: Column) -> list[str]:
    if isinstance(column, NumericProfile):
        return bin_labels(column.edges)
    return list(column.counts)


# --- figures -------------------------------------------------------------------------------------


def draw_panel(
    ax: Axes,
    name: str,
    reference: Profile,
    batch: Profile,
    metrics: Sequence[DriftMetric],
    titled: bool = True,
) -> None:
    """Reference vs batch share per bin (or level) as side-by-side bars; title in red and a red
    frame when any metric of the feature drifted, so a drifted panel stands out in a grid.
    Untitled where the page around it says the same in text."""
    ref, got = _column(reference, name), _column(batch, name)
    positions = range(len(ref.shares))
    ax.bar([p - 0.2 for p in positions], ref.shares, 0.4, color=REFERENCE_COLOR, label="reference")
    ax.bar([p + 0.2 for p in positions], got.shares, 0.4, color=BATCH_COLOR, label="batch")
    labels = _bar_labels(ref)
    ax.set_xticks(list(positions), labels, fontsize=FONT_SIZE)
    if isinstance(ref, NumericProfile) and len(labels) > 2:
        ax.tick_params(axis="x", labelrotation=45)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
    ax.yaxis.set_major_formatter(lambda share, _: f"{share:.0%}")
    ax.tick_params(axis="y", labelsize=FONT_SIZE)
    ax.set_ylabel("share of present", fontsize=FONT_SIZE)
    drifted = _is_drifted(metrics, name)
    if titled:
        heading = f"{name}{' (drifted)' if drifted else ''} · {_psi_text(metrics, name)}"
        color, weight = (DRIFT_COLOR, "bold") if drifted else ("black", "normal")
        title = f"{heading}\n{rates_text(ref, got)}"
        ax.set_title(title, fontsize=FONT_SIZE + 1, color=color, fontweight=weight, loc="left")
    if drifted:
        for spine in ax.spines.values():
            spine.set_edgecolor(DRIFT_COLOR)
            spine.set_linewidth(1.5)


def drift_figure(reference: Profile, batch: Profile, metrics: Sequence[DriftMetric]) -> Figure:
    """One panel per profiled feature, in a grid, with one legend for all."""
    names = profiled_features(reference)
    rows = math.ceil(len(names) / GRID_COLUMNS)
    size = (PANEL_INCHES[0] * GRID_COLUMNS, PANEL_INCHES[1] * rows + 0.4)
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(rows, GRID_COLUMNS, squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=False):
        draw_panel(ax, name, reference, batch, metrics)
    for ax in axes[len(names) :]:
        ax.set_axis_off()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper right", ncols=2, fontsize=FONT_SIZE + 1)
    return fig


def feature_figure(
    name: str, reference: Profile, batch: Profile, metrics: Sequence[DriftMetric]
) -> Figure:
    """The panel of one feature on its own, with a legend: the HTML page's histogram."""
    fig = Figure(figsize=FEATURE_INCHES)
    fig.subplots_adjust(**FEATURE_MARGINS)
    ax = fig.subplots()
    draw_panel(ax, name, reference, batch, metrics, titled=False)
    # Above the bars, not over them: a drifted bin is often the tallest, top right.
    ax.legend(fontsize=FONT_SIZE, loc="lower right", bbox_to_anchor=(1, 1), ncols=2, frameon=False)
    return fig


def png_base64(fig: Figure, dpi: int = REPORT_DPI) -> str:
    """The figure as a base64 PNG, to inline in HTML. A bare Figure (never pyplot's) is freed
    once unreferenced, so there is nothing to close."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, pil_kwargs={"compress_level": PNG_COMPRESSION})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# --- the HTML page -------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px;
       color: #222; max-width: 1200px; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 17px; margin-top: 28px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 10px; text-align: left; }
th { background: #f2f4f7; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.drifted td { background: #fdecea; color: #8e1b10; font-weight: 600; }
tr.over td { background: #fff6e0; }
img.history { max-width: 100%; height: auto; border: 1px solid #ddd; }
.verdict { font-size: 15px; font-weight: 600; padding: 6px 10px; display: inline-block; }
.verdict.drifted { background: #fdecea; color: #8e1b10; }
.verdict.stable { background: #e8f5e9; color: #1b5e20; }
.features { display: grid; grid-template-columns: repeat(auto-fill, minmax(500px, 1fr));
            gap: 16px; }
.feature img { max-width: 100%; height: auto; display: block; }
.feature { border: 1px solid #ddd; padding: 8px; border-radius: 4px; }
.feature.drifted { border: 2px solid #c0392b; }
.feature h3 { font-size: 15px; margin: 0 0 2px 0; }
.feature.drifted h3 { color: #c0392b; }
.feature p { font-size: 12px; margin: 0 0 4px 0; color: #555; }
.note { font-size: 12px; color: #555; }
"""


def drift_report_html(
    reference: Profile,
    batch: Profile,
    metrics: Sequence[DriftMetric],
    title: str,
    details: Mapping[str, str] = _NO_DETAILS,
    extra_html: str = "",
) -> str:
    """One self-contained HTML page: title, the caller's details (model, batch, ...), a verdict,
    `extra_html` (markup the caller built and escaped: the drift over time), every metric in a
    table (drifted rows highlighted), then a histogram per feature."""
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        _verdict_html(reference, batch, metrics),
        _details_html(details),
        extra_html,
        "<h2>Metrics</h2>",
        _metrics_table_html(metrics),
        "<h2>Features</h2>",
        f"<p class='note'>{html.escape(_READING)}</p>",
        "<div class='features'>",
        *(_feature_html(name, reference, batch, metrics) for name in profiled_features(reference)),
        "</div>",
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )


_READING = (
    "Bars: each bin's share of the present values; the bins are the reference's deciles, and a"
    " value equal to an edge is in the lower bin. PSI below 0.1 reads as stable, 0.1 to 0.25 as a"
    " moderate shift, above 0.25 as a large one."
)


def _verdict_html(reference: Profile, batch: Profile, metrics: Sequence[DriftMetric]) -> str:
    """The answer first: which features drifted, and how many rows each side counted."""
    names = [n for n in profiled_features(reference) if _is_drifted(metrics, n)]
    if names:
        text, kind = f"Drift detected in {', '.join(names)}", "drifted"
    else:
        text, kind = "No drift: every metric is within its threshold", "stable"
    rows = f"Batch of {batch.rows} rows compared with a reference of {reference.rows} rows."
    return (
        f"<p class='verdict {kind}'>{html.escape(text)}</p>"
        f"<p class='note'>{html.escape(rows)}</p>"
    )


def _details_html(details: Mapping[str, str]) -> str:
    if not details:
        return ""
    rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(value))}</td></tr>"
        for key, value in details.items()
    )
    return f"<table class='details'>{rows}</table>"


def _metrics_table_html(metrics: Sequence[DriftMetric]) -> str:
    names = ("feature", "metric", "value", "± at most", "threshold", "over it", "decides drift")
    head = "".join(f"<th>{name}</th>" for name in names)
    rows = "".join(_metric_row_html(m) for m in metrics)
    return f"<table class='metrics'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _metric_row_html(metric: DriftMetric) -> str:
    css = " class='drifted'" if metric.decides_drift else " class='over'" if metric.drifted else ""
    error = "exact" if metric.error == 0 else _number(metric.error)
    cells = (
        f"<td>{html.escape(metric.feature)}</td><td>{html.escape(metric.metric)}</td>"
        f"<td class='number'>{_number(metric.value)}</td>"
        f"<td class='number'>{error}</td>"
        f"<td class='number'>{_number(metric.threshold)}</td>"
        f"<td>{'yes' if metric.drifted else 'no'}</td>"
        f"<td>{'yes' if metric.decides else 'no'}</td>"
    )
    return f"<tr{css}>{cells}</tr>"


def _feature_html(
    name: str, reference: Profile, batch: Profile, metrics: Sequence[DriftMetric]
) -> str:
    drifted = _is_drifted(metrics, name)
    found = ", ".join(m.metric for m in _metrics_of(metrics, name) if m.decides_drift)
    heading = f"{name}: drifted ({found})" if drifted else name
    rates = (
        f"{_psi_text(metrics, name)} · {rates_text(_column(reference, name), _column(batch, name))}"
    )
    image = png_base64(feature_figure(name, reference, batch, metrics))
    alt = f"{name}: reference vs batch share per bin"
    return (
        f"<div class='feature{' drifted' if drifted else ''}'>"
        f"<h3>{html.escape(heading)}</h3><p>{html.escape(rates)}</p>"
        f"<img src='data:image/png;base64,{image}' alt='{html.escape(alt)}'></div>"
    )
