"""`make serve` and `make serve-check`: the local champion behind MLflow's own scoring server.

`serve` resolves the champion of the local store to a version number and serves that version
(`mlflow models serve --env-manager local`), so the version it reports is the one answering,
even if the alias moves while it runs. It records what it serves in `<local root>/serving.json`,
which `serve-check` reads to find the server and to know which batch output it must agree with.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from diabetes.contract import (
    CATEGORICAL_FEATURE,
    FEATURES,
    MODEL_VERSION,
    PREDICTION,
    SEX_VALUES,
)
from diabetes.scoring import PREDICTION_TOLERANCE, same_prediction
from diabetes_mlops.local.store import STORE_FILE, tracking_uri
from diabetes_mlops.runtime.errors import UserError
from diabetes_mlops.runtime.tcp import free_port
from diabetes_mlops.serving import served_model

HOST = "127.0.0.1"
STATE_FILE = "serving.json"
REQUEST_FORMATS = ("dataframe_split", "dataframe_records")


class ServingError(UserError, RuntimeError):
    """The server cannot start, does not answer, or answers differently from batch scoring."""


@dataclass(frozen=True)
class Served:
    """What a running `serve` serves, as recorded in serving.json."""

    url: str
    model_name: str
    version: str
    pid: int


def champion_version(local_root: Path, model_name: str) -> str:
    """The champion's version number in the local store, or a one-line error."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from diabetes_mlops.runtime.errors import ModelNotFoundError
    from diabetes_mlops.tracking.registry import CHAMPION, get_version

    if not (Path(local_root) / STORE_FILE).exists():
        raise ServingError(f"no local MLflow store in {local_root}: run `make demo` first")
    mlflow.set_tracking_uri(tracking_uri(local_root))
    mlflow.set_registry_uri(tracking_uri(local_root))
    try:
        return str(get_version(MlflowClient(), model_name, CHAMPION).version)
    except ModelNotFoundError as error:
        raise ServingError(str(error)) from None


def server_command(model_uri: str, port: int, workers: int = 1) -> list[str]:
    return [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
        "--env-manager", "local", "--host", HOST, "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip


def server_environment(local_root: Path) -> dict[str, str]:
    """MLflow starts `uvicorn` by name: put this interpreter's scripts first on PATH."""
    scripts = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_uri(local_root),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PATH": scripts + os.pathsep + os.environ.get("PATH", ""),
    }


def check_port_free(port: int) -> None:
    with socket.socket() as probe:
        # As uvicorn binds: connections of a stopped server lingering in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            raise ServingError(
                f"port {port} on {HOST} is in use: stop what runs there, or pick another with"
                " SERVE_PORT=<port>"
            ) from None


def serve(local_root: Path, model_name: str, port: int, workers: int = 1) -> int:
    """Serve the champion in the foreground until interrupted; the server's exit code."""
    version = champion_version(local_root, model_name)
    check_port_free(port)
    model_uri = f"models:/{model_name}/{version}"
    url = f"http://{HOST}:{port}"
    state = Path(local_root) / STATE_FILE
    print(f"serving {model_name} version {version} (the champion) on {url}/invocations")
    if not served_model.checks_requests(model_uri):
        print(
            f"  warning: version {version} was logged before the data contract travelled with"
            " the model: requests are not checked against it; train again to serve one that is"
        )
    print(f"  MLflow scoring server, {workers} worker(s); check it with `make serve-check`")
    process = subprocess.Popen(
        server_command(model_uri, port, workers), env=server_environment(local_root)
    )
    state.write_text(json.dumps(asdict(Served(url, model_name, version, process.pid))))
    previous = signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    try:
        return process.wait()
    except KeyboardInterrupt:  # Ctrl-C reaches the server too (same process group)
        return process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if _recorded_pid(state) == process.pid:
            state.unlink()


