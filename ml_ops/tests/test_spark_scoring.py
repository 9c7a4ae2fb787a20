"""Batch scoring on Spark: the native expression equals the MLflow model, the fallback works,
input errors are caught up front, and the pandas path gives the same output (output safety:
test_output_safety.py)."""

import contextlib
import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F
from pyspark.sql import types as T
from serverless_conf import refusing_settings
from tiers import sampled

from diabetes.contract import FEATURES, NUMERIC_FEATURES, DataValidationError
from diabetes.linear_form import NotLinear, linear_form
from diabetes_mlops.runtime.errors import ParameterError
from diabetes_mlops.runtime.parameters import read_arguments
from diabetes_mlops.serving import served_model
from diabetes_mlops.spark.inputs import check_input, read_input, typed_features
from diabetes_mlops.spark.scoring import (
    NATIVE,
    SPARK_UDF,
    UDF_COLUMNAR_INPUT,
    predict,
    rows_into_python_udfs,
)
from diabetes_mlops.steps import batch_score
from diabetes_mlops.tracking.runs import use_experiment

EXPERIMENT = "/Shared/diabetes-spark-tests"
SCHEMA = T.StructType(
    [T.StructField(c, T.StringType() if c == "SEX" else T.DoubleType()) for c in FEATURES]
)


def native(spark, champion, rows: pd.DataFrame) -> np.ndarray:
    frame = spark.createDataFrame(rows.astype(object).where(rows.notna(), None), SCHEMA)
    scored, path = predict(typed_features(frame), champion.pipeline, champion.uri)
    assert path == NATIVE
    return np.array([r["prediction"] for r in scored.select("prediction").collect()])


def test_native_equals_the_mlflow_model_on_the_sample_data(spark, champion, repo):
    rows = pd.read_csv(repo / "ml_data" / "data_batch_input.csv")
    expected = champion.pyfunc.predict(rows.astype({c: "float64" for c in NUMERIC_FEATURES}))
    assert np.abs(native(spark, champion, rows) - np.asarray(expected)).max() <= 1e-9


def random_rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame({c: rng.normal(100, 60, n) for c in NUMERIC_FEATURES})
    for column in NUMERIC_FEATURES:
        rows.loc[rng.random(n) < 0.15, column] = np.nan
    rows["SEX"] = rng.choice(["Female", "Male", "Other", None], n, p=[0.4, 0.4, 0.1, 0.1])
    return rows[list(FEATURES)]


def test_native_equals_the_model_on_random_rows_with_gaps_and_unknown_categories(spark, champion):
    rows = random_rows(3000, seed=7)
    expected = champion.pipeline.predict(rows)
    assert np.abs(native(spark, champion, rows) - expected).max() <= 1e-9


number = st.one_of(st.none(), st.floats(-1e4, 1e4, allow_nan=False))
row = st.fixed_dictionaries(
    {c: number for c in NUMERIC_FEATURES} | {"SEX": st.sampled_from(["Female", "Male", "X", None])}
)


# Examples: the loaded Hypothesis profile's (conftest.py: fewer in `make test`, more in test-all).
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(row, min_size=1, max_size=20))
def test_native_equals_the_model_for_any_rows(spark, champion, rows):
    frame = pd.DataFrame(rows, columns=list(FEATURES))
    numbers = frame[list(NUMERIC_FEATURES)].astype("float64")
    expected = champion.pipeline.predict(numbers.assign(SEX=frame["SEX"])[list(FEATURES)])
    assert np.abs(native(spark, champion, frame) - expected).max() <= 1e-9


