"""The model behind MLflow's own scoring server: the contract travels in the logged model, `serve`
serves the champion, `serve-check` holds it to batch scoring. Real server processes on free
loopback ports, stopped by their own process group."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.exceptions import MlflowException

from diabetes.contract import FEATURES, NUMERIC_FEATURES
from diabetes_mlops.cli import main
from diabetes_mlops.local import serving, store
from diabetes_mlops.serving import served_model
from diabetes_mlops.steps import batch_score
from diabetes_mlops.tracking.runs import use_experiment

EXPERIMENT = "/Shared/diabetes-serving-tests"
ROW = {
    "AGE": 50.0, "SEX": "Male", "BMI": 25.0, "BP": 90.0, "S1": 150.0,
    "S2": 100.0, "S3": 50.0, "S4": 3.0, "S5": 4.5, "S6": None,
}  # fmt: skip


@pytest.fixture(scope="module")
def local_root(mlflow_store) -> Path:
    """The folder holding the session's sqlite store: what `serve --local-root` expects."""
    return Path(mlflow_store.removeprefix("sqlite:///")).parent


@pytest.fixture(scope="module")
def batch_output(champion, repo, tmp_path_factory) -> Path:
    name = champion.name
    out = tmp_path_factory.mktemp("scored") / "predictions"
    batch_score(
        None, str(repo / "ml_data" / "data_batch_input.csv"), str(out), name, EXPERIMENT,
        engine="pandas", output_format="parquet",
    )  # fmt: skip
    return out


def body(records: list[dict]) -> bytes:
    return json.dumps({"dataframe_records": records}).encode()


# --- the logged model --------------------------------------------------------------------------


def test_the_logged_model_has_a_plain_sklearn_flavor_and_a_guarded_pyfunc(champion):
    name, version = champion.name, champion.version
    folder = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}"))
    flavors = yaml.safe_load((folder / "MLmodel").read_text())["flavors"]
    assert flavors["python_function"]["loader_module"] == "diabetes_mlops.served_model"
    assert flavors["python_function"]["code"] == "code"
    assert flavors["sklearn"]["code"] is None  # batch loads never touch sys.path
    shipped = {p.relative_to(folder / "code").as_posix() for p in (folder / "code").rglob("*")}
    assert {
        "diabetes/contract.py",
        "diabetes/schema.py",
        "diabetes_mlops/serving/served_model.py",
    } <= (shipped)
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in shipped)


@pytest.mark.parametrize(
    "record, words",
    [
        ({**ROW, "SEX": "M"}, "column 'SEX': unknown value 'M'"),
        ({**ROW, "AGE": -5.0}, "column 'AGE': value -5 is outside the valid range"),
        ({k: v for k, v in ROW.items() if k != "S5"}, "required column 'S5' missing"),
        ({**ROW, "BMI": "heavy"}, "BMI"),
    ],
)
def test_the_model_itself_refuses_a_request_breaking_the_contract(champion, record, words):
    """What Databricks Model Serving runs too: the check is in the model, not in our server."""
    name, version = champion.name, champion.version
    served = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    with pytest.raises(MlflowException) as error:  # what the server's /invocations calls
        served.predict(pd.DataFrame([record]))
    assert words in error.value.message
    assert error.value.get_http_status_code() == 400


def test_the_served_model_predicts_what_the_pipeline_predicts(champion, repo):
    name, version, pipeline = champion.name, champion.version, champion.pipeline
    batch = pd.read_csv(repo / "ml_data" / "data_batch_input.csv")
    batch = batch.astype({c: "float64" for c in NUMERIC_FEATURES})  # as a server's parser types
    served = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    expected = pipeline.predict(batch[list(FEATURES)])
    assert np.abs(np.asarray(served.predict(batch)) - expected).max() <= 1e-9
    assert served.get_raw_model() is not None


# --- serve, serve-check, a real server ----------------------------------------------------------


