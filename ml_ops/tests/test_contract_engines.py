"""One corpus of malformed and borderline CSV files through both engines: the same verdict.

Each case is a file; pandas (diabetes.batch_check) and Spark (diabetes_mlops.spark.inputs) must both
reject it, naming the same column and the same kind of problem, or both accept it with the same
rows and values. The contract itself lives in diabetes.contract; this is where the two engines
that apply it are held to one answer.
"""

import gzip
import io

import numpy as np
import pandas as pd
import pytest
from tiers import sampled

from diabetes.batch_check import check_frame
from diabetes.contract import (
    FEATURES,
    NUMERIC_FEATURES,
    QUARANTINE,
    QUARANTINE_REASON,
    DataValidationError,
)
from diabetes.reading import read_csv_rows
from diabetes_mlops.spark.inputs import check_input, read_input, typed_features

HEADER = "AGE,SEX,BMI,BP,S1,S2,S3,S4,S5,S6"
GOOD = [
    "59,Male,32.1,101,157,93.2,38,4,4.8598,87",
    "48,Female,21.6,87,183,103.2,70,3,3.8918,69",
    "72,Male,30.5,93,156,93.6,41,4,4.6728,85",
    "24,Female,25.3,84,198,131.4,40,5,4.8903,89",
]


def rows(*replacements: tuple[int, str]) -> list[str]:
    lines = list(GOOD) * 25  # 100 rows: 1 unknown SEX code is 1 %, 2 are 2 %
    for index, line in replacements:
        lines[index] = line
    return lines


def csv_text(lines: list[str], header: str = HEADER, end: str = "\n") -> str:
    return header + end + end.join(lines) + end