@pytest.mark.slow  # the fallback path: spark_udf starts Python workers
def test_a_model_that_does_not_translate_is_scored_with_spark_udf(spark, tmp_path, caplog):
    import logging

    import mlflow
    from sklearn.pipeline import Pipeline
    from sklearn.tree import DecisionTreeRegressor

    from diabetes.pipeline import build_pipeline
    from diabetes.sample_data import sample_frames

    raw, batch = sample_frames()
    model = Pipeline(
        [("features", build_pipeline().steps[0][1]), ("tree", DecisionTreeRegressor(max_depth=4))]
    )
    model.fit(raw[list(FEATURES)], raw["Y"])
    with pytest.raises(NotLinear):
        linear_form(model)
    use_experiment(EXPERIMENT)  # its artifacts under the session's root, not ./mlruns
    with mlflow.start_run():  # as the train step logs it: the pyfunc flavor refuses unknown SEX
        info = served_model.log_model(model, name="tree", pip_requirements=["scikit-learn"],
                                      serialization_format="cloudpickle")  # fmt: skip
    batch.loc[[3, 7], "SEX"] = "Other"  # a batch tolerates a few unknown codes (max_unknown_share)
    frame = spark.createDataFrame(batch.astype(object).where(batch.notna(), None), SCHEMA)
    with caplog.at_level(logging.INFO, logger="diabetes_mlops"):
        scored, path = predict(typed_features(frame), model, info.model_uri)
        got = np.array([r["prediction"] for r in scored.select("prediction").collect()])
    assert path == SPARK_UDF and "scoring path: spark_udf" in caplog.text
    assert np.abs(got - model.predict(batch)).max() <= 1e-9  # unknown scored as missing
    # Where the session refuses the columnar-input setting (serverless): the same, slower.
    with refusing_settings() as refused, rows_into_python_udfs(spark):
        scored, path = predict(typed_features(frame), model, info.model_uri)
        again = np.array([r["prediction"] for r in scored.select("prediction").collect()])
    assert UDF_COLUMNAR_INPUT in refused
    assert path == SPARK_UDF and np.array_equal(again, got)


