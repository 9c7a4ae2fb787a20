"""Benchmark: real-time requests to MLflow's scoring server on loopback, side by side in one run.

A model is trained on ml_data and logged as the train step logs it (the contract check and
the linear prediction inside the pyfunc flavor: diabetes_mlops.serving.served_model);
`mlflow models serve --env-manager local` serves it, as `make serve` does, with 1 and with 2
uvicorn workers. Client threads in this process, each on its own keep-alive connection, send
1-row and 100-row `dataframe_split` requests at 1, 8 and 32 concurrent clients. Every cell stops
at --requests requests or --seconds seconds, whichever comes first. `GET /ping` at the same
concurrency is the floor of the HTTP stack (uvicorn, FastAPI, MLflow's middleware) with no model
work.

Where the time of a 1-row request goes is measured in this process, on the same objects the
server uses: MLflow's JSON parsing, its schema enforcement, our contract check, the prediction
and the JSON answer; what remains of the 1-client latency is the HTTP stack and the client.

    python ml_ops/benchmarks/serving.py --clients 1 8 32 --rows 1 100 --workers 1 2
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "ml_ops" / "benchmarks" / "results" / "serving.md"
TARGET_P99_MS = 25.0
TARGET_CLIENTS = 8


def log_model(local_root: Path) -> str:
    """Train on the shipped data and register the model as the train step does; its URI."""
    import mlflow

    from diabetes.contract import FEATURES
    from diabetes.reading import read_dataset
    from diabetes.training import TrainingConfig, train_model
    from diabetes_mlops.local.store import tracking_uri
    from diabetes_mlops.serving import served_model

    mlflow.set_tracking_uri(tracking_uri(local_root))
    frame = read_dataset(REPO / "ml_data" / "data_raw.csv", "training")
    result = train_model(frame, TrainingConfig())
    experiment = mlflow.create_experiment("bench", artifact_location=str(local_root / "art"))
    with mlflow.start_run(experiment_id=experiment):
        served_model.log_model(
            result.model, name="model", registered_model_name="bench",
            input_example=result.holdout[list(FEATURES)].head(3),
        )  # fmt: skip
    return "models:/bench/1"


def request_bodies(rows: int) -> bytes:
    from diabetes.contract import FEATURES
    from diabetes_mlops.local.serving import request_body

    batch = pd.read_csv(REPO / "ml_data" / "data_batch_input.csv")
    return request_body(batch[list(FEATURES)].head(rows), "dataframe_split")


def group_cpu_seconds(group: int) -> float:
    """CPU time (user + system) of every live process in a process group, from /proc."""
    total = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == group:  # fields after the name: state, ppid, pgrp, ...
                total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def load(server, method: str, path: str, body: bytes | None, clients: int, requests: int,
         seconds: float) -> dict[str, float]:  # fmt: skip
    """Latencies of `requests` calls (or as many as fit in `seconds`) from `clients` threads,
    and the server's CPU time per request."""
    host, port = server.url.removeprefix("http://").split(":")
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    sent = iter(range(requests))
    deadline = time.perf_counter() + seconds
    headers = {"Content-Type": "application/json"} if body else {}

    def client() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        for _ in range(3):  # warm the connection
            connection.request(method, path, body, headers)
            connection.getresponse().read()
        while time.perf_counter() < deadline:
            with lock:
                if next(sent, None) is None:
                    break
            start = time.perf_counter()
            connection.request(method, path, body, headers)
            answer = connection.getresponse()
            answer.read()
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                if answer.status != 200:
                    failures.append(str(answer.status))
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    cpu = group_cpu_seconds(server.process_group)
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    cpu = group_cpu_seconds(server.process_group) - cpu
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed: HTTP {failures[0]}")
    latencies.sort()
    return {
        "count": len(latencies),
        "p50": statistics.median(latencies) * 1e3,
        "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1e3,
        "rps": len(latencies) / wall,
        "server_cpu": cpu / (len(latencies) + 3 * clients) * 1e3,  # the warm-up calls included
    }


