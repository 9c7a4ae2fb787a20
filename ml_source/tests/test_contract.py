"""The data contract in the pure library: ranges, missing texts, the number grammar, the header's
rules, byte sniffing, and the quarantine policy of check_frame."""

import gzip
import io

import numpy as np
import pandas as pd
import pytest

from diabetes.batch_check import check_frame
from diabetes.contract import (
    FEATURES,
    NUMERIC_FEATURES,
    QUARANTINE,
    QUARANTINE_REASON,
    RANGES,
    RAW_RECORD,
    TARGET,
    DataValidationError,
    check_columns,
    is_missing_text,
    is_number_text,
    sniff_text_file,
    value_problem,
)
from diabetes.reading import read_csv_rows, read_dataset

HEADER = "AGE,SEX,BMI,BP,S1,S2,S3,S4,S5,S6,Y"
ROW = "59,Male,32.1,101,157,93.2,38,4,4.8598,87,151"


def test_every_numeric_column_and_the_target_have_a_range_holding_the_sample_data(raw_frame):
    assert set(RANGES) == {*NUMERIC_FEATURES, TARGET}
    for column, limits in RANGES.items():
        assert limits.low < limits.high
        assert raw_frame[column].dropna().between(limits.low, limits.high).all(), column


@pytest.mark.parametrize(
    "text", ["", " ", "NA", "na", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None", " NULL "]
)
def test_missing_texts(text):
    assert is_missing_text(text)


@pytest.mark.parametrize("text", ["0", "-", "?", "missing", "\tNA", "0.0"])
def test_texts_that_are_not_missing(text):
    assert not is_missing_text(text)


@pytest.mark.parametrize(
    "text", ["5", "+5", "-5", "5.", ".5", "5.25", "1e3", "1E-3", "-1.5e+2", " 7 ", "inf", "-INF",
             "Infinity"],
)  # fmt: skip
def test_number_grammar_accepts(text):
    assert is_number_text(text)


@pytest.mark.parametrize(
    "text", ["1.5d", "1.5f", "0x10", "32,1", "1_000", "5 kg", "e5", ".", "+", "1e", "١٢", "\t5",
             "nan", "5\n"],
)  # fmt: skip
def test_number_grammar_rejects(text):
    assert not is_number_text(text)


@pytest.mark.parametrize(
    "column, value, problem",
    [
        ("AGE", "59", None),
        ("AGE", "NULL", None),
        ("AGE", None, None),
        ("AGE", float("nan"), None),
        ("AGE", "-5", "value -5 is outside the valid range [0, 120] (years)"),
        ("S1", 1e308, "value 1e+308 is outside the valid range"),
        ("S1", "1e308", "value 1e308 is outside the valid range"),
        ("BP", "inf", "non-finite value 'inf'"),
        ("BP", float("-inf"), "non-finite value"),
        ("BMI", "32,1", "non-numeric value '32,1'"),
        ("S5", "0", None),
        ("S5", 12.0, None),
        ("S5", 12.0001, "outside the valid range"),
    ],
)
def test_value_problem(column, value, problem):
    found = value_problem(column, value)
    assert found == problem if problem is None else problem in found


def test_header_rules_name_the_column():
    with pytest.raises(DataValidationError, match="column 'AGE': appears twice"):
        check_columns([*FEATURES, "AGE"], "f.csv", "scoring")
    with pytest.raises(DataValidationError, match="column 'BMI': differs only in case from 'bmi'"):
        check_columns([*FEATURES, "bmi"], "f.csv", "scoring")
    with pytest.raises(DataValidationError, match="column 11 of the header has no name"):
        check_columns([*FEATURES, ""], "f.csv", "scoring")
    lower = ["age" if c == "AGE" else c for c in FEATURES]
    with pytest.raises(DataValidationError, match="'AGE' missing .*found 'age'"):
        check_columns(lower, "f.csv", "scoring")
    with pytest.raises(DataValidationError, match="'quarantine_reason': name is reserved"):
        check_columns([*FEATURES, "quarantine_reason"], "f.csv", "scoring")


@pytest.mark.parametrize(
    "head, words",
    [
        (gzip.compress(b"AGE,SEX\n", mtime=0), "gzip-compressed"),
        (b"PK\x03\x04rest", "zip archive"),
        (b"PAR1\x15\x04", "Parquet file"),
        ("AGE,SEX\n".encode("utf-16"), "UTF-16"),
        ("AGE,SEX\n".encode("utf-16-be"), "NUL bytes"),
        ("AGE,NAME\n1,Müller\n".encode("latin-1"), "byte 0xfc"),
    ],
)
def test_sniffing_names_what_a_file_really_is(head, words):
    assert words in sniff_text_file(head)


def test_sniffing_accepts_utf8_and_a_character_cut_at_the_end():
    assert sniff_text_file("AGE,NAME\n1,Müller\n".encode()) is None
    assert sniff_text_file("AGE,NAME\n1,Mü".encode()[:-1]) is None


def test_a_gzip_file_named_gz_is_read(tmp_path):
    path = tmp_path / "data.csv.gz"
    path.write_bytes(gzip.compress(f"{HEADER}\n{ROW}\n{ROW}\n".encode()))
    assert len(read_dataset(path, "training")) == 2


def test_a_file_named_gz_that_is_not_gzip(tmp_path):
    path = tmp_path / "data.csv.gz"
    path.write_text(f"{HEADER}\n{ROW}\n")
    with pytest.raises(DataValidationError, match="named .gz but is not gzip"):
        read_dataset(path, "training")


def test_training_rejects_out_of_range_values_and_targets(tmp_path):
    for row, column in (
        ("-3,Male,32.1,101,157,93.2,38,4,4.8598,87,151", "AGE"),
        ("59,Male,32.1,101,157,93.2,38,4,4.8598,87,-151", "Y"),
        ("59,Male,32.1,101,157,93.2,38,4,4.8598,87,1e308", "Y"),
    ):
        path = tmp_path / "data.csv"
        path.write_text(f"{HEADER}\n{ROW}\n{row}\n")
        with pytest.raises(DataValidationError) as info:
            read_dataset(path, "training")
        assert info.value.column == column and "data row 2" in str(info.value)


def test_quarantine_keeps_good_rows_typed_and_bad_rows_as_read_with_a_reason(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text(
        "ID,AGE,SEX,BMI,BP,S1,S2,S3,S4,S5,S6\n"
        "a,59,Male,32.1,101,157,93.2,38,4,4.8598,87\n"
        "b,-5,Male,32.1,101,157,93.2,38,4,4.8598,87\n"
        "c,59,M,32.1,101,157,93.2,38,4,4.8598,87\n"
        "d,59,Male,32,1,101,157,93.2,38,4,4.8598,87\n"
        "e,48,NULL,,87,183,103.2,70,3,3.8918,69\n"
    )
    frame, malformed = read_csv_rows(path)
    checked = check_frame(frame, str(path), "scoring", QUARANTINE, malformed=malformed)
    assert checked.rows_in == 5
    assert checked.valid["ID"].tolist() == ["a", "e"]
    assert checked.valid["BMI"].tolist()[0] == 32.1 and np.isnan(checked.valid["BMI"].iloc[1])
    bad = checked.quarantined
    assert bad["ID"].tolist() == ["b", "c", None]
    assert bad.loc[0, "AGE"] == "-5"  # as read: text
    assert bad[QUARANTINE_REASON].tolist()[0].startswith("AGE: value -5 is outside")
    assert bad[QUARANTINE_REASON].tolist()[1] == "SEX: unknown value 'M' (allowed: Female, Male)"
    assert bad[RAW_RECORD].tolist()[2] == "d,59,Male,32,1,101,157,93.2,38,4,4.8598,87"


def test_quarantine_is_for_scoring_only():
    frame = pd.read_csv(io.StringIO(f"{HEADER}\n{ROW}\n"))
    with pytest.raises(ValueError, match="fail for training"):
        check_frame(frame, "f", "training", QUARANTINE)


def test_max_unknown_share_is_a_parameter(tmp_path):
    path = tmp_path / "data.csv"
    lines = [ROW.replace("Male", "M")] + [ROW] * 9  # 10 % unknown
    path.write_text(HEADER + "\n" + "\n".join(lines) + "\n")
    frame, _ = read_csv_rows(path)
    with pytest.raises(DataValidationError, match="1 of 10 rows"):
        check_frame(frame, str(path), "scoring")
    assert len(check_frame(frame, str(path), "scoring", max_unknown_share=0.1).valid) == 10