def csv(tmp_path, text, name="in.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


HEADER = "AGE,SEX,BMI,BP,S1,S2,S3,S4,S5,S6"
ROW = "59,Male,32.1,101,157,93.2,38,4,4.8598,87"


BAD_CSV = {
    "missing column": (
        "AGE,SEX,BP,S1,S2,S3,S4,S5,S6\n59,Male,101,157,93.2,38,4,4.8,87\n",
        "column 'BMI' missing",
    ),
    "non-numeric": (
        f"{HEADER}\n{ROW}\n48,Female,x1,87,183,103.2,70,3,3.89,69\n",
        "'BMI': non-numeric value 'x1'",
    ),
    "header only": (f"{HEADER}\n", "has a header but no data rows"),
    "empty": ("", "file is empty"),
    "all missing": (f"{HEADER}\n59,Male,32.1,,157,93.2,38,4,4.8,87\n", "'BP': has no values"),
    "infinite": (f"{HEADER}\n59,Male,inf,101,157,93.2,38,4,4.8,87\n", "'BMI': non-finite value"),
    "reserved name": (f"prediction,{HEADER}\n1,{ROW}\n", "'prediction': name is reserved"),
}


@pytest.mark.parametrize(
    "case", sampled(BAD_CSV, ("missing column", "non-numeric", "reserved name"))
)
def test_bad_csv_input_is_caught_before_scoring(spark, tmp_path, case):
    text, message = case
    path = csv(tmp_path, text)
    with pytest.raises(DataValidationError, match=message):
        check_input(read_input(spark, path, "csv"), path)


def test_an_empty_parquet_file_is_said_to_have_no_rows_whatever_its_types(spark, tmp_path):
    pd.DataFrame({c: [] for c in FEATURES}).to_parquet(tmp_path / "empty.parquet")  # all double
    path = str(tmp_path / "empty.parquet")
    with pytest.raises(DataValidationError, match=r"empty.parquet: has no data rows$"):
        check_input(read_input(spark, path, "parquet"), path)


@pytest.mark.parametrize("kept", [0.3, 0.5, 0.99], ids=["30 %", "half", "all but the end"])
def test_a_parquet_part_cut_short_is_named(spark, tmp_path, kept):
    """Where the cut falls decides Spark's own words (no magic number, a footer too large, ...):
    the line names the file and says what it is either way."""
    folder = tmp_path / "scores"
    folder.mkdir()
    frame = pd.read_csv(pd.io.common.StringIO(f"{HEADER}\n{ROW}\n{ROW}\n"))
    frame.to_parquet(folder / "part-0.parquet")
    frame.to_parquet(folder / "part-1.parquet")
    whole = (folder / "part-1.parquet").read_bytes()
    (folder / "part-1.parquet").write_bytes(whole[: int(len(whole) * kept)])  # a copy that stopped
    with pytest.raises(DataValidationError) as caught:
        check_input(read_input(spark, str(folder), "parquet"), str(folder))
    assert str(caught.value) == (
        f"{folder}: file {folder / 'part-1.parquet'} is a Parquet file cut short or corrupt (no"
        " whole footer): replace it"
    )


def test_wrong_types_in_parquet_are_caught_from_the_schema(spark, tmp_path):
    frame = pd.read_csv(pd.io.common.StringIO(f"{HEADER}\n{ROW}\n")).assign(BMI=True)
    frame.to_parquet(tmp_path / "in.parquet")
    path = str(tmp_path / "in.parquet")
    with pytest.raises(DataValidationError, match="'BMI': type boolean, expected numbers"):
        check_input(read_input(spark, path, "parquet"), path)
    with pytest.raises(DataValidationError, match="cannot read file"):
        read_input(spark, str(tmp_path / "missing"), "parquet")
    with pytest.raises(ParameterError, match="input_format"):
        read_input(spark, path, "json")


@pytest.mark.parametrize(
    "column, values, message",
    [
        ("S4", [4.0, float("inf")], "'S4': non-finite value"),
        pytest.param(
            "S4",
            [float("nan"), None],
            "'S4': has no values: all 2 rows are missing",
            marks=pytest.mark.slow,
        ),
        pytest.param("AGE", [None, None], "'AGE': has no values", marks=pytest.mark.slow),
    ],
)
def test_numbers_typed_as_numbers_are_checked_without_parsing(
    spark, tmp_path, column, values, message
):
    frame = pd.read_csv(io.StringIO(f"{HEADER}\n{ROW}\n{ROW}\n")).assign(**{column: values})
    frame[column] = frame[column].astype("float64")
    frame.to_parquet(tmp_path / "in.parquet")
    path = str(tmp_path / "in.parquet")
    with pytest.raises(DataValidationError, match=message):
        check_input(read_input(spark, path, "parquet"), path)


def test_nan_and_blank_text_are_missing_values_and_other_text_is_not(spark, tmp_path):
    rows = (
        f"{HEADER}\n{ROW}\n59,Male, NaN ,101,157,93.2,38,4,4.8,87\n"
        "59,Male,,101,157,93.2,38,4,4.8,87\n"
    )
    path = csv(tmp_path, rows)
    assert check_input(read_input(spark, path, "csv"), path).rows == 3
    path = csv(tmp_path, rows.replace("157,93.2", "157,nan?", 1), "bad.csv")
    with pytest.raises(
        DataValidationError, match=r"'S2': non-numeric value 'nan\?' in row .* \(1 such row\)"
    ):
        check_input(read_input(spark, path, "csv"), path)


def test_python_udfs_take_rows_while_scoring_and_the_setting_is_restored(spark, tmp_path):
    pd.read_csv(io.StringIO(f"{HEADER}\n{ROW}\n")).to_parquet(tmp_path / "in.parquet")
    frame = spark.read.parquet(str(tmp_path / "in.parquet"))
    udf = F.pandas_udf(lambda age: age * 2.0, "double")

    def plan() -> str:  # the physical plan, from classic Spark and Spark Connect alike
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            frame.select(udf("AGE")).explain()
        return printed.getvalue()

    for before in (None, "true", "false"):
        if before is None:
            spark.conf.unset(UDF_COLUMNAR_INPUT)
        else:
            spark.conf.set(UDF_COLUMNAR_INPUT, before)
        # Spark 4.3 by default: the scan's batches go to the UDF as they are
        assert ("ColumnarToRow" in plan()) == (before == "false")
        with rows_into_python_udfs(spark):
            assert spark.conf.get(UDF_COLUMNAR_INPUT) == "false"
            assert "ColumnarToRow" in plan()  # the scan's batches become rows before the UDF
        assert spark.conf.get(UDF_COLUMNAR_INPUT, None) == before
    spark.conf.unset(UDF_COLUMNAR_INPUT)


def test_spark_and_pandas_paths_give_the_same_output(spark, champion, repo, tmp_path):
    name = champion.name
    source = str(repo / "ml_data" / "data_batch_input.csv")
    batch_score(spark, source, str(tmp_path / "spark_out"), name, EXPERIMENT)
    batch_score(None, source, str(tmp_path / "pandas.parquet"), name, EXPERIMENT, engine="pandas")
    on_spark = pd.read_parquet(tmp_path / "spark_out")
    on_pandas = pd.read_parquet(tmp_path / "pandas.parquet")
    assert list(on_spark.columns) == list(on_pandas.columns)
    key = list(FEATURES)
    on_spark = on_spark.sort_values(key, na_position="first").reset_index(drop=True)
    on_pandas = on_pandas.sort_values(key, na_position="first").reset_index(drop=True)
    pd.testing.assert_frame_equal(
        on_spark.drop(columns=["prediction", "scored_at"]),
        on_pandas.drop(columns=["prediction", "scored_at"]),
        check_dtype=False,
    )
    assert np.abs(on_spark["prediction"] - on_pandas["prediction"]).max() <= 1e-9


def test_bad_engine_or_format_fails_before_any_work(tmp_path):
    """The rules on batch_score's signature, as run_step and the pre-run checks judge them."""
    good = {"input_path": "x", "output_path": str(tmp_path / "o"), "model_name": "m",
            "experiment_name": EXPERIMENT}  # fmt: skip
    for bad, message in [
        ({"engine": "dask"}, "parameter 'engine': must be one of spark, pandas, got 'dask'"),
        ({"output_format": "orc"}, "parameter 'output_format': must be one of"),
        ({"engine": "pandas", "input_format": "parquet"}, "parameter 'input_format': engine="),
    ]:
        _, problems = read_arguments(batch_score, {**good, **bad}.get)
        assert len(problems) == 1 and problems[0].startswith(message), problems


@pytest.mark.parametrize("engine", ["spark", "pandas"])
def test_quarantine_scores_the_good_rows_and_sets_the_bad_ones_aside(
    spark, champion, repo, tmp_path, engine
):
    """bad_rows=quarantine, end to end: the output holds the rows that meet the contract, the
    side output the others with their reason, and the run logs the counts."""
    import mlflow

    name = champion.name
    lines = (repo / "ml_data" / "data_batch_input.csv").read_text().splitlines()
    lines[3] = "-5" + lines[3][lines[3].index(",") :]  # a negative age
    lines[5] = lines[5].replace("Female", "F").replace("Male", "M")  # an unknown code
    lines[7] = lines[7] + ",1"  # an extra field
    source = tmp_path / "input.csv"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "scores"
    batch_score(
        spark if engine == "spark" else None,
        str(source),
        str(out),
        name,
        EXPERIMENT,
        engine=engine,
        bad_rows="quarantine",
    )
    scored = pd.read_parquet(out)
    side = pd.read_parquet(tmp_path / "scores_quarantine")
    assert len(scored) == len(lines) - 1 - 3 and len(side) == 3
    reasons = sorted(r.split(":")[0] for r in side["quarantine_reason"])
    assert reasons == ["AGE", "SEX", "row does not parse"]
    assert scored["AGE"].min() >= 0 and set(scored["SEX"].dropna()) <= {"Female", "Male"}
    run = mlflow.search_runs(
        experiment_names=[EXPERIMENT], filter_string="tags.step = 'batch_score'", max_results=1
    ).iloc[0]
    assert run["metrics.rows_quarantined"] == 3 and run["metrics.rows_in"] == len(lines) - 1


def test_a_failed_run_changes_neither_the_output_nor_its_quarantine(
    champion, repo, tmp_path, monkeypatch
):
    """Both outputs are staged completely before either is swapped in: a failure while staging
    the scores leaves the previous quarantine as it was, too."""
    from diabetes_mlops.data import output

    name = champion.name
    lines = (repo / "ml_data" / "data_batch_input.csv").read_text().splitlines()
    lines[3] = "-5" + lines[3][lines[3].index(",") :]
    source = tmp_path / "input.csv"
    source.write_text("\n".join(lines) + "\n")
    out, side = tmp_path / "scores", tmp_path / "scores_quarantine"

    def score():
        batch_score(None, str(source), str(out), name, EXPERIMENT, engine="pandas",
                    bad_rows="quarantine")  # fmt: skip

    score()
    before = {p.name: p.read_bytes() for p in (*out.iterdir(), *side.iterdir())}
    staged = []
    real_stage = output.OutputTarget.stage

    def stage_then_fail_on_the_scores(self, fields):
        staged.append(self.parameter)
        if self.parameter == "output_path":
            raise OSError("disk full")
        return real_stage(self, fields)

    monkeypatch.setattr(output.OutputTarget, "stage", stage_then_fail_on_the_scores)
    with pytest.raises(OSError, match="disk full"):
        score()
    assert staged == ["quarantine_path", "output_path"]
    assert {p.name: p.read_bytes() for p in (*out.iterdir(), *side.iterdir())} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
