"""A scored batch, counted on Spark in one pass: its drift profile over the reference's bins, its
row count, a content fingerprint and, when it carries labels, its error.

The monitor reads the batch's scored output (Parquet or Delta from the Spark engine, or CSV from
the pandas engine, where every column may come back as text) and needs, per profiled numeric
column, how many values lie at or below each reference edge (diabetes.drift.NumericProfile
.from_cumulative), how many are present and missing, the SEX level counts, and an id of the
batch. All of it is one aggregation, so the output is scanned once.

It is one `count(CASE WHEN x <= edge THEN 1 END)` per edge, ~110 aggregates, sent as SQL text in
one `selectExpr` (built as Column objects, each function and literal is a JVM round trip). Counts
are exact for any number of rows, and nothing can overflow a long under ANSI mode: the fingerprint
sums 21- and 22-bit slices of each row's hash (up to 2^41 rows). `spark.sql.codegen.maxFields` is
raised for the query only, so that ~110 buffer fields keep whole-stage code generation (it changes
no result; a session that refuses the setting runs slower). The other formulations measured, and
why this one was kept: ml_ops/benchmarks/README.md, "Formulations tried for the monitor's Spark
profile".
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

from pyspark.sql import DataFrame

from diabetes.contract import CATEGORICAL_FEATURE, NUMERIC_FEATURES, PREDICTION, TARGET
from diabetes.drift import CategoryProfile, NumericProfile, Profile
from diabetes_mlops.spark.conf import wide_codegen
from diabetes_mlops.spark.sql_text import double_literal, double_sql, quote_identifier, text_literal

log = logging.getLogger(__name__)

FINGERPRINT_FORMAT = "diabetes-batch-v1"
STATS_FORMAT = 1  # of BatchStats.to_dict
# The output manifest's field with the counts batch_score made of the output as it wrote it.
MANIFEST_FIELD = "batch_stats"
RMSE, MAE, LABELLED_ROWS = "rmse", "mae", "labelled_rows"
_MASK_21, _MASK_22 = (1 << 21) - 1, (1 << 22) - 1


@dataclass(frozen=True)
class BatchStats:
    """What the monitor needs of one scored batch, from one pass over it."""

    # Over the reference's bins and levels: equal to drift.profile_like on the same rows. None
    # when no reference was given (a model version logged before profiles): nothing to bin by.
    profile: Profile | None
    rows: int
    # The batch's content (features, SEX, Y when present), whatever the row order or the
    # partitioning: the same rows give the same id, one changed value another. Prediction,
    # model_version and scored_at are left out, so a re-score by another version is the same batch.
    fingerprint: str
    # {"rmse", "mae", "labelled_rows"} over the rows with a target and a prediction; {} when the
    # batch has no target column or no row has a target value.
    labels: dict[str, float]
    # True when batch_score counted these while it checked the input (the output not read again)
    counted_while_scoring: bool = False

    def to_dict(self) -> dict:
        """JSON-ready, for the output's manifest (read back by from_dict)."""
        return {
            "format": STATS_FORMAT,
            "profile": None if self.profile is None else self.profile.to_dict(),
            "rows": self.rows,
            "fingerprint": self.fingerprint,
            "labels": dict(self.labels),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> BatchStats:
        """The stats to_dict wrote; ValueError for anything else (another format, a field
        missing or of the wrong kind)."""
        if not isinstance(data, Mapping) or data.get("format") != STATS_FORMAT:
            raise ValueError(f"not batch stats of format {STATS_FORMAT}")
        try:
            profile = None if data["profile"] is None else Profile.from_dict(data["profile"])
            labels = {str(k): float(v) for k, v in dict(data["labels"]).items()}
            return cls(profile, int(data["rows"]), str(data["fingerprint"]), labels)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"batch stats: {exc}") from None


def batch_stats(frame: DataFrame, reference: Profile | None, target: str = TARGET) -> BatchStats:
    """ONE aggregation (one scan of `frame`) computing everything: per profiled numeric column
    (the reference's, prediction included) the count at or below each reference edge, present and
    missing counts; per categorical column (SEX) the count of each of the reference's levels,
    missing and unknown; rows; fingerprint; label sums. With no reference, all but the profile.

    Numbers are read as as_double reads them (text parsed, so a CSV output counts like its
    Parquet twin; a value that does not parse counts as missing, as do null and NaN); categories
    are compared as text, exactly, as drift.category_profile does.
    """
    query = StatsQuery(frame, reference, target)
    with wide_codegen(frame.sparkSession, len(query.expressions)):
        row = frame.selectExpr(*query.expressions).collect()[0]
    return query.decode(row.asDict())


def aggregation(frame: DataFrame, reference: Profile | None, target: str = TARGET) -> DataFrame:
    """The one-row aggregation batch_stats runs (to inspect its plan; run it within
    conf.wide_codegen, as batch_stats does)."""
    return frame.selectExpr(*StatsQuery(frame, reference, target).expressions)


