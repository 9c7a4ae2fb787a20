"""The monitor's Spark pass (diabetes_mlops.spark.profile): its profile equals the pandas one
(diabetes.drift.profile_like) on the sample batch and on hostile values, its fingerprint names the
batch's content and nothing else, its label errors equal numpy's, and it scans the batch once."""

import math
import uuid

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from diabetes.contract import FEATURES, NUMERIC_FEATURES, PREDICTION, TARGET
from diabetes.drift import CategoryProfile, NumericProfile, Profile, profile_like, reference_profile
from diabetes.reading import read_dataset
from diabetes_mlops.spark.conf import MAX_FIELDS, wide_codegen
from diabetes_mlops.spark.profile import aggregation, batch_stats

NAN = float("nan")
DOUBLE_COLUMNS = (*NUMERIC_FEATURES, PREDICTION, TARGET)


def predict(frame: pd.DataFrame) -> np.ndarray:
    """Any deterministic score will do: the pass counts predictions, it does not make them."""
    bmi, bp = frame["BMI"].astype("float64"), frame["BP"].astype("float64")
    return (150 + 4 * (bmi.fillna(26) - 26) + 0.8 * (bp.fillna(94) - 94)).to_numpy()


@pytest.fixture(scope="module")
def reference(repo) -> Profile:
    training = read_dataset(repo / "ml_data" / "data_raw.csv", "training")
    return reference_profile(training[list(FEATURES)], predict(training))


@pytest.fixture(scope="module")
def sample(repo) -> pd.DataFrame:
    """The sample batch as scoring writes it: typed features plus a prediction."""
    rows = pd.read_csv(repo / "ml_data" / "data_batch_input.csv")
    return rows.assign(**{PREDICTION: predict(rows)})


def spark_frame(spark, rows: pd.DataFrame, text: tuple[str, ...] = ()):
    """`rows` in Spark, NaN kept as NaN and None as null (pandas folds both into NaN); the
    columns in `text` as strings, as a CSV output reads back."""
    fields = [
        T.StructField(
            c, T.DoubleType() if c in DOUBLE_COLUMNS and c not in text else T.StringType()
        )
        for c in rows.columns
    ]
    columns = [
        [_value(v, isinstance(f.dataType, T.StringType)) for v in rows[f.name]] for f in fields
    ]
    return spark.createDataFrame(list(zip(*columns, strict=True)), T.StructType(fields))


def _value(value, text: bool):
    if value is None or (text and isinstance(value, float) and math.isnan(value)):
        return None
    return value if text else float(value)


def pandas_profile(reference: Profile, rows: pd.DataFrame) -> Profile:
    numbers = {c: pd.to_numeric(rows[c], errors="coerce") for c in rows if c in DOUBLE_COLUMNS}
    data = rows.assign(**numbers)
    return profile_like(reference, data.drop(columns=[PREDICTION]), data[PREDICTION])


def test_equals_pandas_on_the_sample_batch(spark, reference, sample):
    frame = spark_frame(spark, sample.astype(object).where(sample.notna(), None))
    stats = batch_stats(frame, reference)
    assert stats.profile == pandas_profile(reference, sample)
    assert stats.rows == len(sample) == stats.profile.rows
    assert stats.labels == {}  # the sample batch has no Y


