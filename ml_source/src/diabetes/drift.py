"""Label-free drift: a profile of the data a model was trained on, the same profile of a scored
batch, and how far apart they are (PSI, missing-rate change, unknown-category share).

A profile holds counts, not data: per numeric feature (and the model's prediction) the number of
values in each of about ten quantile bins of the training data, and how many were missing; for
SEX, each level's count, missing and unknown. The reference is computed once at training
(`reference_profile`, pandas); a batch's profile uses the reference's bin edges, so the two are
comparable bin for bin. Any engine may count a batch: it only has to produce, per numeric column,
how many values lie at or below each edge (`NumericProfile.from_cumulative`), which is what the
Spark monitor computes in one pass and what `profile_like` computes here with pandas.

Bin i holds the values x with edges[i-1] < x <= edges[i] (the first bin has no lower edge, the
last no upper one), so a value equal to an edge always lands in the same bin in every engine.

PSI = sum over bins of (a - e) * ln(a / e), with a and e the batch's and the reference's shares
of the present values, each at least PSI_EPSILON so an empty bin does not make it infinite. When
either side has no present value PSI is NaN (never drift): the missing rate reports that change.
Common reading: < 0.1 stable, 0.1-0.25 a moderate shift, > 0.25 a large one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from diabetes import drift_metrics as dm
from diabetes.contract import CATEGORICAL_FEATURE, NUMERIC_FEATURES, PREDICTION, RANGES, SEX_VALUES
from diabetes.errors import UserError

PROFILE_FORMAT = 1
BINS = 10
PSI_EPSILON = 1e-4
# The features a profile covers: the numeric ones, then the prediction, then the categorical one.
PROFILED_NUMERIC: tuple[str, ...] = (*NUMERIC_FEATURES, PREDICTION)
PROFILED_CATEGORICAL: tuple[str, ...] = (CATEGORICAL_FEATURE,)

PSI, MISSING_RATE_CHANGE, UNKNOWN_SHARE = "psi", "missing_rate_change", "unknown_share"
JS_DISTANCE, TV_DISTANCE, L_INFINITY = dm.JS_DISTANCE, dm.TV_DISTANCE, dm.L_INFINITY
KS, WASSERSTEIN, CHI2, CHI2_PVALUE = dm.KS, dm.WASSERSTEIN, dm.CHI2, dm.CHI2_PVALUE
# Every metric compare reports. Each has a threshold; those in Thresholds.deciding decide drift.
METRICS: tuple[str, ...] = (
    PSI, JS_DISTANCE, TV_DISTANCE, L_INFINITY, KS, WASSERSTEIN, CHI2_PVALUE, MISSING_RATE_CHANGE,
    UNKNOWN_SHARE,
)  # fmt: skip
DEFAULT_PSI_THRESHOLD = 0.2
DEFAULT_MISSING_RATE_THRESHOLD = 0.1  # an absolute change: 2 % missing -> 12 % missing
DEFAULT_UNKNOWN_SHARE_THRESHOLD = 0.01  # the share of unknown SEX codes scoring tolerates
# evidently's defaults for its Jensen-Shannon and (normed) Wasserstein tests are 0.1
# (github.com/evidentlyai/evidently/releases/tag/v0.1.50.dev0); the other distances share the
# 0-1 scale, and a chi-squared p-value below 0.01 is drift.
DEFAULT_DISTANCE_THRESHOLD = 0.1
DEFAULT_CHI2_PVALUE_THRESHOLD = 0.01
DEFAULT_DECIDING: tuple[str, ...] = (PSI, MISSING_RATE_CHANGE, UNKNOWN_SHARE)


class ProfileError(UserError, ValueError):
    """A stored profile that cannot be read (wrong format, inconsistent counts)."""


@dataclass(frozen=True)
class NumericProfile:
    """Counts of one numeric column over the reference's bins."""

    edges: tuple[float, ...]  # interior cut points, strictly increasing
    counts: tuple[int, ...]  # present values per bin: len(edges) + 1 of them
    missing: int  # null or NaN

    def __post_init__(self) -> None:
        """Reject counts no engine could have produced, so a broken profile fails where it is
        made or read rather than as a strange PSI later."""
        if len(self.counts) != len(self.edges) + 1:
            raise ProfileError(f"{len(self.edges)} edges need {len(self.edges) + 1} bin counts")
        if not all(math.isfinite(e) for e in self.edges):
            raise ProfileError("bin edges must be finite numbers")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ProfileError("bin edges must be strictly increasing")
        if min((*self.counts, self.missing)) < 0:
            raise ProfileError("counts cannot be negative")

    @classmethod
    def from_cumulative(
        cls, edges: Sequence[float], at_or_below: Sequence[int], present: int, missing: int
    ) -> NumericProfile:
        """From how many present values lie at or below each edge (what an engine counts in
        one pass), the present total and the missing count."""
        cumulative = [int(c) for c in at_or_below] + [int(present)]
        counts = [cumulative[0]] + [b - a for a, b in zip(cumulative, cumulative[1:], strict=False)]
        return cls(tuple(float(e) for e in edges), tuple(counts), int(missing))

    @property
    def present(self) -> int:
        return sum(self.counts)

    @property
    def rows(self) -> int:
        return self.present + self.missing

    @property
    def shares(self) -> tuple[float, ...]:
        """Each bin's share of the present values (all 0 when none is present)."""
        present = self.present
        return tuple(c / present if present else 0.0 for c in self.counts)

    @property
    def missing_rate(self) -> float:
        return self.missing / self.rows if self.rows else 0.0


