import pandas as pd
import pytest

from diabetes_mlops.errors import ParameterError
from diabetes_mlops.output import output_format, write_atomically


def frame(n):
    return pd.DataFrame({"a": range(n), "b": [float(i) / 3 for i in range(n)]})


def test_formats_by_extension():
    assert output_format("x/y.parquet") == "parquet" and output_format("y.CSV") == "csv"
    with pytest.raises(ParameterError, match="must end in one of .parquet, .csv"):
        output_format("y.json")


def test_write_replaces_the_previous_output(tmp_path):
    path = tmp_path / "deep" / "out.parquet"
    write_atomically(frame(3), str(path))
    write_atomically(frame(5), str(path))
    assert len(pd.read_parquet(path)) == 5
    assert [p.name for p in path.parent.iterdir()] == ["out.parquet"]


@pytest.mark.parametrize("name, method", [("out.parquet", "to_parquet"), ("out.csv", "to_csv")])
def test_a_failure_mid_write_leaves_the_previous_output_and_no_temp_file(
    tmp_path, monkeypatch, name, method
):
    path = tmp_path / name
    write_atomically(frame(3), str(path))
    before = path.read_bytes()
    original = getattr(pd.DataFrame, method)

    def half_then_fail(self, target, *args, **kwargs):
        original(self.head(1), target, *args, **kwargs)  # some bytes reach the disk ...
        raise OSError("disk full")  # ... then the write dies

    monkeypatch.setattr(pd.DataFrame, method, half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(frame(10), str(path))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [name]
