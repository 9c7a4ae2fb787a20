import logging

import numpy as np
import pytest

from diabetes.batch_check import validate_frame
from diabetes.contract import DataValidationError
from diabetes.reading import read_dataset, read_table

HEADER = "AGE,SEX,BMI,BP,S1,S2,S3,S4,S5,S6,Y"
ROW = "59,Male,32.1,101,157,93.2,38,4,4.8598,87,151"
ROW2 = "48,Female,21.6,87,183,103.2,70,3,3.8918,69,75"


def error_of(call) -> DataValidationError:
    with pytest.raises(DataValidationError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message  # one line
    return info.value


def test_valid_file_is_typed(write_csv):
    frame = read_dataset(write_csv(f"{HEADER}\n{ROW}\n{ROW2}\n"), "training")
    assert frame["BMI"].dtype == np.float64 and frame["Y"].tolist() == [151.0, 75.0]
    assert frame["SEX"].tolist() == ["Male", "Female"]


def test_missing_required_column_names_file_and_column(write_csv):
    path = write_csv("AGE,SEX,BP,S1,S2,S3,S4,S5,S6,Y\n59,Male,101,157,93.2,38,4,4.8,87,151\n")
    error = error_of(lambda: read_dataset(path, "training"))
    assert str(path) in str(error) and "'BMI'" in str(error) and "missing" in str(error)


def test_several_missing_columns_are_all_named(write_csv):
    path = write_csv("AGE,SEX,S1,S2,S3,S4,S5,S6,Y\n59,Male,157,93.2,38,4,4.8,87,151\n")
    assert "'BMI', 'BP'" in str(error_of(lambda: read_dataset(path, "training")))


def test_extra_columns_are_allowed_and_kept(write_csv, caplog):
    path = write_csv(f"PATIENT_ID,{HEADER}\np1,{ROW}\n")
    with caplog.at_level(logging.INFO, logger="diabetes"):
        frame = read_dataset(path, "training")
    assert frame["PATIENT_ID"].tolist() == ["p1"]
    assert "PATIENT_ID" in caplog.text


def test_non_numeric_value_names_column_value_and_row(write_csv):
    path = write_csv(f"{HEADER}\n{ROW}\n48,Female,abc,87,183,103.2,70,3,3.89,69,75\n")
    error = error_of(lambda: read_dataset(path, "training"))
    assert error.column == "BMI"
    assert "non-numeric value 'abc'" in str(error) and "data row 2" in str(error)


def test_infinite_value_is_rejected(write_csv):
    path = write_csv(f"{HEADER}\n59,Male,inf,101,157,93.2,38,4,4.8598,87,151\n")
    assert "non-finite" in str(error_of(lambda: read_dataset(path, "training")))


def test_booleans_in_a_numeric_column_are_rejected(raw_text):
    raw_text["BP"] = True
    assert error_of(lambda: validate_frame(raw_text, "frame", "training")).column == "BP"


def test_empty_file(write_csv):
    path = write_csv("")
    assert "file is empty" in str(error_of(lambda: read_dataset(path, "scoring")))


def test_header_only_file(write_csv):
    path = write_csv(HEADER + "\n")
    assert "header but no data rows" in str(error_of(lambda: read_dataset(path, "training")))


def test_unknown_sex_at_training_is_an_error(write_csv):
    path = write_csv(f"{HEADER}\n{ROW}\n48,F,21.6,87,183,103.2,70,3,3.8918,69,75\n")
    error = error_of(lambda: read_dataset(path, "training"))
    assert error.column == "SEX" and "'F'" in str(error) and "Female, Male" in str(error)


def test_a_few_unknown_sex_codes_at_scoring_are_allowed_with_a_warning(write_csv, caplog):
    rows = [ROW2] * 199 + ["48,F,21.6,87,183,103.2,70,3,3.8918,69,75"]  # 0.5 % <= 1 %
    path = write_csv(HEADER + "\n" + "\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="diabetes"):
        frame = read_dataset(path, "scoring")
    assert frame["SEX"].tolist()[-1] == "F" and "unknown values" in caplog.text


def test_unknown_sex_codes_above_the_share_fail_and_are_named(write_csv):
    rows = [ROW2] * 97 + [ROW.replace("Male", code) for code in ("M", "F", "M")]  # 3 %
    path = write_csv(HEADER + "\n" + "\n".join(rows) + "\n")
    error = error_of(lambda: read_dataset(path, "scoring"))
    assert error.column == "SEX" and "3 of 100 rows" in str(error)
    assert "'M', 'F'" in str(error) and "max_unknown_share" in str(error)


def test_column_entirely_missing(write_csv):
    path = write_csv(
        f"{HEADER}\n59,Male,32.1,,157,93.2,38,4,4.8598,87,151\n48,Female,21.6,,183,1,70,3,3.8,69,75\n"
    )
    error = error_of(lambda: read_dataset(path, "scoring"))
    assert error.column == "BP" and "no values" in str(error)


def test_target_column_missing_at_training(write_csv):
    path = write_csv("AGE,SEX,BMI,BP,S1,S2,S3,S4,S5,S6\n59,Male,32.1,101,157,93.2,38,4,4.8598,87\n")
    error = error_of(lambda: read_dataset(path, "training"))
    assert "target column 'Y' missing" in str(error)
    assert len(read_dataset(path, "scoring")) == 1  # scoring needs no target


def test_target_values_missing_at_training(write_csv):
    path = write_csv(f"{HEADER}\n{ROW}\n48,Female,21.6,87,183,103.2,70,3,3.8918,69,\n")
    error = error_of(lambda: read_dataset(path, "training"))
    assert error.column == "Y" and "1 rows" in str(error) and "data row 2" in str(error)


def test_unreadable_path(tmp_path):
    missing = tmp_path / "nope.csv"
    error = error_of(lambda: read_dataset(missing, "training"))
    assert str(missing) in str(error) and "cannot read file" in str(error)
    assert "cannot read file" in str(error_of(lambda: read_table(tmp_path)))  # a directory


def test_binary_file_is_not_csv(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"\xff\xfe\x00\x81garbage")
    assert "UTF-16" in str(error_of(lambda: read_table(path)))


def test_malformed_csv(write_csv):
    path = write_csv('AGE,SEX\n"59,Male\n')
    assert "row does not parse" in str(error_of(lambda: read_table(path)))


def test_reserved_output_column_in_scoring_input(write_csv):
    path = write_csv(f"prediction,{HEADER}\n1,{ROW}\n")
    error = error_of(lambda: read_dataset(path, "scoring"))
    assert error.column == "prediction" and "reserved" in str(error)


def test_unknown_purpose():
    with pytest.raises(ValueError, match="purpose"):
        validate_frame(None, "x", "predict")  # type: ignore[arg-type]
