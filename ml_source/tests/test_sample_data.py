import hashlib

from diabetes.contract import FEATURES, NUMERIC_FEATURES, SEX_VALUES, TARGET
from diabetes.sample_data import BATCH_FILE, RAW_FILE, main, sample_frames, write_sample_data


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_regenerated_files_are_byte_identical_to_the_shipped_ones(tmp_path, ml_data):
    written = write_sample_data(tmp_path)
    assert [p.name for p in written] == [RAW_FILE, BATCH_FILE]
    for name in (RAW_FILE, BATCH_FILE):
        assert digest(tmp_path / name) == digest(ml_data / name), name


def test_main_writes_into_the_given_folder(tmp_path, capsys):
    assert main([str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / RAW_FILE).is_file()
    assert "wrote" in capsys.readouterr().out


def test_frames_have_the_schema_and_a_few_missing_numbers():
    raw, batch = sample_frames()
    assert list(raw.columns) == [*FEATURES, TARGET]
    assert list(batch.columns) == list(FEATURES)
    assert len(raw) == len(batch) == 442
    assert set(raw["SEX"].unique()) == set(SEX_VALUES)
    missing = raw[list(NUMERIC_FEATURES)].isna().sum().sum()
    assert 0 < missing < 0.05 * raw[list(NUMERIC_FEATURES)].size
    assert raw[TARGET].notna().all() and raw["SEX"].notna().all()
