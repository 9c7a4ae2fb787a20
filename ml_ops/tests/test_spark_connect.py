"""The batch-scoring job (input check, quarantine, scoring, monitor, monitoring table) through
Spark Connect, as serverless compute and standard access mode clusters run the steps: the same
predictions, quarantined rows, monitoring rows and one-line errors as on classic Spark."""

import shutil

import numpy as np
import pandas as pd
import pytest

from diabetes_mlops.cli import main
from diabetes_mlops.local.spark import CONNECT_MODE_ENV, REMOTE_ENV

# It starts both kinds of session itself: not part of the Spark Connect pass of make test-all.
pytestmark = pytest.mark.classic_spark_only

DATA = "Volumes/main/diabetes/data"
OUTPUT = f"{DATA}/predictions/diabetes"
MONITORING = f"{DATA}/monitoring/diabetes"


def _root(tmp_path, repo, name):
    """A local root whose batch has two rows that break the contract (quarantined): a BMI that
    is no number, a SEX code that is none of the contract's."""
    root = tmp_path / name
    (root / DATA).mkdir(parents=True)
    shutil.copy(repo / "ml_data" / "data_raw.csv", root / DATA / "data_raw.csv")
    batch = pd.read_csv(repo / "ml_data" / "data_batch_input.csv", dtype=str)
    batch.loc[3, "BMI"] = "heavy"
    batch.loc[5, "SEX"] = "X"
    batch.to_csv(root / DATA / "data_batch_input.csv", index=False)
    return root


def _run(repo, root, model_name, **params):
    args = ["run-local", str(repo / "job_specs" / "diabetes_batch_scoring.json"),
            "--local-root", str(root), "--param", f"model_name={model_name}",
            "--param", "bad_rows=quarantine"]  # fmt: skip
    for name, value in params.items():
        args += ["--param", f"{name}={value}"]
    return main(args)


def _read(folder):
    return pd.read_parquet(folder).sort_values("AGE", kind="stable").reset_index(drop=True)


@pytest.fixture
def through_connect(monkeypatch, connect_url):
    """The local runner's notebooks get Spark Connect (a server on this process's Spark)."""
    monkeypatch.setenv(REMOTE_ENV, connect_url)
    monkeypatch.setenv(CONNECT_MODE_ENV, "1")  # pyspark.sql.functions: Connect columns


@pytest.fixture
def classic_root(tmp_path, repo, champion, classic_spark, capsys):
    root = _root(tmp_path, repo, "classic")
    assert _run(repo, root, champion.name) == 0
    assert "Spark: classic Spark" in capsys.readouterr().out
    return root


def test_the_batch_job_through_spark_connect_gives_what_classic_spark_gives(
    tmp_path, repo, champion, classic_root, through_connect, capsys
):
    root = _root(tmp_path, repo, "connect")
    assert _run(repo, root, champion.name) == 0
    assert f"Spark: Spark Connect ({REMOTE_ENV}=sc://127.0.0.1:" in capsys.readouterr().out
    scored, expected = _read(root / OUTPUT), _read(classic_root / OUTPUT)
    assert len(scored) == len(expected) > 0
    np.testing.assert_allclose(scored["prediction"], expected["prediction"], rtol=0, atol=1e-9)
    quarantine = f"{OUTPUT}_quarantine"
    assert _read(root / quarantine).equals(_read(classic_root / quarantine))
    assert len(_read(root / quarantine)) == 2
    # The monitoring rows, but for when and by which run they were written.
    columns = ["model_name", "model_version", "feature", "metric", "value", "threshold",
               "drifted", "batch_drifted", "rows"]  # fmt: skip
    monitored, classic = (
        pd.read_parquet(r / MONITORING)[columns].sort_values(
            ["feature", "metric"], ignore_index=True
        )
        for r in (root, classic_root)
    )
    assert len(monitored) > 10
    pd.testing.assert_frame_equal(monitored, classic, rtol=1e-9)


@pytest.mark.slow  # one more whole job through Connect; the everyday tier runs the plain one
def test_where_serverless_refuses_the_speed_settings_the_job_gives_the_same_results(
    tmp_path, repo, champion, classic_root, through_connect, capsys
):
    """Serverless compute refuses the settings the scoring and monitor passes change for speed
    (serverless_conf.py): the job runs without them, slower, to the same predictions and the same
    monitoring rows."""
    from serverless_conf import refusing_settings

    from diabetes_mlops.spark.conf import MAX_FIELDS

    root = _root(tmp_path, repo, "serverless")
    with refusing_settings() as refused:
        assert _run(repo, root, champion.name) == 0
    assert MAX_FIELDS in refused  # the monitor's aggregation ran without its wide codegen
    scored, expected = _read(root / OUTPUT), _read(classic_root / OUTPUT)
    np.testing.assert_allclose(scored["prediction"], expected["prediction"], rtol=0, atol=1e-9)
    assert _read(root / f"{OUTPUT}_quarantine").equals(_read(classic_root / f"{OUTPUT}_quarantine"))
    columns = ["feature", "metric", "value", "drifted", "rows"]
    monitored, classic = (
        pd.read_parquet(r / MONITORING)[columns].sort_values(
            ["feature", "metric"], ignore_index=True
        )
        for r in (root, classic_root)
    )
    pd.testing.assert_frame_equal(monitored, classic, rtol=1e-9)


def test_a_bad_input_through_spark_connect_is_the_same_one_line(
    tmp_path, repo, champion, classic_spark, connect_url, monkeypatch, capsys
):
    root = _root(tmp_path, repo, "bad")
    errors = {}
    for kind in ("connect", "classic"):
        if kind == "connect":
            monkeypatch.setenv(REMOTE_ENV, connect_url)
            monkeypatch.setenv(CONNECT_MODE_ENV, "1")
        else:
            monkeypatch.delenv(REMOTE_ENV)
            monkeypatch.delenv(CONNECT_MODE_ENV)
        code = _run(repo, root, champion.name, input_path=f"/{DATA}/missing.csv", bad_rows="fail")
        assert code == 1
        errors[kind] = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert errors["connect"] == errors["classic"] and len(errors["connect"]) == 1
    assert "missing.csv" in errors["connect"][0]


@pytest.mark.parametrize("remote, words", [
    ("yarn", "SPARK_REMOTE='yarn': give sc://host:port (a Spark Connect server) or local[N]"),
    ("local[0]", "give sc://host:port"),
    ("sc://127.0.0.1:{port}", "SPARK_REMOTE=sc://127.0.0.1:{port}: no Spark Connect server at"
                              " 127.0.0.1:{port} (Connection refused)"),
])  # fmt: skip
def test_a_spark_remote_that_cannot_work_is_one_line_at_once(
    repo, tmp_path, monkeypatch, capsys, remote, words
):
    import socket

    with socket.socket() as closed:  # a loopback port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv(REMOTE_ENV, remote.format(port=port))
    root = _root(tmp_path, repo, "remote")
    assert _run(repo, root, "diabetes_not_needed") == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and words.format(port=port) in err[0], err