def breakdown(model_uri: str, body: bytes, calls: int) -> dict[str, float]:
    """Median milliseconds of each part of a 1-row request, on the server's own objects."""
    import mlflow
    from mlflow.pyfunc.scoring_server import _parse_json_data, invocations, predictions_to_json

    from diabetes.request_check import validate_request

    model = mlflow.pyfunc.load_model(model_uri)
    schema = model.metadata.get_input_schema()
    served = model._model_impl  # our ServedModel: the contract check and the prediction
    frame = _parse_json_data(body, model.metadata, schema).data
    features = validate_request(frame)
    answer = served.predict(frame)
    parts = {
        "JSON parsing (MLflow)": lambda: _parse_json_data(body, model.metadata, schema),
        "schema enforcement (MLflow)": None,  # pyfunc predict minus ours, below
        "contract check (validate_request)": lambda: validate_request(frame),
        "prediction (linear form)": lambda: served.form.predict(features),
        "JSON answer (MLflow)": lambda: predictions_to_json(answer, StringIO()),
        "the same prediction by scikit-learn (not used)": lambda: served.pipeline.predict(features),
        "pyfunc predict, total": lambda: model.predict(frame),
        "ours in pyfunc predict": lambda: served.predict(frame),
        "/invocations handler, total": lambda: invocations(body, "application/json", model, schema),
    }
    timed = {name: _median_ms(call, calls) for name, call in parts.items() if call is not None}
    timed["schema enforcement (MLflow)"] = max(
        0.0, timed["pyfunc predict, total"] - timed["ours in pyfunc predict"]
    )
    return timed