@dataclass(frozen=True)
class CategoryProfile:
    """Counts of one categorical column: each known level, missing, and codes not known."""

    counts: dict[str, int]  # every known level, in order
    missing: int
    unknown: int

    def __post_init__(self) -> None:
        """Negative counts mean a broken engine or file; fail before they turn into shares."""
        if min((*self.counts.values(), self.missing, self.unknown)) < 0:
            raise ProfileError("counts cannot be negative")

    @property
    def present(self) -> int:
        return sum(self.counts.values())

    @property
    def rows(self) -> int:
        return self.present + self.missing + self.unknown

    @property
    def shares(self) -> tuple[float, ...]:
        """Each known level's share of the known values."""
        present = self.present
        return tuple(c / present if present else 0.0 for c in self.counts.values())

    @property
    def missing_rate(self) -> float:
        return self.missing / self.rows if self.rows else 0.0

    @property
    def unknown_share(self) -> float:
        return self.unknown / self.rows if self.rows else 0.0


@dataclass(frozen=True)
class Profile:
    """The counts of every profiled column of one data set (the reference or a batch).

    Every column counts every row once (in a bin, as missing or as unknown), so each column's
    rows must equal `rows`; anything else is a broken engine or file, and would skew the
    missing rates silently."""

    rows: int
    numeric: dict[str, NumericProfile]
    categorical: dict[str, CategoryProfile] = field(default_factory=dict)

    def __post_init__(self) -> None:
        columns = {**self.numeric, **self.categorical}
        wrong = {name: p.rows for name, p in columns.items() if p.rows != self.rows}
        if wrong:
            name, rows = next(iter(wrong.items()))
            raise ProfileError(f"inconsistent counts: '{name}' counts {rows} of {self.rows} rows")

    def bins(self) -> tuple[dict[str, tuple[float, ...]], dict[str, tuple[str, ...]]]:
        """Each numeric column's edges and each categorical column's levels, in order: what a
        batch must have been counted over to be compared with this profile."""
        return (
            {name: p.edges for name, p in self.numeric.items()},
            {name: tuple(p.counts) for name, p in self.categorical.items()},
        )

    def to_dict(self) -> dict:
        return {
            "format": PROFILE_FORMAT,
            "rows": self.rows,
            "numeric": {
                name: {"edges": list(p.edges), "counts": list(p.counts), "missing": p.missing}
                for name, p in self.numeric.items()
            },
            "categorical": {
                name: {"counts": dict(p.counts), "missing": p.missing, "unknown": p.unknown}
                for name, p in self.categorical.items()
            },
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: Mapping) -> Profile:
        try:
            if data.get("format") != PROFILE_FORMAT:
                raise ProfileError(
                    f"profile format {data.get('format')!r}, this version reads {PROFILE_FORMAT}"
                )
            numeric = {
                name: NumericProfile(
                    tuple(float(e) for e in p["edges"]),
                    tuple(_count(c) for c in p["counts"]),
                    _count(p["missing"]),
                )
                for name, p in data["numeric"].items()
            }
            categorical = {
                name: CategoryProfile(
                    {str(k): _count(v) for k, v in p["counts"].items()},
                    _count(p["missing"]),
                    _count(p["unknown"]),
                )
                for name, p in data.get("categorical", {}).items()
            }
            return cls(_count(data["rows"]), numeric, categorical)
        except ProfileError:
            raise
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"not a drift profile: {type(exc).__name__}: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> Profile:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProfileError(f"not a drift profile: invalid JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise ProfileError("not a drift profile: expected a JSON object")
        return cls.from_dict(data)


