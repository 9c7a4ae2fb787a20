import hashlib

from diabetes.contract import FEATURES, NUMERIC_FEATURES, SEX_VALUES, TARGET
from diabetes.reading import read_dataset
from diabetes.sample_data import (
    BATCH_FILE,
    RAW_FILE,
    label_arrivals,
    main,
    sample_frames,
    write_sample_data,
)


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


def test_arriving_labels_extend_the_training_file_once(tmp_path, ml_data):
    path = tmp_path / RAW_FILE
    path.write_bytes((ml_data / RAW_FILE).read_bytes())
    before = read_dataset(path, "training")
    added = label_arrivals(path, seed=5)
    after = read_dataset(path, "training")  # still a valid training file, Y on every row
    assert added > 0 and len(after) == len(before) + added
    assert after["BMI"].iloc[len(before) :].mean() > before["BMI"].mean()  # the drifted population
    assert label_arrivals(path, seed=5) == 0 and len(read_dataset(path, "training")) == len(after)