def _recorded_pid(state: Path) -> int | None:
    try:
        return int(json.loads(state.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_served(local_root: Path) -> Served:
    state = Path(local_root) / STATE_FILE
    try:
        return Served(**json.loads(state.read_text()))
    except FileNotFoundError:
        raise ServingError(f"no server recorded in {state}: start one with `make serve`") from None
    except (ValueError, TypeError) as error:
        raise ServingError(f"{state}: unreadable ({error}); restart `make serve`") from None


@dataclass(frozen=True)
class RunningServer:
    url: str
    process_group: int  # the server's own: mlflow's CLI and the uvicorn processes it starts


@contextmanager
def running_server(
    local_root: Path, model_uri: str, port: int | None = None, workers: int = 1
) -> Iterator[RunningServer]:
    """A scoring server in its own process group for tests and benchmarks: yields it once it
    answers /ping, and stops it (and only it) by its own process group on the way out."""
    port = port or free_port()
    process = subprocess.Popen(
        server_command(model_uri, port, workers),
        env=server_environment(local_root),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://{HOST}:{port}"
    try:
        wait_ready(url, process)
        yield RunningServer(url, process.pid)
    finally:
        stop(process)


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            tail = " | ".join(error.strip().splitlines()[-3:])
            raise ServingError(f"the scoring server exited with {process.returncode}: {tail}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise ServingError(f"the scoring server did not answer {url}/ping within {timeout:.0f} s")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group (mlflow's CLI and the uvicorn it starts)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process.stderr:
        process.stderr.close()


# --- requests ------------------------------------------------------------------------------------


def request_body(frame: pd.DataFrame, request_format: str) -> bytes:
    """A frame as MLflow's JSON input; missing values as null (JSON has no NaN)."""
    values = frame.astype(object).where(frame.notna(), None)
    if request_format == "dataframe_split":
        payload: Any = {"columns": list(frame.columns), "data": values.values.tolist()}
    elif request_format == "dataframe_records":
        payload = values.to_dict(orient="records")
    else:
        raise ValueError(f"request format must be one of {REQUEST_FORMATS}")
    return json.dumps({request_format: payload}, allow_nan=False).encode()


def post(url: str, body: bytes, timeout: float = 30.0) -> tuple[int, Any]:
    """(HTTP status, parsed JSON or text) of POST /invocations."""
    request = urllib.request.Request(
        f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ServingError(
            f"nothing answers {url} ({reason}): is `make serve` running (and done starting)?"
        ) from None
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def error_message(answer: Any) -> str:
    """The message of an MLflow error answer: MLflow prefixes a model's own error with the
    request's data ("Failed to predict data '...'. Error: <ours>"); keep what follows."""
    text = answer.get("message", "") if isinstance(answer, dict) else str(answer)
    return text.rsplit("\nError: ", 1)[-1].strip()


def predictions(url: str, frame: pd.DataFrame, request_format: str) -> list[float]:
    status, answer = post(url, request_body(frame, request_format))
    if status != 200:
        raise ServingError(f"{request_format}: HTTP {status}: {error_message(answer)[:300]}")
    return [float(p) for p in answer["predictions"]]


# --- serve-check ---------------------------------------------------------------------------------

# Requests that break the contract, each with words its answer must contain.
BAD_REQUESTS: tuple[tuple[str, Callable[[dict[str, Any]], bytes], str], ...] = (
    (
        "a non-numeric feature",
        lambda row: json.dumps({"dataframe_records": [{**row, "BMI": "heavy"}]}).encode(),
        "BMI",
    ),
    (
        "an unknown SEX code",
        lambda row: json.dumps({"dataframe_records": [{**row, "SEX": "M"}]}).encode(),
        "SEX",
    ),
    (
        "a missing feature",
        lambda row: json.dumps(
            {"dataframe_records": [{k: v for k, v in row.items() if k != "S5"}]}
        ).encode(),
        "S5",
    ),
    (
        "a JSON boolean for a number",
        lambda row: json.dumps({"dataframe_records": [{**row, "AGE": True}]}).encode(),
        "AGE': expected numbers, found booleans",
    ),
    (
        "a value out of range",
        lambda row: json.dumps({"dataframe_records": [{**row, "AGE": -3}]}).encode(),
        "AGE",
    ),
    ("malformed JSON", lambda row: b'{"dataframe_records": [', "JSON"),
    ("an empty body", lambda row: b"", "JSON"),
)


def serve_check(served: Served, batch_output: Path, report: Callable[[str], None] = print) -> None:
    """The server agrees with batch scoring on every row, in both JSON formats, and refuses
    requests that break the contract with a 4xx that names the problem, and keeps serving."""
    scored = read_batch_output(batch_output, served.version)
    unknown = scored[CATEGORICAL_FEATURE].notna() & ~scored[CATEGORICAL_FEATURE].isin(SEX_VALUES)
    if unknown.any():  # batch scoring tolerates a few; a request is its own batch: refused
        report(f"  {int(unknown.sum())} rows with unknown SEX codes left out (the server refuses)")
        scored = scored.loc[~unknown]
    features = scored[list(FEATURES)]
    expected = scored[PREDICTION].to_numpy()
    report(
        f"{served.url}: {served.model_name} version {served.version};"
        f" {len(scored)} rows of {batch_output}"
    )
    for request_format in REQUEST_FORMATS:
        answer = predictions(served.url, features, request_format)
        if len(answer) != len(expected):
            raise ServingError(
                f"{request_format}: {len(answer)} predictions for {len(expected)} rows"
            )
        for row, (got, own) in enumerate(zip(answer, expected, strict=True), start=1):
            if not same_prediction(got, own):
                raise ServingError(
                    f"{request_format}: row {row} served {got!r}, batch scoring gave {own!r}"
                    f" (|diff| {abs(got - own):.3g} > {PREDICTION_TOLERANCE:g})"
                )
        worst = max(abs(got - own) for got, own in zip(answer, expected, strict=True))
        report(f"  {request_format}: {len(answer)} predictions, max |diff| {worst:.2g}: ok")
    row = {k: (None if pd.isna(v) else v) for k, v in features.iloc[0].to_dict().items()}
    for what, body, words in BAD_REQUESTS:
        status, answer = post(served.url, body(row))
        message = error_message(answer)
        if not 400 <= status < 500 or words not in message:
            raise ServingError(
                f"{what}: expected a 4xx naming {words}, got HTTP {status}: {message[:200]}"
            )
        report(f"  {what}: HTTP {status}: {message.splitlines()[0][:150]}")
    missing = {**row, CATEGORICAL_FEATURE: None, "BMI": None}
    status, answer = post(served.url, json.dumps({"dataframe_records": [missing]}).encode())
    if status != 200 or not isinstance(answer, dict) or len(answer.get("predictions", [])) != 1:
        raise ServingError(f"missing SEX and BMI: expected an imputed prediction, got {answer}")
    report("  missing SEX and BMI (imputed, as in batch scoring): HTTP 200")
    predictions(served.url, features.head(1), "dataframe_split")  # still serving
    report("  still serving after the bad requests: ok")


def read_batch_output(path: Path, version: str) -> pd.DataFrame:
    """The batch-scoring output the server must agree with: scored by the same version."""
    try:
        scored = pd.read_parquet(path)
    except (OSError, ValueError) as error:
        raise ServingError(
            f"{path}: no batch-scoring output to compare with ({error});"
            " run `make run-local-batch-scoring`"
        ) from None
    versions = sorted({str(v) for v in scored[MODEL_VERSION].unique()})
    if versions != [str(version)]:
        raise ServingError(
            f"{path} was scored by version(s) {', '.join(versions)}, the server serves version"
            f" {version}: run `make run-local-batch-scoring` again, or restart `make serve`"
        )
    return scored
