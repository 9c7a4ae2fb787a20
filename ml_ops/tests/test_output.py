"""The output module on its own: folders marked by a manifest, the atomic swap (exchange and the
two-rename fallback), recovery of swaps cut short, and which leftovers go."""

import errno
import json
import os
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from diabetes_mlops.data import directory_swap, locations, output
from diabetes_mlops.data.directory_swap import ExchangeUnsupported, exchange, recover, sibling
from diabetes_mlops.data.output import MANIFEST, prepare_output, read_manifest
from diabetes_mlops.data.ownership import TEMP_STALE_SECONDS
from diabetes_mlops.runtime.errors import ParameterError
from diabetes_mlops.tracking.runs import STALE_AFTER_SECONDS, run_is_over, use_experiment

EXPERIMENT = "/Shared/diabetes-output-tests"


def frame(n):
    return pd.DataFrame({"a": range(n), "b": [float(i) / 3 for i in range(n)]})


def snapshot(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None
        for p in sorted(folder.rglob("*"))
    }


def finished_run(status="FINISHED") -> str:
    """A run id as a batch-score run would have, in the given state."""
    client = MlflowClient()
    experiment = use_experiment(EXPERIMENT)  # its artifacts under the session's root
    run_id = client.create_run(experiment).info.run_id
    if status != "RUNNING":
        client.set_terminated(run_id, status)
    return run_id


def write(location, rows, fmt="parquet", run_id=None, **kwargs):
    """One pandas-engine output through the whole API, as batch_score drives it."""
    target = prepare_output(str(location), fmt, engine="pandas", **kwargs)
    target.begin(run_id or finished_run(), run_is_over)
    target.write_pandas(frame(rows))
    return target.commit({"model_version": "3"})


def test_an_output_is_a_folder_with_a_manifest_that_readers_skip(tmp_path):
    out = tmp_path / "deep" / "scores"
    manifest = write(out, 4)
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "part-00000.parquet"]
    assert len(pd.read_parquet(out)) == 4  # pyarrow skips the _manifest
    assert read_manifest(out) == manifest
    assert manifest["rows"] == 4 and manifest["files"] == ["part-00000.parquet"]
    assert manifest["format"] == "parquet" and manifest["engine"] == "pandas"
    assert manifest["model_version"] == "3" and len(manifest["mlflow_run_id"]) == 32
    write(tmp_path / "csv", 2, fmt="csv")
    assert len(pd.read_csv(tmp_path / "csv" / "part-00000.csv")) == 2


def test_our_output_is_replaced_in_one_exchange_and_nothing_is_left_beside_it(
    tmp_path, monkeypatch
):
    out = tmp_path / "scores"
    write(out, 3)
    swaps = []
    monkeypatch.setattr(
        directory_swap, "exchange", lambda a, b: swaps.append((a, b)) or exchange(a, b)
    )
    write(out, 5)
    assert len(swaps) == 1 and len(pd.read_parquet(out)) == 5
    assert [p.name for p in tmp_path.iterdir()] == ["scores"]


def test_without_exchange_two_renames_replace_it(tmp_path, monkeypatch):
    out = tmp_path / "scores"
    write(out, 3)

    def unsupported(a, b):
        raise ExchangeUnsupported(errno.EINVAL, "not here")

    monkeypatch.setattr(directory_swap, "exchange", unsupported)
    write(out, 6)
    assert len(pd.read_parquet(out)) == 6 and read_manifest(out)["rows"] == 6
    assert [p.name for p in tmp_path.iterdir()] == ["scores"]


def test_an_error_in_the_second_rename_puts_the_previous_output_back(tmp_path, monkeypatch):
    out = tmp_path / "scores"
    write(out, 3)
    before = snapshot(out)
    monkeypatch.setattr(
        directory_swap, "exchange", lambda a, b: (_ for _ in ()).throw(ExchangeUnsupported())
    )
    real_rename = os.rename

    def second_rename_fails(src, dst):
        if str(dst) == str(out) and ".staging-" in str(src):  # the new output, moving in
            raise OSError(errno.EIO, "I/O error")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", second_rename_fails)
    with pytest.raises(OSError, match="I/O error"):
        write(out, 7)
    assert snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["scores"]


