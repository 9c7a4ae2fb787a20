"""The shipped sample data, made from the diabetes data set that scikit-learn ships (no download).

`python -m diabetes.sample_data OUT_DIR` writes `data_raw.csv` (training, with the target Y) and
`data_batch_input.csv` (scoring, no Y); `--drifted N` adds N scoring batches whose BMI and S5 have
shifted (`data_batch_drifted_<i>.csv`), for demonstrating drift monitoring. The output is
byte-identical on every run: fixed seeds, fixed float formatting, fixed line endings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_diabetes

from diabetes.contract import FEATURES, NUMERIC_FEATURES, RANGES, TARGET

RAW_FILE = "data_raw.csv"
BATCH_FILE = "data_batch_input.csv"
MISSING_FRACTION = 0.02
SEED = 20240611
# The data set codes sex as 1/2 without saying which is which; the mapping is a labelling choice.
SEX_CODES = {1.0: "Female", 2.0: "Male"}
DRIFTED_FILE = "data_batch_drifted_{}.csv"
# Decimals of the shifted columns, as the source data has them.
DECIMALS = {"BMI": 1, "S5": 4}


def sample_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training frame with Y, scoring frame without Y), with a few missing numeric values."""
    bunch = load_diabetes(scaled=False, as_frame=True)
    frame = bunch.frame.rename(columns=lambda c: c.upper()).rename(columns={"TARGET": TARGET})
    frame["SEX"] = frame["SEX"].map(SEX_CODES)
    frame = frame[[*FEATURES, TARGET]]
    rng = np.random.default_rng(SEED)
    raw = _with_missing(frame, rng)
    batch = _with_missing(frame.drop(columns=[TARGET]), rng)
    return raw, batch


def _with_missing(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    out = frame.copy()
    columns = [c for c in NUMERIC_FEATURES if c != "AGE"]
    for column in columns:
        mask = rng.random(len(out)) < MISSING_FRACTION
        out.loc[mask, column] = np.nan
    return out


def write_sample_data(out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    raw, batch = sample_frames()
    paths = [out / RAW_FILE, out / BATCH_FILE]
    for frame, path in zip((raw, batch), paths, strict=True):
        _write_csv(frame, path)
    return paths


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    """One formatting for every shipped file, so each is byte-identical on every run."""
    frame.to_csv(path, index=False, lineterminator="\n", float_format="%.10g")


def drifted_batch(
    frame: pd.DataFrame, seed: int, bmi_factor: float = 1.3, s5_shift: float = 0.6
) -> pd.DataFrame:
    """A scoring batch whose population has moved: the rows bootstrap-resampled (so no two
    batches are the same), BMI scaled and S5 shifted.

    Missing values stay missing and every value stays within the contract's RANGES, so the batch
    scores like any other and only the drift monitor can tell it apart."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(frame), size=len(frame))
    out = frame.iloc[rows].reset_index(drop=True)
    out["BMI"] = _shifted(out["BMI"] * bmi_factor, "BMI")
    out["S5"] = _shifted(out["S5"] + s5_shift, "S5")
    return out


def _shifted(values: pd.Series, column: str) -> pd.Series:
    """Clip to the column's physical range, then round as the sample data is (NaN stays NaN)."""
    limits = RANGES[column]
    return values.clip(limits.low, limits.high).round(DECIMALS[column])


def write_drifted_batches(out_dir: str | Path, count: int = 2, seed: int = SEED) -> list[Path]:
    """`data_batch_drifted_1.csv` ... `_<count>.csv`: drifted copies of the scoring batch, batch
    i drawn with seed + i so each differs, and the files are the same on every run."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _, batch = sample_frames()
    paths = []
    for i in range(1, count + 1):
        path = out / DRIFTED_FILE.format(i)
        _write_csv(drifted_batch(batch, seed + i), path)
        paths.append(path)
    return paths


def label_arrivals(training_file: str | Path, seed: int = SEED) -> int:
    """Append to a training file rows of the drifted population whose outcome is now known: the
    training rows drawn as a drifted batch is drawn, each with its Y. What a team's labelling
    brings in after drift was seen; returns how many rows were added."""
    train, _ = sample_frames()
    arrived = drifted_batch(train, seed)
    rows = arrived.to_csv(index=False, header=False, lineterminator="\n", float_format="%.10g")
    path = Path(training_file)
    text = path.read_text()
    if text.endswith(rows):  # they arrived before (a demo run again): not twice
        return 0
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text + ("" if text.endswith("\n") else "\n") + rows)
    partial.replace(path)  # the old file or the new one, whole
    return len(arrived)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diabetes.sample_data", description=__doc__)
    parser.add_argument("out_dir", nargs="?", default="ml_data", help="default: ml_data")
    parser.add_argument(
        "--drifted", type=int, default=0, metavar="N", help="also write N drifted batches"
    )
    args = parser.parse_args(argv)
    paths = write_sample_data(args.out_dir)
    if args.drifted:
        paths += write_drifted_batches(args.out_dir, args.drifted)
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
