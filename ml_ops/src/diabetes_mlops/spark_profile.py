"""The drift monitor's one Spark pass: a scored batch counted over a reference profile's bins.

One aggregation (one scan, one job) gives everything the monitor needs: per numeric column and
the prediction, how many values lie at or below each reference edge plus the present count
(diabetes.drift.NumericProfile.from_cumulative turns those into bin counts, the same way the
pandas computation does); SEX level, missing and unknown counts; the rows; a fingerprint of the
batch's content; and, when the batch carries labels, the sums behind rmse and mae.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from diabetes.contract import FEATURES, PREDICTION
from diabetes.drift import CategoryProfile, NumericProfile, Profile

TARGET = "Y"
# The fingerprint's hash, cut into three slices summed apart: 10^8 rows x 2^22 stays far below
# a long's range, so the sums never overflow (ANSI mode would fail the job on an overflow).
_SLICES = ((42, 22), (21, 21), (0, 21))


@dataclass(frozen=True)
class BatchStats:
    profile: Profile
    rows: int
    fingerprint: str
    labels: dict[str, float] = field(default_factory=dict)


def batch_stats(frame: DataFrame, reference: Profile, target: str = TARGET) -> BatchStats:
    """Count `frame` (a scored batch) over `reference`'s bins, in one aggregation."""
    aggs: list[Column] = [F.count(F.lit(1)).alias("rows")]
    for name, ref in reference.numeric.items():
        x = _number(frame, name)
        aggs += [
            _count(x <= F.lit(edge)).alias(f"{name}#le{i}") for i, edge in enumerate(ref.edges)
        ]
        aggs.append(F.count(x).alias(f"{name}#present"))
    for name, ref in reference.categorical.items():
        value = F.col(name).cast("string")
        aggs += [_count(value == F.lit(level)).alias(f"{name}#{level}") for level in ref.counts]
        aggs.append(F.count(value).alias(f"{name}#given"))
    hashed = _row_hash(frame, target)
    for i, (shift, bits) in enumerate(_SLICES):
        part = F.shiftrightunsigned(hashed, shift).bitwiseAND(F.lit((1 << bits) - 1))
        aggs.append(F.sum(part).alias(f"fp{i}"))
    aggs.append(F.bit_xor(hashed).alias("fp_xor"))
    labelled = target in frame.columns
    if labelled:
        error = F.col(PREDICTION).cast("double") - _number(frame, target)
        aggs += [
            F.count(error).alias("labelled"),
            F.sum(error * error).alias("squared"),
            F.sum(F.abs(error)).alias("absolute"),
        ]
    row = frame.agg(*aggs).first().asDict()
    rows = int(row["rows"])
    numeric = {
        name: NumericProfile.from_cumulative(
            ref.edges,
            [row[f"{name}#le{i}"] for i in range(len(ref.edges))],
            row[f"{name}#present"],
            rows - row[f"{name}#present"],
        )
        for name, ref in reference.numeric.items()
    }
    categorical = {}
    for name, ref in reference.categorical.items():
        known = {level: int(row[f"{name}#{level}"]) for level in ref.counts}
        given = int(row[f"{name}#given"])
        categorical[name] = CategoryProfile(known, rows - given, given - sum(known.values()))
    return BatchStats(
        Profile(rows, numeric, categorical),
        rows,
        _fingerprint(row),
        _labels(row) if labelled else {},
    )


def _number(frame: DataFrame, name: str) -> Column:
    """The column as a double with NaN as null. Scored features are doubles already; a label
    passes through scoring as text, and text that is no number counts as missing (try_cast:
    under ANSI mode a plain cast would fail the job)."""
    value = F.col(name).try_cast("double")
    return F.nanvl(value, F.lit(None).cast("double"))


def _count(condition: Column) -> Column:
    return F.count(F.when(condition, F.lit(1)))


def _row_hash(frame: DataFrame, target: str) -> Column:
    """A 64-bit hash of a row's features (and label), as the model reads them."""
    columns = [c for c in (*FEATURES, target) if c in frame.columns]
    values = [
        F.coalesce(F.col(c).cast("string"), F.lit("\u0000")) if c == "SEX" else _number(frame, c)
        for c in columns
    ]
    return F.xxhash64(*values)


def _fingerprint(row: dict) -> str:
    """Independent of row order and partitioning; any changed value changes it."""
    parts = [row["rows"], *(row[f"fp{i}"] or 0 for i in range(len(_SLICES))), row["fp_xor"] or 0]
    return hashlib.sha256(":".join(str(int(p)) for p in parts).encode()).hexdigest()[:16]


def _labels(row: dict) -> dict[str, float]:
    labelled = int(row["labelled"])
    if not labelled:
        return {}
    return {
        "rmse": math.sqrt(row["squared"] / labelled),
        "mae": row["absolute"] / labelled,
        "labelled_rows": float(labelled),
    }
