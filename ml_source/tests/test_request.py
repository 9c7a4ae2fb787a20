"""validate_request: the row rules of scoring applied to a real-time request, row by row."""

import numpy as np
import pandas as pd
import pytest

from diabetes.batch_check import validate_frame
from diabetes.contract import FEATURES, DataValidationError
from diabetes.request_check import validate_request

ROW = {
    "AGE": 50.0, "SEX": "Male", "BMI": 25.0, "BP": 90.0, "S1": 150.0,
    "S2": 100.0, "S3": 50.0, "S4": 3.0, "S5": 4.5, "S6": 90.0,
}  # fmt: skip


def request(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def test_a_good_request_comes_back_typed_with_the_features_in_order():
    out = validate_request(request(ROW, {**ROW, "SEX": "Female", "id": 7}))
    assert list(out.columns) == list(FEATURES)
    assert out["SEX"].tolist() == ["Male", "Female"]
    assert out["AGE"].dtype == "float64" and out["AGE"].tolist() == [50.0, 50.0]


def test_missing_values_are_allowed_even_when_a_column_is_missing_throughout():
    """A request is not a batch: one row's missing BMI is imputed by the model."""
    out = validate_request(request({**ROW, "BMI": None, "SEX": None}))
    assert np.isnan(out["BMI"].iloc[0]) and out["SEX"].iloc[0] is None


def test_it_agrees_with_the_batch_contract_on_a_valid_file(ml_data):
    batch = pd.read_csv(ml_data / "data_batch_input.csv")
    expected = validate_frame(batch, "batch", "scoring")[list(FEATURES)]
    got = validate_request(batch)
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True), check_dtype=False)


@pytest.mark.parametrize(
    "edit, words",
    [
        ({"AGE": -5.0}, "column 'AGE': value -5 is outside the valid range [0, 120]"),
        ({"S1": 1e308}, "column 'S1': value 1e+308 is outside"),
        ({"BMI": float("inf")}, "column 'BMI': non-finite value"),
        ({"SEX": "M"}, "column 'SEX': unknown value 'M' (allowed: Female, Male)"),
        ({"SEX": 1}, "column 'SEX': unknown value 1"),
        ({"BMI": "heavy"}, "column 'BMI': non-numeric value 'heavy'"),
        ({"BMI": True}, "column 'BMI': expected a number, found boolean True"),
    ],
)
def test_a_row_breaking_a_rule_is_an_error_naming_column_value_and_row(edit, words):
    with pytest.raises(DataValidationError) as error:
        validate_request(request(ROW, ROW, {**ROW, **edit}))
    assert str(error.value).startswith("request: ")
    assert words in str(error.value)
    assert "data row 3" in str(error.value)


def test_text_numbers_and_missing_texts_are_read_by_the_contract_grammar():
    out = validate_request(request({**ROW, "BMI": " 25.5 ", "S6": "NA", "SEX": " Female "}))
    assert out["BMI"].iloc[0] == 25.5 and np.isnan(out["S6"].iloc[0])
    assert out["SEX"].iloc[0] == "Female"


def test_a_missing_feature_column_an_empty_request_and_no_columns_are_errors():
    without = {k: v for k, v in ROW.items() if k != "S5"}
    with pytest.raises(DataValidationError, match="required column 'S5' missing"):
        validate_request(request(without))
    with pytest.raises(DataValidationError, match="request: has no rows"):
        validate_request(pd.DataFrame(columns=list(FEATURES)))
    with pytest.raises(DataValidationError, match="request: required columns 'AGE', 'SEX', 'BMI'"):
        validate_request(pd.DataFrame())


def test_the_first_broken_column_in_feature_order_is_reported():
    with pytest.raises(DataValidationError, match="column 'BMI'"):
        validate_request(request({**ROW, "S6": -1.0}, {**ROW, "BMI": 1000.0}))


@pytest.mark.parametrize("flag", [True, np.True_, np.bool_(False)])
def test_a_boolean_among_numbers_is_refused_not_imputed(flag):
    with pytest.raises(DataValidationError, match="column 'AGE': expected a number, found boolean"):
        validate_request(request(ROW, {**ROW, "AGE": flag}))


def test_a_column_of_booleans_is_refused():
    with pytest.raises(DataValidationError, match="column 'AGE': expected numbers, found booleans"):
        validate_request(request({**ROW, "AGE": True}))
