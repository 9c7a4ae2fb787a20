"""The batch's drift counts made while batch_score checks its input (one read of the data for the
whole job): they equal the monitor's own pass over the written output on hostile values, the
monitor uses them only while the output is unchanged, and counts the output itself otherwise."""

import json

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from diabetes.contract import FEATURES, NUMERIC_FEATURES, TARGET
from diabetes_mlops.data.output import MANIFEST
from diabetes_mlops.spark.profile import MANIFEST_FIELD, BatchStats, batch_stats
from diabetes_mlops.steps import batch_score, monitor
from diabetes_mlops.tracking import reference_profiles
from diabetes_mlops.tracking.registry import get_version

EXPERIMENT = "/Shared/diabetes-profile-while-scoring-tests"


@pytest.fixture(scope="module")
def reference(champion):
    return reference_profiles.load(get_version(MlflowClient(), champion.name, champion.version))


def hostile_csv(repo, reference, folder) -> str:
    """The sample batch made hard to count, inside the data contract: values on every reference
    edge, numbers with spaces around them, missing texts and empty fields, SEX with spaces,
    missing texts and codes the model does not know, and a target with gaps."""
    rows = pd.read_csv(repo / "ml_data" / "data_batch_input.csv", dtype=str, keep_default_na=False)
    rows = pd.concat([rows] * 2, ignore_index=True)
    rng = np.random.default_rng(7)
    for column in NUMERIC_FEATURES:
        edges = [e for e in reference.numeric[column].edges if np.isfinite(e)]
        picks = rng.choice(len(rows), size=len(edges), replace=False)
        for row, edge in zip(picks, edges, strict=True):
            rows.loc[row, column] = repr(float(edge))
        rows.loc[rng.choice(len(rows), 3), column] = ["", "NA", " nan "]
        spaced = rng.choice(len(rows), 5)
        rows.loc[spaced, column] = [f"  {v} " for v in rows.loc[spaced, column]]
    codes = ["Female", " Male ", "NA", "", "Other", "male", "Female "]
    rows["SEX"] = rng.choice(np.array(codes, dtype=object), len(rows))
    rows[TARGET] = [str(v) if i % 7 else "" for i, v in enumerate(rng.integers(25, 346, len(rows)))]
    path = folder / "hostile.csv"
    rows[[*FEATURES, TARGET]].to_csv(path, index=False)
    return str(path)


def manifest(output) -> dict:
    return json.loads((output / MANIFEST).read_text())


def test_the_counts_made_while_scoring_equal_the_monitors_own_pass(
    spark, repo, champion, reference, tmp_path
):
    source = hostile_csv(repo, reference, tmp_path)
    output = tmp_path / "scored"
    batch_score(spark, source, str(output), champion.name, EXPERIMENT, max_unknown_share=1.0)
    recorded = BatchStats.from_dict(manifest(output)[MANIFEST_FIELD])
    own = batch_stats(spark.read.parquet(str(output)), reference)
    assert recorded == own  # profile, rows, fingerprint and labels alike
    sex = recorded.profile.categorical["SEX"]
    assert sex.unknown > 0 and sex.missing > 0  # the hard cases are really there
    assert 0 < recorded.labels["labelled_rows"] < recorded.rows


def test_parquet_input_with_nan_null_and_integers(spark, repo, champion, reference, tmp_path):
    """Parquet keeps NaN and null apart, and integer columns are cast as the output casts them."""
    rows = pd.read_csv(repo / "ml_data" / "data_batch_input.csv")
    rows["AGE"] = rows["AGE"].fillna(50).astype("int64")
    rows.loc[::5, "BMI"] = np.nan
    rows.loc[1::5, "SEX"] = None
    source = tmp_path / "input.parquet"
    rows.to_parquet(source, index=False)
    output = tmp_path / "scored"
    batch_score(spark, str(source), str(output), champion.name, EXPERIMENT, input_format="parquet")
    recorded = BatchStats.from_dict(manifest(output)[MANIFEST_FIELD])
    assert recorded == batch_stats(spark.read.parquet(str(output)), reference)


def last_run(step: str):
    runs = mlflow.search_runs(
        experiment_names=[EXPERIMENT], filter_string=f"tags.step = '{step}'", max_results=1
    )
    return MlflowClient().get_run(runs.iloc[0]["run_id"])


def profile_source() -> str:
    return last_run("monitor").data.tags["profile_source"]


def test_the_monitor_uses_them_until_the_output_changes(spark, repo, champion, tmp_path):
    output, table = tmp_path / "scored", tmp_path / "monitoring"
    sample = str(repo / "ml_data" / "data_batch_input.csv")
    batch_score(spark, sample, str(output), champion.name, EXPERIMENT)
    first = monitor(spark, str(output), str(table), EXPERIMENT)
    assert profile_source() == "scoring pass"
    # Where each run's time went, as metrics (what the whole-job benchmark reports).
    scored, watched = last_run("batch_score").data.metrics, last_run("monitor").data.metrics
    assert {"seconds_read_check", "seconds_score_write", "seconds_publish"} <= set(scored)
    assert {"seconds_profile", "seconds_compare", "seconds_table"} <= set(watched)
    assert scored["seconds_score_write"] > 0
    # Someone rewrites a data file in place (fewer rows): the recorded counts no longer hold.
    part = next(p for p in output.iterdir() if p.name.startswith("part-"))
    rows = pq.read_table(part)
    pq.write_table(rows.slice(0, rows.num_rows - 3), part)
    (part.parent / f".{part.name}.crc").unlink()  # Hadoop's checksum of the old bytes
    second = monitor(spark, str(output), str(table), EXPERIMENT)
    assert profile_source() == "own pass"
    assert second["batch_id"] != first["batch_id"]  # other rows, another batch
    counted = pd.read_parquet(table)
    assert sorted(counted.groupby("batch_id")["rows"].first()) == [
        len(pd.read_parquet(output)),
        len(pd.read_csv(sample)),
    ]


@pytest.mark.parametrize("damage", ["format", "rows"])
def test_damaged_counts_are_counted_again(spark, repo, champion, tmp_path, damage, caplog):
    output, table = tmp_path / "scored", tmp_path / "monitoring"
    batch_score(spark, str(repo / "ml_data" / "data_batch_input.csv"), str(output), champion.name,
                EXPERIMENT)  # fmt: skip
    written = manifest(output)
    written[MANIFEST_FIELD][damage] = "x"
    (output / MANIFEST).write_text(json.dumps(written))
    monitor(spark, str(output), str(table), EXPERIMENT)
    assert profile_source() == "own pass"
    assert "counting the output again" in caplog.text


def test_quarantined_batches_are_counted_by_the_monitor(spark, repo, champion, tmp_path):
    """Under bad_rows=quarantine the rows written are known only after the check: no counts
    ride along, and the monitor reads the output itself."""
    output, table = tmp_path / "scored", tmp_path / "monitoring"
    batch_score(spark, str(repo / "ml_data" / "data_batch_input.csv"), str(output), champion.name,
                EXPERIMENT, bad_rows="quarantine")  # fmt: skip
    assert MANIFEST_FIELD not in manifest(output)
    monitor(spark, str(output), str(table), EXPERIMENT)
    assert profile_source() == "own pass"