def test_exchange_swaps_two_folders_and_says_when_it_cannot(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1").write_text("one")
    (tmp_path / "b").mkdir()
    exchange(tmp_path / "a", tmp_path / "b")
    assert os.listdir(tmp_path / "b") == ["1"] and os.listdir(tmp_path / "a") == []
    with pytest.raises(FileNotFoundError):
        exchange(tmp_path / "a", tmp_path / "missing")
    monkeypatch.setattr(directory_swap, "_renameat2", lambda: None)
    with pytest.raises(ExchangeUnsupported):
        exchange(tmp_path / "a", tmp_path / "b")


def test_an_empty_folder_takes_an_output(tmp_path):
    (tmp_path / "empty").mkdir()
    write(tmp_path / "empty", 2)
    assert len(pd.read_parquet(tmp_path / "empty")) == 2


def test_a_failing_write_leaves_the_previous_output_and_no_staging_folder(tmp_path, monkeypatch):
    out = tmp_path / "scores"
    write(out, 3)
    before = snapshot(out)
    original = pd.DataFrame.to_parquet

    def half_then_fail(self, target, *args, **kwargs):
        original(self.head(1), target, *args, **kwargs)  # some bytes reach the disk ...
        raise OSError("disk full")  # ... then the write dies

    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write(out, 10)
    assert snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["scores"]


def test_content_that_appears_before_the_swap_is_not_replaced(tmp_path):
    out = tmp_path / "scores"
    target = prepare_output(str(out), "parquet", engine="pandas")
    target.begin(finished_run(), run_is_over)
    target.write_pandas(frame(3))
    out.mkdir()
    (out / "theirs.txt").write_text("someone else's")
    with pytest.raises(ParameterError, match="holds 1 entries this project did not write"):
        target.commit({})
    assert snapshot(out) == {"theirs.txt": b"someone else's"}
    assert [p.name for p in tmp_path.iterdir()] == ["scores"]


def test_commit_needs_a_write_and_a_write_needs_begin(tmp_path):
    target = prepare_output(str(tmp_path / "o"), "parquet", engine="pandas")
    with pytest.raises(RuntimeError, match="begin"):
        target.write_pandas(frame(1))
    with pytest.raises(RuntimeError, match="nothing written"):
        target.begin(finished_run(), run_is_over).commit({})


# --- leftovers of dead runs -----------------------------------------------------------------
def test_dead_runs_leftovers_go_and_everything_else_stays(tmp_path):
    out = tmp_path / "scores"
    write(out, 3)
    live, dead, killed = finished_run("RUNNING"), finished_run(), finished_run("KILLED")
    unknown_old, unknown_new = uuid.uuid4().hex, uuid.uuid4().hex
    doomed = [
        sibling(out, "staging", dead),
        sibling(out, "previous", killed),
        sibling(out, "staging", unknown_old),  # a run this store does not know, stale
    ]
    kept = [
        sibling(out, "staging", live),  # its writer is still running
        sibling(out, "staging", unknown_new),  # a run this store does not know, recent
        tmp_path / f".scores.staging-{dead}x",  # not the pattern
        tmp_path / f".other.staging-{dead}",  # another output's
        tmp_path / ".scores.staging-abc",
        tmp_path / "notes",
    ]
    for folder in doomed + kept:
        folder.mkdir()
        (folder / "f").write_text("x")
    old = time.time() - STALE_AFTER_SECONDS - 60
    os.utime(sibling(out, "staging", unknown_old), (old, old))
    write(out, 4)
    assert [p.exists() for p in doomed] == [False, False, False]
    assert all(p.exists() for p in kept)
    assert len(pd.read_parquet(out)) == 4


def test_a_swap_cut_between_its_renames_is_completed_or_undone(tmp_path):
    out = tmp_path / "scores"
    write(out, 3)
    dead = finished_run()
    os.rename(out, sibling(out, "previous", dead))  # the first rename happened ...
    write(tmp_path / "new", 8)
    os.rename(tmp_path / "new", sibling(out, "staging", dead))  # ... the second did not
    done = recover(out, MANIFEST, lambda left: left.run_id == dead)
    assert read_manifest(out)["rows"] == 8 and "completed" in done[0]
    assert [p.name for p in tmp_path.iterdir()] == ["scores"]

    os.rename(out, sibling(out, "previous", dead))  # no complete staging: undo instead
    done = recover(out, MANIFEST, lambda left: left.run_id == dead)
    assert read_manifest(out)["rows"] == 8 and "undid" in done[0]


def test_the_next_run_finishes_a_cut_swap_before_it_checks_the_location(tmp_path):
    out = tmp_path / "scores"
    write(out, 3)
    os.rename(out, sibling(out, "previous", finished_run()))
    assert prepare_output(str(out), "parquet", engine="pandas").existing is None
    write(out, 5)
    assert read_manifest(out)["rows"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["scores"]


# --- what may be replaced -------------------------------------------------------------------
def refusal(tmp_path, location, message, fmt="parquet", **kwargs):
    """prepare_output refuses with one line naming the parameter; nothing changes."""
    before = snapshot(tmp_path)
    with pytest.raises(ParameterError) as info:
        prepare_output(str(location), fmt, engine=kwargs.pop("engine", "pandas"), **kwargs)
    text = str(info.value)
    assert "\n" not in text and "parameter 'output_path'" in text and message in text, text
    assert snapshot(tmp_path) == before
    return text


def test_refused_locations(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "data_raw.csv").write_text("AGE\n1\n")
    (data / "data_batch_input.csv").write_text("AGE\n2\n")
    refusal(tmp_path, data, "holds 2 entries this project did not write (data_batch_input.csv")
    refusal(tmp_path, data / "data_raw.csv", "is a file, not an output folder")
    refusal(tmp_path, data / "data_raw.csv" / "out", f"is under {data / 'data_raw.csv'}, which is")
    (tmp_path / "link").symlink_to(data)
    refusal(tmp_path, tmp_path / "link", "is a symbolic link")
    refusal(tmp_path, "s3://bucket/out", "uses s3:, which is not supported for output")
    refusal(tmp_path, "/", "is not a folder to write")


def test_tables_and_folders_of_others_are_refused(tmp_path):
    delta = tmp_path / "table"
    (delta / "_delta_log").mkdir(parents=True)
    (delta / "_delta_log" / "00000000000000000000.json").write_text("{}")
    (delta / "part-0.parquet").write_bytes(b"PAR1")
    refusal(tmp_path, delta, "holds a Delta table this project did not write")
    foreign = tmp_path / "parquet"
    foreign.mkdir()
    frame(3).to_parquet(foreign / "part-0.parquet")
    refusal(tmp_path, foreign, "holds 1 entries this project did not write (part-0.parquet)")
    (foreign / MANIFEST).write_text(json.dumps({"written_by": "someone else"}))
    refusal(tmp_path, foreign, "holds 2 entries this project did not write")


def test_our_output_with_a_users_file_added_or_another_format_is_refused(tmp_path):
    out = tmp_path / "scores"
    write(out, 3)
    refusal(tmp_path, out, "holds a parquet output of this project, not csv", fmt="csv")
    (out / "notes.txt").write_text("mine, keep")
    refusal(tmp_path, out, "also holds files it did not write (notes.txt)")


def test_a_manifest_half_written_in_place_is_ours_and_a_users_look_alike_is_not(tmp_path):
    """A crash while the manifest of a Delta output is written in place leaves its hidden
    temporary file: the folder is still ours. The same name for another file is not."""
    out = tmp_path / "scores"
    out.mkdir()
    (out / f".{MANIFEST}.{'a' * 32}.tmp").write_text('{"written_by": "diab')
    assert prepare_output(str(out), "parquet", engine="pandas").existing is None
    write(out, 3)
    (out / f".{MANIFEST}.{'b' * 32}.tmp").write_text("{")
    assert prepare_output(str(out), "parquet", engine="pandas").existing["rows"] == 3
    (out / f".notes.txt.{'c' * 32}.tmp").write_text("mine, keep")
    refusal(tmp_path, out, "also holds files it did not write (.notes.txt.")


def test_an_output_apart_from_the_input(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    source = data / "in.csv"
    source.write_text("AGE\n1\n")
    others = {"input_path": str(source)}
    refusal(tmp_path, source, "is input_path itself", others=others)
    refusal(tmp_path, data, f"contains input_path {source}", others=others)
    others = {"input_path": str(data)}
    refusal(tmp_path, data / "scores", f"is inside input_path {data}", others=others)
    refusal(tmp_path, f"{data}/../data/./x/..", "is input_path itself", others=others)
    ok = {"input_path": str(source), "table": None, "remote": "abfss://c@a/x"}
    assert prepare_output(str(tmp_path / "scores"), "parquet", engine="pandas", others=ok)


def test_formats_by_engine():
    with pytest.raises(ParameterError, match="engine=pandas writes parquet or csv, got 'delta'"):
        output.check_format("pandas", "delta")
    with pytest.raises(ParameterError, match="engine=spark writes parquet or delta, got 'csv'"):
        output.check_format("spark", "csv")


def test_databricks_paths_seen_by_the_driver_and_by_spark(monkeypatch):
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    located = locations.locate("dbfs:/ml/out", "output_path")
    assert (str(located.path), located.spark) == ("/dbfs/ml/out", "dbfs:/ml/out")
    located = locations.locate("/dbfs/ml/out", "output_path")
    assert (str(located.path), located.spark) == ("/dbfs/ml/out", "dbfs:/ml/out")
    assert located.sibling(".x").spark == "dbfs:/ml/.x"
    located = locations.locate("/Volumes/main/d/out", "output_path")
    assert (str(located.path), located.spark) == ("/Volumes/main/d/out",) * 2
    with pytest.raises(ParameterError, match="on Databricks, write under /Volumes/ or dbfs:/"):
        locations.locate("/tmp/out", "output_path")
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION")
    assert str(locations.locate("file:///tmp/x/", "output_path").path) == "/tmp/x"


class DeltaStandIn:
    """What write_spark touches of a DataFrame, writing a Delta-like folder (Delta Lake is not
    installed here); it records whether the manifest was there before the first commit."""

    def __init__(self, rows):
        self.rows, self.claimed = rows, []
        self.sparkSession = self
        self.write = self.read = self

    def format(self, fmt):
        assert fmt == "delta"
        return self

    def mode(self, mode):
        return self

    def option(self, key, value):
        return self

    def save(self, path):
        self.claimed.append(read_manifest(Path(path)))
        log = Path(path) / "_delta_log"
        log.mkdir(exist_ok=True)
        (log / f"{len(os.listdir(log)):020d}.json").write_text("{}")
        (Path(path) / f"part-{uuid.uuid4().hex}.parquet").write_bytes(b"PAR1")

    def load(self, path):
        return self

    def count(self):
        return self.rows


def test_delta_is_claimed_before_its_first_commit_and_written_in_place(tmp_path):
    out = tmp_path / "table"
    for rows in (3, 5):
        stand_in = DeltaStandIn(rows)
        target = prepare_output(str(out), "delta", engine="spark", spark=object())
        target.begin(finished_run(), run_is_over)
        assert target.write_spark(stand_in) == rows
        manifest = target.commit({"model_version": "2"})
        assert stand_in.claimed[0] is not None  # marked as ours before Delta's commit
        assert read_manifest(out) == manifest and manifest["rows"] == rows
    assert len(os.listdir(out / "_delta_log")) == 2  # two commits: Delta keeps its history
    assert [p.name for p in tmp_path.iterdir()] == ["table"]
    refusal(tmp_path, out, "holds a delta output of this project, not parquet")


def test_a_delta_outputs_manifest_left_half_written_is_tidied_once_no_writer_can_own_it(tmp_path):
    out = tmp_path / "table"
    for rows, age in ((3, 0), (4, TEMP_STALE_SECONDS + 60)):
        leftover = out / f".{MANIFEST}.{'d' * 32}.tmp"
        if out.exists():  # what a writer killed while writing the manifest leaves
            leftover.write_text('{"written_by"')
            os.utime(leftover, (time.time() - age, time.time() - age))
        target = prepare_output(str(out), "delta", engine="spark", spark=object())
        target.begin(finished_run(), run_is_over)
        target.write_spark(DeltaStandIn(rows))
        target.commit({"model_version": "2"})
        assert read_manifest(out)["rows"] == rows
    assert not leftover.exists()