def hostile_rows(reference: Profile, rows: int = 48, seed: int = 3) -> pd.DataFrame:
    """Every reference edge as a value, NaN and null, infinities, -0.0, SEX codes the model does
    not know (and texts pandas would call missing), S3 with no value at all."""
    rng = np.random.default_rng(seed)
    data: dict[str, list] = {}
    for name, p in reference.numeric.items():
        low, high = (p.edges[0], p.edges[-1]) if p.edges else (0.0, 1.0)
        special = [*p.edges, NAN, None, math.inf, -math.inf, -0.0, 0.0, NAN, None]
        filler = list(rng.uniform(low - 5, high + 5, rows - len(special)).round(1))
        values = special + filler
        rng.shuffle(values)
        data[name] = values
    data["S3"] = [None, NAN] * (rows // 2)
    data["SEX"] = list(
        rng.choice(np.array(["Female", "Male", "M", "", " Male", "NA", None], dtype=object), rows)
    )
    return pd.DataFrame(data)[[*FEATURES, PREDICTION]]


def test_equals_pandas_on_edges_gaps_unknown_codes_and_an_empty_column(spark, reference):
    rows = hostile_rows(reference)
    stats = batch_stats(spark_frame(spark, rows), reference)
    expected = pandas_profile(reference, rows)
    assert stats.profile == expected
    assert stats.profile.numeric["S3"].missing == len(rows)  # all missing, none counted in a bin
    sex = stats.profile.categorical["SEX"]
    assert sex.unknown > 0 and sex.missing > 0  # the case is really there


def test_text_numbers_count_like_their_numbers(spark, reference):
    """A CSV output reads back as text: spaces around a number, NaN written out, an empty field;
    text that is no number counts as missing (pandas would refuse the whole column)."""
    rows = hostile_rows(reference, seed=5).head(30)
    as_text = rows.copy()
    for column in (*NUMERIC_FEATURES, PREDICTION):
        as_text[column] = [None if v is None else f" {float(v)} " for v in rows[column]]
    as_text.loc[3, "BMI"], as_text.loc[4, "BP"], as_text.loc[5, "S1"] = "", "NaN", "abc"
    expected_rows = rows.copy()
    expected_rows.loc[3, "BMI"] = expected_rows.loc[4, "BP"] = expected_rows.loc[5, "S1"] = None
    text = (*NUMERIC_FEATURES, PREDICTION)
    stats = batch_stats(spark_frame(spark, as_text, text), reference)
    assert stats.profile == pandas_profile(reference, expected_rows)
    doubles = batch_stats(spark_frame(spark, expected_rows), reference)
    assert stats.fingerprint == doubles.fingerprint  # "12.0" and 12.0 are the same value


def fingerprint(spark, reference, rows: pd.DataFrame, **extra) -> str:
    frame = spark_frame(spark, rows)
    for name, value in extra.items():
        frame = frame.withColumn(name, F.lit(value))
    return batch_stats(frame, reference).fingerprint


def test_fingerprint_names_the_rows_whatever_their_order(spark, reference, sample):
    rows = sample.assign(**{TARGET: np.arange(len(sample), dtype="float64")})
    frame = spark_frame(spark, rows)
    first = batch_stats(frame, reference).fingerprint
    shuffled = frame.orderBy(F.rand(seed=11)).repartition(3)
    assert batch_stats(shuffled, reference).fingerprint == first
    assert batch_stats(frame.coalesce(1), reference).fingerprint == first


def test_fingerprint_changes_with_any_value(spark, reference, sample):
    base = fingerprint(spark, reference, sample)
    changed = sample.copy()
    changed.loc[7, "S5"] += 1e-9
    assert fingerprint(spark, reference, changed) != base
    relabelled = sample.copy()
    relabelled.loc[0, "SEX"] = "M"
    assert fingerprint(spark, reference, relabelled) != base
    doubled = pd.concat([sample, sample.iloc[[0]]], ignore_index=True)
    assert fingerprint(spark, reference, doubled) != base
    # the same number of rows, one added twice: an XOR alone would not see the pair
    two = pd.concat([sample, sample.iloc[[0, 1]]], ignore_index=True)
    one_twice = pd.concat([sample, sample.iloc[[0, 0]]], ignore_index=True)
    assert fingerprint(spark, reference, two) != fingerprint(spark, reference, one_twice)


@pytest.mark.slow  # make test: the two fingerprint tests above
def test_fingerprint_tells_where_a_value_is_missing(spark, reference):
    """xxhash64 skips null arguments, so (null, 30) and (30, null) would hash alike: a missing
    value keeps its place (null and NaN are the same missing value)."""
    row = {c: 50.0 for c in (*NUMERIC_FEATURES, PREDICTION)} | {"SEX": "Male"}
    one = pd.DataFrame([row | {"AGE": None, "BMI": 30.0}])[[*FEATURES, PREDICTION]]
    other = pd.DataFrame([row | {"AGE": 30.0, "BMI": None}])[[*FEATURES, PREDICTION]]
    assert fingerprint(spark, reference, one) != fingerprint(spark, reference, other)
    as_nan = one.assign(AGE=[NAN])
    assert fingerprint(spark, reference, as_nan) == fingerprint(spark, reference, one)
    no_sex, empty_sex = one.assign(SEX=[None]), one.assign(SEX=[""])
    assert fingerprint(spark, reference, no_sex) != fingerprint(spark, reference, empty_sex)


@pytest.mark.slow  # make test: the two fingerprint tests above
def test_fingerprint_ignores_what_scoring_added(spark, reference, sample):
    """A re-score of the same input by another model version is the same batch."""
    scored = fingerprint(spark, reference, sample, model_version=3, scored_at="2026-01-01")
    rescored = sample.assign(**{PREDICTION: sample[PREDICTION] + 10})
    again = fingerprint(spark, reference, rescored, model_version=4, scored_at="2026-02-01")
    assert scored == again


def labelled_sample(sample: pd.DataFrame) -> pd.DataFrame:
    y = (100.0 + np.arange(len(sample)) % 200).astype(object)
    y[::7], y[3::11] = None, NAN  # unlabelled rows, as null and as NaN
    return sample.assign(**{TARGET: y})


def test_labels_equal_numpys_on_the_rows_with_a_target(spark, reference, sample):
    rows = labelled_sample(sample)
    stats = batch_stats(spark_frame(spark, rows), reference)
    y = pd.to_numeric(rows[TARGET]).to_numpy(dtype="float64")
    kept = ~np.isnan(y)
    error = rows[PREDICTION].to_numpy()[kept] - y[kept]
    assert stats.labels == {
        "rmse": pytest.approx(float(np.sqrt(np.mean(error**2))), rel=1e-12),
        "mae": pytest.approx(float(np.mean(np.abs(error))), rel=1e-12),
        "labelled_rows": float(kept.sum()),
    }
    assert 0 < kept.sum() < len(rows)
    # the label is data: it is in the fingerprint, but not in the profile
    unlabelled = batch_stats(spark_frame(spark, sample), reference)
    assert stats.fingerprint != unlabelled.fingerprint
    assert stats.profile == unlabelled.profile


def test_no_labels_without_target_values(spark, reference, sample):
    assert batch_stats(spark_frame(spark, sample), reference).labels == {}
    no_values = sample.assign(**{TARGET: [None] * len(sample)})
    assert batch_stats(spark_frame(spark, no_values), reference).labels == {}
    renamed = spark_frame(spark, labelled_sample(sample)).withColumnRenamed(TARGET, "label")
    assert batch_stats(renamed, reference, target="label").labels["labelled_rows"] > 0


def test_an_empty_batch_and_an_edgeless_reference(spark, reference, sample):
    empty = batch_stats(spark_frame(spark, sample).limit(0), reference)
    assert empty.rows == 0 and empty.labels == {}
    assert all(p.counts == (0,) * len(p.counts) for p in empty.profile.numeric.values())
    edgeless = Profile(
        0,
        {name: NumericProfile((), (0,), 0) for name in reference.numeric},
        {"SEX": CategoryProfile({}, 0, 0)},
    )
    stats = batch_stats(spark_frame(spark, sample), edgeless)
    assert stats.rows == len(sample)
    assert stats.profile == pandas_profile(edgeless, sample)
    assert stats.fingerprint == batch_stats(spark_frame(spark, sample), reference).fingerprint
    unprofiled = batch_stats(spark_frame(spark, sample), None)  # a version without a reference
    assert unprofiled.profile is None
    assert (unprofiled.rows, unprofiled.fingerprint) == (stats.rows, stats.fingerprint)


def test_a_missing_profiled_column_is_named(spark, reference, sample):
    frame = spark_frame(spark, sample).drop(PREDICTION)
    with pytest.raises(ValueError, match="no column 'prediction'"):
        batch_stats(frame, reference)


@pytest.mark.classic_spark_only
def test_one_scan_one_aggregation_in_generated_code(classic_spark, reference, sample, tmp_path):
    """The batch is read once (one scan, one stage over the data), and the ~110 aggregates stay in
    whole-stage generated code: without wide_codegen Spark falls back from it (2x slower). Read
    from Spark's own job records (classic only: what the server runs is the same plan)."""
    spark = classic_spark
    path = str(tmp_path / "scored.parquet")
    spark_frame(spark, sample).repartition(3).write.parquet(path)
    frame = spark.read.parquet(path)
    query = aggregation(frame, reference)
    fields = len(query.columns)
    assert fields > int(spark.conf.get(MAX_FIELDS))  # else this test proves nothing
    group = f"spark-profile-{uuid.uuid4().hex}"
    sc = spark.sparkContext
    sc.setJobGroup(group, "one pass")
    try:
        with wide_codegen(spark, fields):
            query.collect()
    finally:
        for key in ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel"):
            sc.setLocalProperty(key, None)
    plan = final_plan(query)
    assert plan.count("FileScan parquet") == 1
    aggregates = [line for line in plan.splitlines() if "HashAggregate" in line]
    assert len(aggregates) == 2 and all("*(" in line for line in aggregates), plan
    tracker = sc.statusTracker()
    stages = [s for j in tracker.getJobIdsForGroup(group) for s in tracker.getJobInfo(j).stageIds]
    ran = [tracker.getStageInfo(s) for s in stages]
    ran = [s for s in ran if s is not None and s.numCompletedTasks > 0]
    assert len(ran) == 2 and min(s.numTasks for s in ran) == 1  # the scan, then the merge

    plain = aggregation(frame, reference)
    plain.collect()  # no wide_codegen: the session's default
    aggregates = [line for line in final_plan(plain).splitlines() if "HashAggregate" in line]
    assert any("*(" not in line for line in aggregates)


def final_plan(query) -> str:
    """The plan adaptive execution ran (its string also holds the initial plan, uncompiled)."""
    text = query._jdf.queryExecution().executedPlan().toString()
    assert "isFinalPlan=true" in text
    return text.split("== Final Plan ==")[1].split("== Initial Plan ==")[0]


def test_wide_codegen_puts_the_setting_back(spark):
    assert spark.conf.get(MAX_FIELDS, None) is None
    with wide_codegen(spark, 500):
        assert spark.conf.get(MAX_FIELDS) == "500"
    assert spark.conf.get(MAX_FIELDS, None) is None
    spark.conf.set(MAX_FIELDS, "200")
    try:
        with wide_codegen(spark, 150):  # already wide enough: left alone
            assert spark.conf.get(MAX_FIELDS) == "200"
        with wide_codegen(spark, 300):
            assert spark.conf.get(MAX_FIELDS) == "300"
        assert spark.conf.get(MAX_FIELDS) == "200"
        with pytest.raises(RuntimeError, match="query failed"), wide_codegen(spark, 400):
            raise RuntimeError("query failed")
        assert spark.conf.get(MAX_FIELDS) == "200"
    finally:
        spark.conf.unset(MAX_FIELDS)


def test_wide_codegen_runs_the_query_where_the_session_refuses_the_setting():
    """Some sessions (serverless) refuse a conf: the aggregation then runs, only slower."""

    class RefusingConf:
        def get(self, key, default=None):
            return "100"

        def set(self, key, value):
            raise RuntimeError(f"[CONFIG_NOT_AVAILABLE] {key}")

    class Session:
        conf = RefusingConf()

    ran = []
    with wide_codegen(Session(), 300):
        ran.append(True)
    assert ran == [True]


def test_the_target_survives_batch_score_and_is_measured(
    spark, repo, tmp_path, champion, reference
):
    """The Spark engine keeps extra input columns: Y from a labelled CSV input reaches the scored
    output (as text, as the CSV had it) and the pass turns it into the batch's error."""
    from diabetes_mlops.steps import batch_score

    experiment = "/Shared/diabetes-spark-profile-tests"
    labelled = str(repo / "ml_data" / "data_raw.csv")
    out = tmp_path / "scored"
    batch_score(spark, labelled, str(out), champion.name, experiment)
    frame = spark.read.parquet(str(out))
    assert isinstance(frame.schema[TARGET].dataType, T.StringType)
    stats = batch_stats(frame, reference)
    scored = pd.read_parquet(out)
    error = scored[PREDICTION] - pd.to_numeric(scored[TARGET])
    assert stats.labels["labelled_rows"] == len(scored) == stats.rows
    assert stats.labels["rmse"] == pytest.approx(float(np.sqrt(np.mean(error**2))), rel=1e-12)
    assert stats.labels["mae"] == pytest.approx(float(np.mean(np.abs(error))), rel=1e-12)
    expected = profile_like(reference, scored.drop(columns=[PREDICTION]), scored[PREDICTION])
    assert stats.profile == expected


def test_levels_are_compared_exactly_whatever_their_text(spark, reference, sample):
    """A stored reference may hold any level text: quotes and backslashes are matched as written."""
    odd = ("O'Brien", "back\\slash", "Male")
    counts = dict.fromkeys(odd, 0) | {odd[0]: reference.rows}  # a profile's rows must add up
    levels = Profile(reference.rows, reference.numeric, {"SEX": CategoryProfile(counts, 0, 0)})
    rows = sample.assign(SEX=[odd[i % 3] if i % 4 else "male" for i in range(len(sample))])
    stats = batch_stats(spark_frame(spark, rows), levels)
    assert stats.profile == pandas_profile(levels, rows)
    assert min(stats.profile.categorical["SEX"].counts.values()) > 0