class StatsQuery:
    """The aggregate expressions of one pass, and how to read its one row back.

    `columns` gives a column's values as SQL over `frame` where they are not the column itself:
    the batch step counts its output while it checks the input, from the SQL that writes the
    output (features typed, prediction computed), so the counts describe what it then writes.
    `prefix` starts every alias, to ride along with another query's aggregates."""

    def __init__(
        self,
        frame: DataFrame,
        reference: Profile | None,
        target: str = TARGET,
        columns: Mapping[str, str] | None = None,
        prefix: str = "",
    ) -> None:
        self.profiled = reference is not None
        self.prefix = prefix
        reference = reference or Profile(0, {}, {})
        columns = dict(columns or {})
        absent = [
            c
            for c in (*reference.numeric, *reference.categorical)
            if c not in frame.columns and c not in columns
        ]
        if absent:
            raise ValueError(
                f"the scored batch has no column {', '.join(repr(c) for c in absent)}"
                f" (columns: {', '.join(frame.columns)})"
            )
        self.edges = {name: p.edges for name, p in reference.numeric.items()}
        self.levels = {name: tuple(p.counts) for name, p in reference.categorical.items()}
        self.target = target if target in frame.columns else None
        types = {f.name: f.dataType for f in frame.schema.fields}
        number = {name: double_sql(name, types[name]) for name in types}
        number |= {name: f"CAST(({sql}) AS DOUBLE)" for name, sql in columns.items()}
        text = {name: f"CAST({quote_identifier(name)} AS STRING)" for name in types}
        text |= {name: f"CAST(({sql}) AS STRING)" for name, sql in columns.items()}
        found = [f"count(1) AS {prefix}rows"]
        for index, (name, edges) in enumerate(self.edges.items()):
            x = number[name]
            found += [
                f"count(CASE WHEN {x} <= {double_literal(e)} THEN 1 END) AS {prefix}n{index}_{i}"
                for i, e in enumerate(edges)
            ]
            found.append(f"count(nanvl({x}, CAST(NULL AS DOUBLE))) AS {prefix}n{index}_present")
        for index, (name, levels) in enumerate(self.levels.items()):
            found += [
                f"count(CASE WHEN {text[name]} = {text_literal(v)} THEN 1 END)"
                f" AS {prefix}c{index}_{j}"
                for j, v in enumerate(levels)
            ]
            found.append(f"count({text[name]}) AS {prefix}c{index}_given")
        h = _row_hash(number, text[CATEGORICAL_FEATURE], self.target)
        found += [
            f"sum(shiftrightunsigned({h}, 43)) AS {prefix}h_high",
            f"sum(shiftrightunsigned({h}, 22) & {_MASK_21}L) AS {prefix}h_middle",
            f"sum({h} & {_MASK_22}L) AS {prefix}h_low",
            f"bit_xor({h}) AS {prefix}h_xor",
        ]
        if self.target is not None:
            y, prediction = number[self.target], number[PREDICTION]
            error = f"CASE WHEN NOT (isnan({y}) OR isnan({prediction})) THEN {prediction} - {y} END"
            found += [
                f"count({error}) AS {prefix}labelled",  # null (not counted) when either is null
                f"sum(({error}) * ({error})) AS {prefix}squared_error",
                f"sum(abs({error})) AS {prefix}absolute_error",
            ]
        self.expressions = found

    def decode(self, values: Mapping) -> BatchStats:
        """The BatchStats of the aggregation's row (as a dict; other queries' fields ignored)."""
        stats = {k[len(self.prefix) :]: v for k, v in values.items() if k.startswith(self.prefix)}
        rows = int(stats["rows"])
        numeric = {}
        for index, (name, edges) in enumerate(self.edges.items()):
            present = int(stats[f"n{index}_present"])
            at_or_below = [int(stats[f"n{index}_{i}"]) for i in range(len(edges))]
            numeric[name] = NumericProfile.from_cumulative(
                edges, at_or_below, present, rows - present
            )
        categorical = {}
        for index, (name, levels) in enumerate(self.levels.items()):
            known = {level: int(stats[f"c{index}_{j}"]) for j, level in enumerate(levels)}
            given = int(stats[f"c{index}_given"])
            categorical[name] = CategoryProfile(known, rows - given, given - sum(known.values()))
        profile = Profile(rows, numeric, categorical) if self.profiled else None
        return BatchStats(profile, rows, _fingerprint(rows, stats), self._labels(stats))

    def _labels(self, stats: dict) -> dict[str, float]:
        if self.target is None or not stats["labelled"]:
            return {}
        n = int(stats["labelled"])
        return {
            RMSE: math.sqrt(stats["squared_error"] / n),
            MAE: stats["absolute_error"] / n,
            LABELLED_ROWS: float(n),
        }


def _row_hash(number: dict[str, str], sex: str, target: str | None) -> str:
    """xxhash64 of a row's content, with missing values in place.

    xxhash64 skips a null argument, so (null, 5) and (5, null) would hash alike: a missing number
    (null or NaN, which also makes a CSV output and its Parquet twin hash alike) is hashed as NaN,
    and SEX as (is null, text). Numbers are hashed as doubles, whatever type they were written in.
    """
    columns = [*NUMERIC_FEATURES, *([target] if target else [])]
    values = [f"coalesce({number[c]}, CAST('NaN' AS DOUBLE))" for c in columns]
    return f"xxhash64({', '.join(values)}, {sex} IS NULL, coalesce({sex}, ''))"


def _fingerprint(rows: int, stats: dict) -> str:
    """The row count, the sum of the row hashes modulo 2^64 (from its three slices: a duplicated
    row counts twice) and their XOR, digested into 32 hex digits."""
    high, middle, low = (int(stats[k] or 0) for k in ("h_high", "h_middle", "h_low"))
    total = ((high << 43) + (middle << 22) + low) % (1 << 64)
    xor = int(stats["h_xor"] or 0) % (1 << 64)
    text = f"{FINGERPRINT_FORMAT}:{rows}:{total:016x}:{xor:016x}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]