# name -> (file content, None for "both accept" or (column or None, words in both messages))
CORPUS = {
    "the sample rows": (csv_text(rows()), None),
    "extra field (unquoted decimal comma)": (
        csv_text(rows((5, "59,Male,32,1,101,157,93.2,38,4,4.8598,87"))),
        (None, "row does not parse"),
    ),
    "truncated last line": (csv_text(rows())[:-30], (None, "row does not parse")),
    "extra field beside a pass-through ID column": (
        csv_text(
            [
                f"id{i}," + r
                for i, r in enumerate(rows((5, "59,Male,32,1,101,157,93.2,38,4,4.8,87")))
            ],
            header="ID," + HEADER,
        ),
        (None, "row does not parse"),
    ),
    "a row with too few fields": (
        csv_text(rows((7, "59,Male,32.1,101"))),
        (None, "row does not parse"),
    ),
    "quoted decimal comma": (
        csv_text(rows((3, '59,Male,"32,1",101,157,93.2,38,4,4.8598,87'))),
        ("BMI", "non-numeric value '32,1'"),
    ),
    "a quoted value spanning lines": (
        csv_text(rows((3, '59,"Ma\nle",32.1,101,157,93.2,38,4,4.8598,87'))),
        (None, ""),
    ),
    "missing texts in any case": (
        csv_text(rows((1, "NULL,null,NA,n/a,None,nan,NaN,,  ,N/A"))),
        None,
    ),
    "number with a type suffix": (
        csv_text(rows((2, "59,Male,32.1d,101,157,93.2,38,4,4.8598,87"))),
        ("BMI", "non-numeric value '32.1d'"),
    ),
    "hexadecimal number": (
        csv_text(rows((2, "0x3b,Male,32.1,101,157,93.2,38,4,4.8598,87"))),
        ("AGE", "non-numeric value '0x3b'"),
    ),
    "infinity": (
        csv_text(rows((2, "59,Male,32.1,Infinity,157,93.2,38,4,4.8598,87"))),
        ("BP", "non-finite value"),
    ),
    "overflow to infinity": (
        csv_text(rows((2, "59,Male,32.1,101,1e400,93.2,38,4,4.8598,87"))),
        ("S1", "non-finite value"),
    ),
    "1e308 cholesterol": (
        csv_text(rows((9, "59,Male,32.1,101,1e308,93.2,38,4,4.8598,87"))),
        ("S1", "value 1e308 is outside the valid range"),
    ),
    "negative age": (
        csv_text(rows((4, "-5,Male,32.1,101,157,93.2,38,4,4.8598,87"))),
        ("AGE", "value -5 is outside the valid range"),
    ),
    "a value on the bound": (
        csv_text(rows((4, "120,Male,32.1,101,157,93.2,38,4,0,87"))),
        None,
    ),
    "tab inside a number": (
        csv_text(rows((4, "59,Male,\t32.1,101,157,93.2,38,4,4.8598,87"))),
        ("BMI", "non-numeric value"),
    ),
    "spaces around values and names": (
        csv_text(
            rows((4, " 59 , Male ,32.1 , 101,157,93.2,38,4,4.8598,87")),
            " AGE, SEX,BMI,BP," "S1,S2,S3,S4,S5,S6",
        ),
        None,
    ),
    "one unknown SEX code in 100 rows": (
        csv_text(rows((6, "59,M,32.1,101,157,93.2,38,4,4.8598,87"))),
        None,
    ),
    "unknown SEX codes above the share": (
        csv_text(
            rows(
                (6, "59,M,32.1,101,157,93.2,38,4,4.8598,87"),
                (8, "59,male,32.1,101,157,93.2,38,4,4.8598,87"),
            )
        ),
        ("SEX", "2 of 100 rows (2.0%) have unknown values such as 'M', 'male'"),
    ),
    "duplicated column": (
        csv_text(rows(), header="AGE,SEX,BMI,BP,S1,S2,S3,S4,S5,AGE"),
        ("AGE", "appears twice"),
    ),
    "AGE beside age": (
        csv_text([r + ",40" for r in rows()], header=HEADER + ",age"),
        ("AGE", "differs only in case"),
    ),
    "only a lower-case age": (
        csv_text(rows(), header=HEADER.replace("AGE", "age")),
        (None, "found 'age': names are case-sensitive"),
    ),
    "a nameless column": (
        csv_text([r + ",x" for r in rows()], header=HEADER + ","),
        (None, "has no name"),
    ),
    "reserved column": (
        csv_text([r + ",1" for r in rows()], header=HEADER + ",prediction"),
        ("prediction", "reserved"),
    ),
    "header only": (HEADER + "\n", (None, "has a header but no data rows")),
    "empty file": ("", (None, "file is empty")),
    "CRLF line endings": (csv_text(rows(), end="\r\n"), None),
    "blank lines between rows": (csv_text(rows()).replace("\n48,", "\n\n48,", 3), None),
    "UTF-8 byte-order mark": ("\ufeff" + csv_text(rows()), None),
    "UTF-16": (csv_text(rows()).encode("utf-16"), (None, "UTF-16")),
    "UTF-16 without a byte-order mark": (
        csv_text(rows()).encode("utf-16-le"),
        (None, "UTF-16"),
    ),
    "gzip under a .csv name": (gzip.compress(csv_text(rows()).encode()), (None, "gzip")),
    "Latin-1 text": (
        csv_text([r + ",Müller" for r in rows()], header=HEADER + ",NAME").encode("latin-1"),
        (None, "UTF-8"),
    ),
    "a Parquet file under a .csv name": ("parquet", (None, "Parquet")),
    "a line of spaces between rows": (csv_text(rows()).replace("\n48,", "\n   \n48,", 1), None),
    "Ctrl-Z at the end": (csv_text(rows()) + "\x1a", None),
    "a form feed before the header": ("\f\n" + csv_text(rows()), None),
    "a tab-only line before the header": ("\t\n" + csv_text(rows()), None),
    "U+FFFD in a pass-through column": (
        csv_text([r + ",Jos\ufffd" for r in rows()], header=HEADER + ",NAME"),
        (None, "not valid UTF-8"),
    ),
    "a row of 30000 fields": (
        csv_text(rows((3, ",".join(["1"] * 30000)))),
        (None, ""),
    ),
    "a 2 MB value in a pass-through column": (
        csv_text(
            [r + ("," + "y" * 2_000_000 if i == 2 else ",x") for i, r in enumerate(rows())],
            header=HEADER + ",NOTE",
        ),
        None,
    ),
}