def start_serve(local_root: Path, name: str, port: int) -> subprocess.Popen:
    """`diabetes-mlops serve` as `make serve` runs it, in its own process group."""
    return subprocess.Popen(
        [sys.executable, "-m", "diabetes_mlops.cli", "serve", "--local-root", str(local_root),
         "--model-name", name, "--port", str(port)],
        env=serving.server_environment(local_root),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


def nothing_listens(port: int) -> bool:
    try:
        socket.create_connection((serving.HOST, port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True


@pytest.mark.slow
def test_serve_serves_the_champion_agrees_with_batch_scoring_and_refuses_bad_requests(
    champion, local_root, batch_output, capsys
):
    name, version = champion.name, champion.version
    port = serving.free_port()
    process = start_serve(local_root, name, port)
    url = f"http://{serving.HOST}:{port}"
    try:
        serving.wait_ready(url, process)
        served = serving.read_served(local_root)
        assert (served.url, served.model_name, served.version) == (url, name, version)

        serving.serve_check(served, batch_output)  # both formats, 6 bad requests, still serving
        report = capsys.readouterr().out
        assert "dataframe_split: 442 predictions" in report
        assert "dataframe_records: 442 predictions" in report
        assert "an unknown SEX code: HTTP 400: request: column 'SEX'" in report
        assert "an empty body: HTTP 400" in report and "malformed JSON: HTTP 400" in report
        assert "missing SEX and BMI (imputed, as in batch scoring): HTTP 200" in report

        status, answer = serving.post(url, body([{**ROW, "S3": 0}]))
        assert status == 400 and "column 'S3'" in serving.error_message(answer)
        status, answer = serving.post(url, body([ROW]))
        assert status == 200 and len(answer["predictions"]) == 1
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # its own group: the CLI, mlflow and uvicorn
        output = process.communicate(timeout=30)[0].decode()
    assert f"serving {name} version {version} (the champion) on {url}" in output
    assert not (local_root / serving.STATE_FILE).exists()
    deadline = time.monotonic() + 10
    while not nothing_listens(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert nothing_listens(port)
    serving.check_port_free(port)  # `make serve` may start again at once


@pytest.fixture(scope="module")
def scoring_app(champion):
    """MLflow's scoring app (what `mlflow models serve` runs under uvicorn) for the champion,
    served by uvicorn on a free loopback port in a thread of this process: the same HTTP
    requests and answers as `make serve`, without starting a process and loading MLflow again.
    The served process itself is tested above (slow tier)."""
    import threading

    import uvicorn
    from mlflow.pyfunc import scoring_server

    local = mlflow.artifacts.download_artifacts(champion.uri)
    app = scoring_server.init(scoring_server.load_model_with_mlflow_config(local))
    port = serving.free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=serving.HOST, port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the in-process scoring app did not start"
    yield serving.Served(f"http://{serving.HOST}:{port}", champion.name, champion.version, pid=0)
    server.should_exit = True
    thread.join(timeout=10)


def test_the_scoring_app_answers_as_batch_scoring_and_refuses_bad_requests(
    scoring_app, batch_output, capsys
):
    serving.serve_check(scoring_app, batch_output)  # both formats, 6 bad requests, still serving
    report = capsys.readouterr().out
    assert "dataframe_split: 442 predictions" in report
    assert "dataframe_records: 442 predictions" in report
    assert "an unknown SEX code: HTTP 400: request: column 'SEX'" in report
    assert (
        "a JSON boolean for a number: HTTP 400: request: column 'AGE': expected numbers" in report
    )
    status, answer = serving.post(scoring_app.url, body([{**ROW, "S3": 0}]))
    assert status == 400 and answer["message"].startswith("request: column 'S3': value 0 is")
    status, answer = serving.post(scoring_app.url, body([ROW]))
    assert status == 200 and len(answer["predictions"]) == 1


def test_serve_check_fails_when_the_server_disagrees_with_batch_scoring(
    scoring_app, batch_output, tmp_path
):
    scored = pd.read_parquet(batch_output)
    scored["prediction"] += 1e-6
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    scored.to_parquet(wrong / "part-0.parquet")
    with pytest.raises(serving.ServingError, match=r"dataframe_split: row \d+ served"):
        serving.serve_check(scoring_app, wrong, report=lambda line: None)
    url, name, version = scoring_app.url, scoring_app.model_name, scoring_app.version
    with pytest.raises(serving.ServingError, match="scored by version"):
        serving.serve_check(
            serving.Served(url, name, str(int(version) + 1), 0), batch_output, print
        )


def test_serve_and_serve_check_fail_in_one_line_before_starting_anything(
    champion, local_root, tmp_path, capsys
):
    assert main(["serve", "--local-root", str(tmp_path), "--model-name", "x"]) == 1
    assert "no local MLflow store" in capsys.readouterr().err
    assert main(["serve", "--local-root", str(local_root), "--model-name", "nobody_here"]) == 1
    assert "has no version with alias 'champion'" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind((serving.HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["serve", "--local-root", str(local_root), "--model-name", champion.name]
        assert main([*args, "--port", str(port)]) == 1
    assert f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err
    assert main(["serve-check", "--local-root", str(tmp_path)]) == 1
    assert "start one with `make serve`" in capsys.readouterr().err
    gone = serving.Served(f"http://{serving.HOST}:{serving.free_port()}", "x", "1", pid=0)
    with pytest.raises(serving.ServingError, match="nothing answers .*is `make serve` running"):
        serving.predictions(gone.url, pd.DataFrame([ROW]), "dataframe_split")


def test_request_bodies_carry_missing_values_as_null():
    frame = pd.DataFrame([{**ROW, "BMI": np.nan}])
    split = json.loads(serving.request_body(frame, "dataframe_split"))["dataframe_split"]
    records = json.loads(serving.request_body(frame, "dataframe_records"))["dataframe_records"]
    assert split["data"][0][split["columns"].index("BMI")] is None
    assert records[0]["BMI"] is None and records[0]["S6"] is None
    with pytest.raises(ValueError, match="request format"):
        serving.request_body(frame, "instances")


def test_a_model_logged_before_the_contract_travelled_with_it_is_told_apart(champion):
    name, version, pipeline = champion.name, champion.version, champion.pipeline
    assert served_model.checks_requests(f"models:/{name}/{version}")
    use_experiment(EXPERIMENT)  # its artifacts under the session's root, not ./mlruns
    with mlflow.start_run():
        plain = mlflow.sklearn.log_model(pipeline, name="plain", pip_requirements=["scikit-learn"],
                                         serialization_format="cloudpickle")  # fmt: skip
    assert not served_model.checks_requests(plain.model_uri)


def test_a_model_logged_before_the_package_was_grouped_by_layer_still_loads_and_checks(tmp_path):
    """Every logged model names `diabetes_mlops.served_model` as its pyfunc loader. A process that
    has this package installed imports that module from the installed package, not from the
    model's code/ folder: the path must keep working after any reorganisation."""
    fixture = Path(__file__).parent / "data" / "model_logged_before_layers.zip"
    shutil.unpack_archive(fixture, tmp_path)
    rows = pd.read_csv(tmp_path / "rows.csv")
    expected = json.loads((tmp_path / "expected.json").read_text())["predictions"]
    model_folder = tmp_path / "model"
    assert served_model.checks_requests(str(model_folder))
    loaded = mlflow.pyfunc.load_model(str(model_folder))
    assert type(loaded.get_raw_model()).__name__ == "Pipeline"
    np.testing.assert_allclose(loaded.predict(rows), expected, rtol=1e-9)
    with pytest.raises(MlflowException, match="AGE"):
        loaded.predict(rows.assign(AGE=-5.0))


def test_a_model_logged_before_the_package_was_grouped_loads_its_own_code_beside_a_new_diabetes(
    tmp_path,
):
    """A process that imported the installed `diabetes` but not `diabetes_mlops` loads the model's
    own (older) diabetes_mlops from its code/ folder, which imports the request check from
    `diabetes.schema`: that path must keep answering."""
    shutil.unpack_archive(
        Path(__file__).parent / "data" / "model_logged_before_layers.zip", tmp_path
    )
    script = f"""
import json, sys
import pandas as pd
import diabetes, mlflow.pyfunc
model = mlflow.pyfunc.load_model({str(tmp_path / "model")!r})
loader = sys.modules["diabetes_mlops.served_model"].__file__
rows = pd.read_csv({str(tmp_path / "rows.csv")!r})
print(json.dumps({{"loader": loader, "predictions": list(model.predict(rows))}}))
"""
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["loader"].startswith(str(tmp_path / "model" / "code"))
    expected = json.loads((tmp_path / "expected.json").read_text())["predictions"]
    np.testing.assert_allclose(result["predictions"], expected, rtol=1e-9)


def test_the_ui_link_opens_the_local_experiment_on_its_runs(local_root, tmp_path):
    experiment = mlflow.get_experiment_by_name(EXPERIMENT) or mlflow.get_experiment(
        use_experiment(EXPERIMENT)
    )
    assert store.ui_url(local_root, EXPERIMENT) == (
        f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}"
        "?workflowType=machine_learning"
    )
    nothing = tmp_path / "no store"
    assert store.ui_url(nothing, EXPERIMENT).endswith(
        "/#/experiments?workflowType=machine_learning"
    )
    assert not nothing.exists()