def _count(value: object) -> int:
    """A count read from a file: a whole number (int() alone would truncate 2.5 to 2 and take
    True for 1, hiding a broken file)."""
    if isinstance(value, bool) or not float(value).is_integer():  # type: ignore[arg-type]
        raise ProfileError(f"not a drift profile: count {value!r} is not a whole number")
    return int(value)  # type: ignore[call-overload]


# --- computing profiles with pandas ----------------------------------------------------------


def quantile_edges(values: pd.Series, bins: int = BINS) -> tuple[float, ...]:
    """Interior cut points at the 1/bins ... (bins-1)/bins quantiles of the present values;
    repeated cut points (a column with few distinct values) collapse into one."""
    present = _numbers(values)
    present = present[~np.isnan(present)]
    if present.size == 0:
        return ()
    cuts = np.quantile(present, np.arange(1, bins) / bins)
    return tuple(float(c) for c in np.unique(cuts))


def reference_profile(
    frame: pd.DataFrame, predictions: Sequence[float], bins: int = BINS
) -> Profile:
    """The profile of the training data (validated: SEX is a known level or missing) and of the
    model's predictions on it, with bin edges at its own quantiles."""
    data = _with_prediction(frame, predictions)
    edges = {name: quantile_edges(data[name], bins) for name in PROFILED_NUMERIC}
    return _profile(data, edges, {name: SEX_VALUES for name in PROFILED_CATEGORICAL})


def profile_like(reference: Profile, frame: pd.DataFrame, predictions: Sequence[float]) -> Profile:
    """The profile of a scored batch over the reference's bins and levels, computed with pandas."""
    data = _with_prediction(frame, predictions)
    edges = {name: p.edges for name, p in reference.numeric.items()}
    levels = {name: tuple(p.counts) for name, p in reference.categorical.items()}
    return _profile(data, edges, levels)


def _with_prediction(frame: pd.DataFrame, predictions: Sequence[float]) -> pd.DataFrame:
    data = frame.copy()
    data[PREDICTION] = np.asarray(predictions, dtype="float64")
    return data


def _profile(
    data: pd.DataFrame,
    edges: Mapping[str, tuple[float, ...]],
    levels: Mapping[str, Sequence[str]],
) -> Profile:
    numeric = {}
    for name, cuts in edges.items():
        values = _numbers(data[name])
        present = values[~np.isnan(values)]
        at_or_below = [int(np.count_nonzero(present <= cut)) for cut in cuts]
        numeric[name] = NumericProfile.from_cumulative(
            cuts, at_or_below, present.size, values.size - present.size
        )
    categorical = {name: category_profile(data[name], known) for name, known in levels.items()}
    return Profile(len(data), numeric, categorical)


def category_profile(values: pd.Series, levels: Sequence[str] = SEX_VALUES) -> CategoryProfile:
    """Counts of each level (exact text, as scoring reads it), missing and anything else."""
    missing = values.isna()
    known = {level: int((values[~missing] == level).sum()) for level in levels}
    unknown = int((~missing).sum()) - sum(known.values())
    return CategoryProfile(known, int(missing.sum()), unknown)