def write(path, content) -> None:
    if content == "parquet":
        pd.read_csv(io.StringIO(csv_text(rows()))).to_parquet(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8"))


def pandas_verdict(path, **policy):
    try:
        frame, malformed = read_csv_rows(path)
        checked = check_frame(frame, str(path), "scoring", malformed=malformed, **policy)
    except DataValidationError as error:
        return error
    return checked


def spark_verdict(spark, path, **policy):
    try:
        check = check_input(read_input(spark, str(path), "csv"), str(path), **policy)
    except DataValidationError as error:
        return error
    return check


def features(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[list(FEATURES)].reset_index(drop=True).astype(object)
    return out.where(out.notna(), None)


EVERYDAY = (
    "the sample rows", "extra field (unquoted decimal comma)", "unknown SEX codes above the share",
    "AGE beside age", "UTF-16",
)  # fmt: skip


@pytest.mark.parametrize("case", sampled({name: name for name in CORPUS}, EVERYDAY))
def test_both_engines_give_the_same_verdict(spark, tmp_path, case):
    content, expected = CORPUS[case]
    path = tmp_path / "input.csv"
    write(path, content)
    by_pandas, by_spark = pandas_verdict(path), spark_verdict(spark, path)
    if expected is None:
        assert not isinstance(by_pandas, Exception), by_pandas
        assert not isinstance(by_spark, Exception), by_spark
        spark_rows = typed_features(by_spark.valid).toPandas()
        assert by_spark.rows == by_pandas.rows_in == len(spark_rows)
        pd.testing.assert_frame_equal(features(by_pandas.valid), features(spark_rows))
        return
    column, words = expected
    for verdict in (by_pandas, by_spark):
        assert isinstance(verdict, DataValidationError), f"accepted: {case}"
        message = str(verdict)
        assert "\n" not in message and message.startswith(str(path))
        assert verdict.column == column and words in message, message


def test_both_engines_name_the_row(spark, tmp_path):
    path = tmp_path / "input.csv"
    write(path, csv_text(rows((4, "-5,Male,32.1,101,157,93.2,38,4,4.8598,87"))))
    assert "data row 5" in str(pandas_verdict(path))
    assert '"AGE":"-5"' in str(spark_verdict(spark, path))  # Spark has no line numbers


MIXED = csv_text(
    rows(
        (1, "-5,Male,32.1,101,157,93.2,38,4,4.8598,87"),
        (2, "59,M,32.1,101,157,93.2,38,4,4.8598,87"),
        (3, "59,Male,32,1,101,157,93.2,38,4,4.8598,87"),
        (4, "59,Male,abc,101,157,93.2,38,4,4.8598,87"),
        (5, "59,NULL,,101,157,93.2,38,4,4.8598,87"),
    )
)


def test_quarantine_splits_the_same_rows_in_both_engines(spark, tmp_path):
    path = tmp_path / "input.csv"
    write(path, MIXED)
    by_pandas = pandas_verdict(path, bad_rows=QUARANTINE)
    by_spark = spark_verdict(spark, path, bad_rows=QUARANTINE)
    assert by_pandas.rows_in == by_spark.rows == 100
    assert len(by_pandas.quarantined) == by_spark.quarantined_rows == 4
    pd.testing.assert_frame_equal(
        features(by_pandas.valid), features(typed_features(by_spark.valid).toPandas())
    )
    reasons = sorted(r.split(":")[0] for r in by_pandas.quarantined[QUARANTINE_REASON])
    spark_reasons = sorted(
        r[QUARANTINE_REASON].split(":")[0] for r in by_spark.quarantined.collect()
    )
    assert reasons == spark_reasons == ["AGE", "BMI", "SEX", "row does not parse"]


@pytest.mark.slow  # make test quarantines rows on both engines (the test above)
def test_quarantine_with_nothing_valid_left_is_an_error(spark, tmp_path):
    path = tmp_path / "input.csv"
    write(path, csv_text(["-5,Male,32.1,101,157,93.2,38,4,4.8598,87"] * 3))
    for verdict in (
        pandas_verdict(path, bad_rows=QUARANTINE),
        spark_verdict(spark, path, bad_rows=QUARANTINE),
    ):
        assert isinstance(verdict, DataValidationError)
        assert "all 3 rows break the data contract" in str(verdict)


def test_typed_columns_are_held_to_the_same_ranges(spark, tmp_path):
    """Parquet input carries numbers, not text: the range rule applies all the same."""
    frame = pd.read_csv(io.StringIO(csv_text(rows())))
    frame.loc[3, "S5"] = 1e308
    path = tmp_path / "input.parquet"
    frame.to_parquet(path)
    with pytest.raises(DataValidationError, match="column 'S5': value 1e\\+308 is outside"):
        check_input(read_input(spark, str(path), "parquet"), str(path))
    with pytest.raises(DataValidationError, match="column 'S5': value 1e\\+308 is outside"):
        check_frame(frame, str(path), "scoring")
    frame.loc[3, "S5"] = np.inf
    frame.to_parquet(path)
    with pytest.raises(DataValidationError, match="column 'S5': non-finite value"):
        check_input(read_input(spark, str(path), "parquet"), str(path))


def test_a_folder_of_csv_files_with_different_headers_is_an_error(spark, tmp_path):
    folder = tmp_path / "batch"
    folder.mkdir()
    write(folder / "a.csv", csv_text(rows()))
    reordered = HEADER.replace("AGE,SEX", "SEX,AGE")
    write(
        folder / "b.csv",
        csv_text(
            [
                r.split(",", 2)[1] + "," + r.split(",", 2)[0] + "," + r.split(",", 2)[2]
                for r in rows()
            ],
            header=reordered,
        ),
    )
    with pytest.raises(DataValidationError, match="do not all have the same header"):
        check_input(read_input(spark, str(folder), "csv"), str(folder))


def test_text_read_as_parquet_is_named(spark, tmp_path):
    path = tmp_path / "input.csv"
    write(path, csv_text(rows()))
    with pytest.raises(DataValidationError, match="is not a Parquet file.*AGE,SEX"):
        read_input(spark, str(path), "parquet")


def test_numbers_are_typed_alike(spark, tmp_path):
    """The same text gives the same double in both engines (the model sees equal inputs)."""
    path = tmp_path / "input.csv"
    write(path, csv_text(rows((0, "+59.,Male,.5e2,1E2,157,93.2,38,4,4.8598,87"))))
    by_pandas, by_spark = pandas_verdict(path), spark_verdict(spark, path)
    spark_rows = typed_features(by_spark.valid).toPandas()
    for column in NUMERIC_FEATURES:
        assert by_pandas.valid[column].tolist() == spark_rows[column].tolist()
    assert by_pandas.valid.loc[0, ["AGE", "BMI", "BP"]].tolist() == [59.0, 50.0, 100.0]


def test_quarantine_keeps_rows_with_missing_numbers_in_typed_input(spark, tmp_path):
    """A gap in a typed column is a missing value, not a broken rule: no row is lost between
    the valid and the quarantined side (a null condition would drop it from both)."""
    frame = pd.read_csv(io.StringIO(csv_text(rows())))
    frame.loc[[1, 5], "BMI"] = np.nan
    frame.loc[7, "S5"] = None
    frame.loc[9, "AGE"] = -1.0  # the one broken row
    path = tmp_path / "input.parquet"
    frame.to_parquet(path)
    check = check_input(read_input(spark, str(path), "parquet"), str(path), bad_rows=QUARANTINE)
    assert check.quarantined_rows == 1 and check.quarantined.count() == 1
    assert check.valid.count() == 99
    checked = check_frame(frame, str(path), "scoring", QUARANTINE)
    assert len(checked.valid) == 99 and len(checked.quarantined) == 1
