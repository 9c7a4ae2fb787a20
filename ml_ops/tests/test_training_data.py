"""Training from CSV, Parquet, Delta or a table: the same rows, the same one-line errors, a row
limit checked before the driver collects anything, and the source recorded as lineage."""

import mlflow
import pandas as pd
import pytest
from conftest import BAD_TRAINING, write_bad_input
from mlflow.tracking import MlflowClient
from trained_models import FAST

from diabetes.contract import FEATURES, TARGET, DataValidationError
from diabetes_mlops.runtime.errors import ParameterError
from diabetes_mlops.spark.training_data import (
    TrainingData,
    delta_version,
    quote_table_name,
    read_training_data,
)
from diabetes_mlops.steps import train
from diabetes_mlops.tracking.training_run import dataset_source

EXPERIMENT = "/Shared/diabetes-training-data"
# The bad-input corpus cases a Parquet file can hold too (the others are about CSV bytes).
VALUE_CASES = (
    "missing column",
    "non-numeric value",
    "unknown SEX",
    "column all missing",
    "target missing",
    "header only",
    "negative age",
    "huge value",
    "target out of range",
    "infinite value",
)


def as_text_parquet(csv_path, parquet_path):
    """The CSV's values, as text, in a Parquet file: what a raw landing table looks like."""
    text = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    text.to_parquet(parquet_path, index=False)
    return parquet_path


def test_parquet_and_a_table_give_the_csv_rows(spark, data_dir, tmp_path):
    csv = read_training_data(str(data_dir / "data_raw.csv"), "csv", 10_000)
    typed = tmp_path / "typed.parquet"
    csv.frame.to_parquet(typed, index=False)  # numbers as doubles, SEX as text
    parquet = read_training_data(str(typed), "parquet", 10_000, spark)
    pd.testing.assert_frame_equal(
        parquet.frame[list(FEATURES) + [TARGET]].reset_index(drop=True),
        csv.frame[list(FEATURES) + [TARGET]].reset_index(drop=True),
    )
    text = read_training_data(
        str(as_text_parquet(data_dir / "data_raw.csv", tmp_path / "text.parquet")),
        "parquet",
        10_000,
        spark,
    )
    pd.testing.assert_frame_equal(text.frame, parquet.frame)
    spark.read.parquet(str(typed)).write.mode("overwrite").saveAsTable("training_rows")
    table = read_training_data("default.training_rows", "table", 10_000, spark)
    assert len(table.frame) == len(csv.frame) and table.version is None  # not Delta: no version
    key = list(FEATURES) + [TARGET]
    ordered = table.frame[key].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(ordered, csv.frame[key].sort_values(key).reset_index(drop=True))
    assert table.lineage == {"data_path": "default.training_rows", "data_format": "table"}


@pytest.mark.parametrize("case", VALUE_CASES)
def test_bad_values_in_parquet_get_the_csv_message(case, spark, data_dir, tmp_path):
    bad_csv = write_bad_input(BAD_TRAINING[case], data_dir / "data_raw.csv", tmp_path / "b.csv")
    with pytest.raises(DataValidationError) as from_csv:
        read_training_data(str(bad_csv), "csv", 10_000)
    bad_parquet = as_text_parquet(bad_csv, tmp_path / "b.parquet")
    with pytest.raises(DataValidationError) as from_parquet:
        read_training_data(str(bad_parquet), "parquet", 10_000, spark)
    expected = str(from_csv.value).replace(str(bad_csv), "<source>")
    assert str(from_parquet.value).replace(str(bad_parquet), "<source>") == expected
    assert BAD_TRAINING[case][1] in expected and "\n" not in expected


def test_typed_values_break_the_same_rules(spark, data_dir, tmp_path):
    frame = read_training_data(str(data_dir / "data_raw.csv"), "csv", 10_000).frame
    out_of_range = frame.assign(AGE=frame["AGE"].where(frame.index != 3, -5.0))
    out_of_range.to_parquet(tmp_path / "age.parquet", index=False)
    with pytest.raises(DataValidationError, match="column 'AGE': value -5.* outside the valid"):
        read_training_data(str(tmp_path / "age.parquet"), "parquet", 10_000, spark)
    flags = frame.assign(BMI=frame["BMI"] > 25)  # a boolean column where a number belongs
    flags.to_parquet(tmp_path / "flags.parquet", index=False)
    with pytest.raises(DataValidationError, match="column 'BMI'"):
        read_training_data(str(tmp_path / "flags.parquet"), "parquet", 10_000, spark)


def test_too_many_rows_is_one_line_before_collecting(spark, data_dir, tmp_path):
    frame = read_training_data(str(data_dir / "data_raw.csv"), "csv", 10_000).frame
    frame.to_parquet(tmp_path / "rows.parquet", index=False)
    with pytest.raises(ParameterError) as info:
        read_training_data(str(tmp_path / "rows.parquet"), "parquet", 100, spark)
    assert str(info.value).startswith("parameter 'max_training_rows': ")
    assert "more than 100 rows" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ParameterError, match=f"has {len(frame)} rows, more than the 100"):
        read_training_data(str(data_dir / "data_raw.csv"), "csv", 100)