def _numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="raise").to_numpy(dtype="float64", na_value=np.nan)


# --- comparing -------------------------------------------------------------------------------


def psi(expected: Sequence[float], actual: Sequence[float], epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of two share vectors over the same bins (each share at least
    `epsilon`)."""
    if len(expected) != len(actual):
        raise ValueError(f"PSI needs the same bins: {len(expected)} vs {len(actual)} shares")
    e = np.maximum(np.asarray(expected, dtype="float64"), epsilon)
    a = np.maximum(np.asarray(actual, dtype="float64"), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class Thresholds:
    """Above these a metric is over its threshold (the chi-squared p-value: below it); only the
    metrics named in `deciding` make a batch drifted (PSI, missing rate, unknown share by
    default). The missing rate's is an absolute change."""

    psi: float = DEFAULT_PSI_THRESHOLD
    missing_rate: float = DEFAULT_MISSING_RATE_THRESHOLD
    unknown_share: float = DEFAULT_UNKNOWN_SHARE_THRESHOLD
    js_distance: float = DEFAULT_DISTANCE_THRESHOLD
    tv_distance: float = DEFAULT_DISTANCE_THRESHOLD
    l_infinity: float = DEFAULT_DISTANCE_THRESHOLD
    ks: float = DEFAULT_DISTANCE_THRESHOLD
    wasserstein: float = DEFAULT_DISTANCE_THRESHOLD
    chi2_pvalue: float = DEFAULT_CHI2_PVALUE_THRESHOLD
    deciding: tuple[str, ...] = DEFAULT_DECIDING

    def __post_init__(self) -> None:
        unknown = [m for m in self.deciding if m not in METRICS]
        if unknown or not self.deciding:
            raise ValueError(
                f"unknown drift metric(s) {', '.join(map(repr, unknown))}; known:"
                f" {', '.join(METRICS)}"
                if unknown
                else "at least one drift metric must decide"
            )

    def of(self, metric: str) -> float:
        return self.missing_rate if metric == MISSING_RATE_CHANGE else getattr(self, metric)


@dataclass(frozen=True)
class DriftMetric:
    """One row of the monitoring table's drift part: a metric of one feature in one batch."""

    feature: str
    metric: str
    value: float  # NaN when it cannot be computed (no value present in the batch or reference)
    threshold: float
    drifted: bool  # over its threshold
    decides: bool = True  # one of the metrics that make a batch drifted (Thresholds.deciding)
    # The most the value can differ from the same metric on the raw values (0: exact; the
    # binned KS and Wasserstein approximate it, see diabetes.drift_metrics). Not in the table.
    error: float = 0.0

    @property
    def decides_drift(self) -> bool:
        """Over its threshold, and one of the metrics that decide: it makes the batch drifted."""
        return self.drifted and self.decides


def compare(
    reference: Profile, batch: Profile, thresholds: Thresholds = Thresholds()
) -> list[DriftMetric]:
    """Every metric of every profiled feature, in a fixed order. The batch must have rows and
    the reference's bins (profile_like, or an engine's count over reference edges)."""
    if batch.rows == 0:
        raise ValueError("an empty batch has no drift to measure")
    found: list[DriftMetric] = []
    for name, ref in reference.numeric.items():
        got = _counted(batch.numeric, name)
        if got.edges != ref.edges:
            raise ValueError(f"'{name}': the batch was not counted over the reference's bins")
        found.append(_metric(name, PSI, _psi_of(ref, got), thresholds))
        found += _distances(name, ref.counts, got.counts, thresholds)
        limits = RANGES.get(name)
        bounds = None if limits is None else (limits.low, limits.high)
        ks = dm.ks_statistic(ref.counts, got.counts)
        found.append(
            _metric(name, KS, ks, thresholds, error=dm.ks_upper_bound(ref.counts, got.counts) - ks)
        )
        found.append(
            _metric(name, WASSERSTEIN, dm.wasserstein(ref.edges, ref.counts, got.counts),
                    thresholds,
                    error=dm.wasserstein_error_bound(ref.edges, ref.counts, got.counts, bounds))
        )  # fmt: skip
        found.append(_missing_metric(name, ref, got, thresholds))
    for name, ref in reference.categorical.items():
        got = _counted(batch.categorical, name)
        if list(got.counts) != list(ref.counts):  # shares are compared level by level, in order
            raise ValueError(f"'{name}': the batch was not counted over the reference's levels")
        found.append(_metric(name, PSI, _psi_of(ref, got), thresholds))
        # The levels and one bin for every other code.
        expected, actual = (*ref.counts.values(), ref.unknown), (*got.counts.values(), got.unknown)
        found += _distances(name, expected, actual, thresholds)
        statistic, p_value = dm.chi_squared(expected, actual)
        found.append(DriftMetric(name, CHI2, statistic, math.nan, False, False))
        found.append(_metric(name, CHI2_PVALUE, p_value, thresholds))
        found.append(_missing_metric(name, ref, got, thresholds))
        found.append(_metric(name, UNKNOWN_SHARE, got.unknown_share, thresholds))
    return found


def _distances(name: str, expected, actual, thresholds: Thresholds) -> list[DriftMetric]:
    """Jensen-Shannon, total-variation and L-infinity distance of the binned shares."""
    return [
        _metric(name, JS_DISTANCE, dm.js_distance(expected, actual), thresholds),
        _metric(name, TV_DISTANCE, dm.tv_distance(expected, actual), thresholds),
        _metric(name, L_INFINITY, dm.l_infinity(expected, actual), thresholds),
    ]


def _metric(
    name: str, metric: str, value: float, thresholds: Thresholds, error: float = 0.0
) -> DriftMetric:
    """A metric against its threshold (NaN: never over it), deciding when Thresholds says so."""
    limit = thresholds.of(metric)
    decides = metric in thresholds.deciding
    over = is_over(metric, value, limit)
    return DriftMetric(name, metric, float(value), limit, over, decides, float(error))


def is_over(metric: str, value: float, threshold: float) -> bool:
    """Whether `value` of `metric` is past `threshold`: a p-value below it, a missing-rate
    change beyond it either way, any other metric above it; NaN never."""
    if math.isnan(value) or math.isnan(threshold):
        return False
    if metric == CHI2_PVALUE:
        return value < threshold
    if metric == MISSING_RATE_CHANGE:
        return abs(value) > threshold
    return value > threshold


def _psi_of(ref: NumericProfile | CategoryProfile, got: NumericProfile | CategoryProfile) -> float:
    """PSI of the present values; NaN (never drift) when either side has none, since all-zero
    shares floored at PSI_EPSILON would read as a huge shift. The missing rate says what
    happened then."""
    if ref.present == 0 or got.present == 0:
        return math.nan
    return psi(ref.shares, got.shares)


def _missing_metric(name: str, ref, got, thresholds: Thresholds) -> DriftMetric:
    """The batch's missing rate minus the reference's."""
    change = got.missing_rate - ref.missing_rate
    return _metric(name, MISSING_RATE_CHANGE, change, thresholds)


def _counted(columns: Mapping, name: str):
    """The batch's counts of a reference column; a clear error (not a KeyError) when an engine
    left a column out."""
    if name not in columns:
        raise ValueError(f"'{name}': the batch profile does not count this column")
    return columns[name]


def drifted(metrics: Sequence[DriftMetric]) -> bool:
    """A batch drifted when a deciding metric of any feature is over its threshold."""
    return any(m.decides_drift for m in metrics)


def should_retrain(recent: Sequence[bool], needed: int, window: int) -> bool:
    """Retrain when at least `needed` of the last `window` batches (oldest first, the current
    one last) drifted: one noisy batch does not retrain."""
    if not 1 <= needed <= window:
        raise ValueError(f"need 1 <= needed <= window, got {needed} of {window}")
    return sum(bool(d) for d in list(recent)[-window:]) >= needed