def _median_ms(call, calls: int) -> float:
    for _ in range(20):
        call()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--requests", type=int, default=1000, help="per cell, at most")
    parser.add_argument("--seconds", type=float, default=20.0, help="per cell, at most")
    parser.add_argument("--breakdown-calls", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

    import mlflow

    from diabetes_mlops.local.serving import running_server

    cells: list[tuple[int, str, int, int, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as folder:
        local_root = Path(folder)
        model_uri = log_model(local_root)
        bodies = {rows: request_bodies(rows) for rows in args.rows}
        for workers in args.workers:
            with running_server(local_root, model_uri, workers=workers) as server:
                for clients in args.clients:
                    ping = load(server, "GET", "/ping", None, clients, args.requests, args.seconds)
                    cells.append((workers, "GET /ping", 0, clients, ping))
                    print(_line(cells[-1]), flush=True)
                    for rows in args.rows:
                        result = load(server, "POST", "/invocations", bodies[rows], clients,
                                      args.requests, args.seconds)  # fmt: skip
                        cells.append((workers, "POST /invocations", rows, clients, result))
                        print(_line(cells[-1]), flush=True)
        parts = breakdown(model_uri, bodies[min(args.rows)], args.breakdown_calls)
    for name, ms in parts.items():
        print(f"{name}: {ms:.3f} ms")
    report = render(args, cells, parts, mlflow.__version__)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"\nwrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 0


def _line(cell) -> str:
    workers, what, rows, clients, r = cell
    size = f"{rows} row(s)" if rows else ""
    return (
        f"workers {workers} {what} {size} clients {clients}: {r['count']:.0f} requests,"
        f" p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, {r['rps']:.0f} req/s,"
        f" server CPU {r['server_cpu']:.2f} ms/request"
    )


def render(args, cells, parts, mlflow_version: str) -> str:
    import uvicorn

    cpu = platform.processor() or platform.machine()
    lines = [
        "# Real-time serving benchmark",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make bench-serving` on {os.cpu_count()}"
        f" cores ({cpu}), Python {platform.python_version()}, MLflow {mlflow_version}"
        f" (`mlflow models serve --env-manager local`), uvicorn {uvicorn.__version__}"
        f" with {_http_stack()}.",
        f"Each cell: at most {args.requests} requests or {args.seconds:.0f} s, from client"
        " threads in the benchmark's process (each on its own keep-alive connection, sharing the"
        " machine's cores with the server). `dataframe_split` bodies of the sample batch's first"
        " rows. `GET /ping` is the HTTP stack alone.",
        "",
        "| workers | request | clients | requests | p50 | p99 | requests/s | server CPU/request |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for workers, what, rows, clients, r in cells:
        label = f"{what}, {rows} row{'s' if rows > 1 else ''}" if rows else what
        lines.append(
            f"| {workers} | {label} | {clients} | {r['count']:.0f} | {r['p50']:.1f} ms"
            f" | {r['p99']:.1f} ms | {r['rps']:.0f} | {r['server_cpu']:.2f} ms |"
        )
    lines += ["", "Where a 1-row request's time goes (median of"
              f" {args.breakdown_calls} calls in one process, on the server's own objects):",
              "", "| part | median |", "| --- | ---: |"]  # fmt: skip
    for name, ms in parts.items():
        lines.append(f"| {name} | {ms:.3f} ms |")
    one = [c for c in cells if c[1] == "POST /invocations" and c[2] == 1 and c[3] == 1]
    if one:
        best = min(c[4]["p50"] for c in one)
        handler = parts["/invocations handler, total"]
        lines.append(
            f"| HTTP stack and client (1-client p50 {best:.2f} ms minus the handler) |"
            f" {max(0.0, best - handler):.3f} ms |"
        )
    lines += ["", "| target | measured | met |", "| --- | ---: | --- |"]
    at_target = [
        c for c in cells if c[1] == "POST /invocations" and c[2] == 1 and c[3] == TARGET_CLIENTS
    ]
    for workers, _, _, _, r in at_target:
        met = "yes" if r["p99"] <= TARGET_P99_MS else "no"
        lines.append(
            f"| p99 of a 1-row request at {TARGET_CLIENTS} clients ≤ {TARGET_P99_MS:.0f} ms,"
            f" {workers} worker(s) | {r['p99']:.1f} ms | {met} |"
        )
    one_row = [c for c in cells if c[1] == "POST /invocations" and c[2] == 1]
    if one_row:
        best = max(one_row, key=lambda c: c[4]["rps"])
        needed = TARGET_CLIENTS / (TARGET_P99_MS / 1e3)
        cpu = min(c[4]["server_cpu"] for c in one_row)
        ceiling = (os.cpu_count() or 1) / (cpu / 1e3)
        fixed = sum(parts[k] for k in ("JSON parsing (MLflow)", "schema enforcement (MLflow)"))
        ping = min(c[4]["server_cpu"] for c in cells if c[1] == "GET /ping")
        lines += [
            "",
            f"Why the target is out of reach: {TARGET_CLIENTS} clients that each send their next"
            " request when the last is answered keep a mean of clients / throughput waiting"
            f" (Little's law), so a p99 of {TARGET_P99_MS:.0f} ms at {TARGET_CLIENTS} clients"
            f" needs at least {needed:.0f} requests/s even if every request took the same time."
            f" The server spends at least {cpu:.2f} ms of CPU on each 1-row request (its process"
            f" group's CPU time over the requests answered), so {os.cpu_count()} cores answer at"
            f" most {ceiling:.0f} requests/s with nothing else running; it answered"
            f" {best[4]['rps']:.0f} at best ({best[0]} worker(s), {best[3]} clients). Of that"
            f" CPU, MLflow's JSON parsing and signature enforcement take {fixed:.2f} ms and our"
            f" contract check and prediction {parts['ours in pyfunc predict']:.2f} ms; the rest"
            " is uvicorn, FastAPI and MLflow's middleware and worker-thread hand-off around the"
            f" handler (`GET /ping` alone costs {ping:.2f} ms). Scikit-learn's own predict would"
            f" add {parts['the same prediction by scikit-learn (not used)']:.2f} ms more.",
        ]
    return "\n".join(lines) + "\n"


def _http_stack() -> str:
    found = []
    for module in ("uvloop", "httptools"):
        try:
            __import__(module)
            found.append(module)
        except ImportError:
            pass
    return " and ".join(found) if found else "asyncio and h11 (no uvloop, httptools)"


if __name__ == "__main__":
    sys.exit(main())
