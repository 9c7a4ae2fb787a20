"""The shipped sample data, made from the diabetes data set that scikit-learn ships (no download).

`python -m diabetes.sample_data OUT_DIR` writes `data_raw.csv` (training, with the target Y) and
`data_batch_input.csv` (scoring, no Y). The output is byte-identical on every run: fixed seed, fixed
float formatting, fixed line endings.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_diabetes

from diabetes.schema import FEATURES, NUMERIC_FEATURES, TARGET

RAW_FILE = "data_raw.csv"
BATCH_FILE = "data_batch_input.csv"
MISSING_FRACTION = 0.02
SEED = 20240611
# The data set codes sex as 1/2 without saying which is which; the mapping is a labelling choice.
SEX_CODES = {1.0: "Female", 2.0: "Male"}


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
        frame.to_csv(path, index=False, lineterminator="\n", float_format="%.10g")
    return paths


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    for path in write_sample_data(args[0] if args else "ml_data"):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
