from pathlib import Path

import pandas as pd
import pytest

from diabetes.reading import read_dataset
from diabetes.sample_data import sample_frames

ML_DATA = Path(__file__).resolve().parents[2] / "ml_data"


@pytest.fixture(scope="session")
def ml_data() -> Path:
    return ML_DATA


@pytest.fixture(scope="session")
def raw_frame() -> pd.DataFrame:
    """The shipped training data, validated."""
    return read_dataset(ML_DATA / "data_raw.csv", "training")


@pytest.fixture(scope="session")
def trained(raw_frame):
    from diabetes.training import train_model

    return train_model(raw_frame)


@pytest.fixture
def raw_text() -> pd.DataFrame:
    """The training frame as text, the way read_table returns a CSV."""
    raw, _ = sample_frames()
    return raw.astype("string").astype(object).where(raw.notna(), None)


@pytest.fixture
def write_csv(tmp_path):
    def write(text: str, name: str = "data.csv") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