def test_sources_that_cannot_be_read_are_one_line(spark, data_dir, tmp_path):
    with pytest.raises(DataValidationError, match="Delta Lake is not available"):
        read_training_data(str(tmp_path / "no_delta_here"), "delta", 10_000, spark)
    with pytest.raises(DataValidationError, match="no such file"):
        read_training_data(str(tmp_path / "absent.parquet"), "parquet", 10_000, spark)
    with pytest.raises(DataValidationError, match="is not a Parquet file"):
        read_training_data(str(data_dir / "data_raw.csv"), "parquet", 10_000, spark)
    with pytest.raises(ParameterError, match="parameter 'data_path': .* is not a table name"):
        read_training_data("main.diabetes.rows; DROP TABLE x", "table", 10_000, spark)
    with pytest.raises(ParameterError, match="data_format"):
        read_training_data(str(data_dir / "data_raw.csv"), "json", 10_000, spark)


class FakeDeltaSpark:
    """Just enough of a session with Delta Lake: DESCRIBE HISTORY and a time-travel read."""

    def __init__(self, latest, rows):
        self.latest, self.rows, self.queries, self.options = latest, rows, [], {}
        outer = self

        class Reader:
            def format(self, fmt):
                outer.options["format"] = fmt
                return self

            def option(self, key, value):
                outer.options[key] = value
                return self

            def load(self, path):
                outer.options["path"] = path
                return outer.rows

        self.read = Reader()

    def sql(self, text):
        self.queries.append(text)
        if text.startswith("DESCRIBE HISTORY"):
            return type("Result", (), {"collect": lambda _: [{"version": self.latest}]})()
        return self.rows


def test_a_delta_source_is_read_at_the_version_it_records():
    spark = FakeDeltaSpark(7, rows="the rows")
    assert delta_version(spark, "/Volumes/main/d/rows`x", "delta") == 7
    assert spark.queries[-1] == "DESCRIBE HISTORY delta.`/Volumes/main/d/rows``x` LIMIT 1"
    assert delta_version(spark, "main.diabetes.training", "table") == 7
    assert spark.queries[-1] == "DESCRIBE HISTORY `main`.`diabetes`.`training` LIMIT 1"
    assert delta_version(spark, "/x.parquet", "parquet") is None
    from diabetes_mlops.spark.training_data import _read

    assert _read(spark, "/Volumes/main/d/rows", "delta", 7) == "the rows"
    assert spark.options == {"format": "delta", "versionAsOf": 7, "path": "/Volumes/main/d/rows"}
    _read(spark, "main.diabetes.training", "table", 7)
    assert spark.queries[-1] == "SELECT * FROM `main`.`diabetes`.`training` VERSION AS OF 7"
    assert quote_table_name("`my-cat`.s.t") == "`my-cat`.`s`.`t`"


def test_lineage_names_the_table_and_its_delta_version():
    frame = pd.DataFrame({"x": [1.0]})
    table = TrainingData(frame, "main.diabetes.training", "table", 12)
    assert table.lineage["data_version"] == "12"
    source = dataset_source(table.location, table.fmt, table.version)
    assert (source.delta_table_name, source.delta_table_version) == ("main.diabetes.training", 12)
    path = dataset_source("/Volumes/m/d/rows", "delta", 3)
    assert (path.path, path.delta_table_version) == ("/Volumes/m/d/rows", 3)
    plain_table = dataset_source("main.d.t", "table", None)
    assert plain_table.to_dict() == {"table_name": "main.d.t"}
    assert dataset_source("/x.parquet", "parquet", None) == "/x.parquet"


def test_the_train_step_fits_a_parquet_source_and_records_it(spark, data_dir, model_name, tmp_path):
    frame = read_training_data(str(data_dir / "data_raw.csv"), "csv", 10_000).frame
    frame.to_parquet(tmp_path / "train.parquet", index=False)
    out = train(
        str(tmp_path / "train.parquet"),
        model_name,
        EXPERIMENT,
        data_format="parquet",
        spark=spark,
        **FAST,
    )
    run = MlflowClient().get_run(out["run_id"])
    assert run.data.tags["data_format"] == "parquet"
    fitted = int(run.data.params["train_rows"]) + int(run.data.params["holdout_rows"])
    assert fitted == len(frame)
    (dataset_input,) = run.inputs.dataset_inputs
    assert str(tmp_path / "train.parquet") in dataset_input.dataset.source


def test_a_bad_table_fails_the_run_and_registers_nothing(spark, data_dir, model_name, tmp_path):
    frame = read_training_data(str(data_dir / "data_raw.csv"), "csv", 10_000).frame
    frame.drop(columns=[TARGET]).to_parquet(tmp_path / "no_target.parquet", index=False)
    with pytest.raises(DataValidationError, match="target column 'Y' missing"):
        train(
            str(tmp_path / "no_target.parquet"),
            model_name,
            EXPERIMENT,
            data_format="parquet",
            spark=spark,
        )
    assert MlflowClient().search_model_versions(f"name='{model_name}'") == []
    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    (last,) = mlflow.search_runs([experiment.experiment_id], max_results=1).itertuples()
    assert last.status == "FAILED"
