"""A stateful fake Databricks workspace on 127.0.0.1 for the deployer and the remote runner.

The real databricks-sdk client talks to it over HTTP. It implements the endpoints this project
uses, checks the bearer token, records every request, and can inject faults: HTTP errors on
matching requests, answers lost after the server acted (`lose_answer`: the connection closes
with no answer, which the SDK retries as a network error), and failed job runs.

Serving endpoints follow Databricks' states: an update is IN_PROGRESS for `serving_update_polls`
GETs while the previous config keeps serving, then the new config is active (NOT_UPDATING) or,
for a version in `failing_versions`, dropped (UPDATE_FAILED). A version in `unready_versions`
does not get ready: an update serving it stays IN_PROGRESS (the previous config serving) for as
many more GETs as the value says (math.inf: until the test deletes the entry), as on Databricks,
where no other update is accepted meanwhile and none can be cancelled. Configs are checked as
the API does (unique entity names, one route per entity, shares adding up to 100: otherwise 400
INVALID_PARAMETER_VALUE), and inference-table names are stored lower-case, as Unity Catalog
does. Queries go to the entities by their traffic shares (a fixed rotation, so tests are
repeatable) and answer what `predict` returns.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

# How often the server thread looks for shutdown(): the wait each stop() costs.
POLL_SECONDS = 0.02
TOKEN = "dapi-fake-0123456789abcdef0123456789abcdef"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: bytes
    headers: dict[str, str]

    def text(self) -> str:
        """Everything but the Authorization header, for "the token never leaks" checks."""
        headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
        return f"{self.method} {self.path} {self.query} {headers} " + self.body.decode(
            "utf-8", "replace"
        )


@dataclass
class Fault:
    method: str
    path_contains: str
    status: int
    times: int
    error_code: str = "TEMPORARILY_UNAVAILABLE"
    lose: bool = False  # act, then close the connection without an answer


@dataclass
class RunPlan:
    """How the next runs of a job end: SUCCESS, or FAILED with an error per failing task; a
    task in `task_results` ends in that result_state instead (e.g. EXCLUDED, a condition task's
    dependent whose condition did not hold). `task_runs` changes a task's runs/get JSON once the
    run ended (a field set to None is left out): a task skipped because an upstream task failed
    may come without run_id and state details. `task_outputs` gives a task's
    runs/get-output answer (fields: https://docs.databricks.com/api/jobs/v2/get-run-output.md),
    e.g. an empty `error` with an `error_trace`, or `logs`."""

    result: str = "SUCCESS"
    task_errors: dict[str, str] = field(default_factory=dict)
    task_results: dict[str, str] = field(default_factory=dict)
    task_runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    task_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)


class ApiError(Exception):
    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message


def _not_found(what: str) -> ApiError:
    return ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"{what} does not exist")


class FakeWorkspace:
    def __init__(self, user: str = "alice@example.com", token: str = TOKEN) -> None:
        self.user = user
        self.token = token
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.run_plans: dict[str, RunPlan] = {}
        self.clusters: list[dict[str, Any]] = [
            {"cluster_id": "0101-000000-abcdefgh", "cluster_name": "diabetes-mlops"},
            {"cluster_id": "0101-000000-other000", "cluster_name": "someone-else"},
        ]
        self.jobs: dict[int, dict[str, Any]] = {}
        self.runs: dict[int, dict[str, Any]] = {}
        # Unity Catalog model versions, as MLflow's databricks-uc client reads and tags them:
        # (full name, version) -> {"tags": {...}, "run_id": ...}; aliases: (name, alias) -> version
        self.uc_versions: dict[tuple[str, str], dict[str, Any]] = {}
        self.uc_aliases: dict[tuple[str, str], str] = {}
        # MLflow runs on the workspace's tracking server: run id -> {"start_time": ms, "tags": {}}
        self.mlflow_runs: dict[str, dict[str, Any]] = {}
        self.objects: dict[str, dict[str, Any]] = {"/": {"object_type": "DIRECTORY"}}
        self.files: dict[str, bytes] = {}
        self.directories: set[str] = set()
        self.scopes: set[str] = set()
        self.experiments: dict[str, str] = {}
        self.experiment_tags: dict[str, dict[str, str]] = {}  # name -> tags
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.serving_update_polls = 2
        self.failing_versions: set[str] = set()
        # version -> further GETs an update serving it stays IN_PROGRESS (math.inf: until deleted)
        self.unready_versions: dict[str, float] = {}
        # (endpoint, served entity, dataframe_split) -> predictions; None answers an error.
        self.predict: Callable[[str, dict[str, Any], dict[str, Any]], list[Any]] | None = None
        self._ids = itertools.count(1001)
        self._writes_left: int | None = None
        self._dead = False
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeWorkspace:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _serve(self) -> None:
                fake._handle(self)

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # serve_forever's default poll of 0.5 s would be 0.5 s of waiting in every stop()
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": POLL_SECONDS}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # --- test controls ---------------------------------------------------------------------
    def fail(self, method: str, path_contains: str, status: int = 503, times: int = 1,
             error_code: str = "TEMPORARILY_UNAVAILABLE") -> None:  # fmt: skip
        self.faults.append(Fault(method, path_contains, status, times, error_code))

    def kill_client_after(self, writes: int) -> None:
        """A client killed right after the server carried out its `writes`-th change: that
        answer is lost, and every later request fails (500), until `revive()`."""
        self._writes_left = writes

    def revive(self) -> None:
        self._writes_left = None
        self._dead = False

    def lose_answer(self, method: str, path_contains: str, times: int = 1) -> None:
        """The next `times` matching requests are carried out, and their answers lost."""
        self.faults.append(Fault(method, path_contains, 0, times, lose=True))

    def calls(self, method: str, path_contains: str = "") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and path_contains in r.path]

    def uploaded_bytes(self) -> int:
        files = sum(len(r.body) for r in self.calls("PUT", "/api/2.0/fs/files"))
        imports = self.calls("POST", "/api/2.0/workspace/import")
        return files + sum(len(base64.b64decode(json.loads(r.body)["content"])) for r in imports)

    def add_job(self, settings: dict[str, Any]) -> int:
        job_id = next(self._ids)
        self.jobs[job_id] = {
            "job_id": job_id,
            "creator_user_name": self.user,
            "settings": settings,
            "created_time": 0,
        }
        return job_id

    # --- dispatch --------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parsed = urlparse(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        record = Recorded(handler.command, parsed.path, query, body, dict(handler.headers))
        with self._lock:
            self.requests.append(record)
            try:
                if parsed.path == "/.well-known/databricks-config":  # asked before auth: none here
                    raise _not_found("host metadata")
                if handler.headers.get("Authorization") != f"Bearer {self.token}":
                    raise ApiError(401, "UNAUTHENTICATED", "invalid token")
                if self._dead:
                    raise ApiError(500, "INTERNAL_ERROR", "the client was killed")
                self._inject_fault(record)
                status, payload, headers = self._route(record)
                if self._answer_lost(record) or self._killed(record):
                    handler.close_connection = True
                    return
            except ApiError as error:
                status, headers = error.status, {}
                payload = {"error_code": error.error_code, "message": error.message}
                if status in (429, 503):
                    headers["Retry-After"] = "0"
        data = b"" if payload is None else json.dumps(payload).encode()
        handler.send_response(status)
        for key, value in headers.items():
            if key != "Content-Length":
                handler.send_header(key, value)
        if payload is not None:
            handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(headers.get("Content-Length", len(data))))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)

    def _inject_fault(self, record: Recorded) -> None:
        for fault in self.faults:
            hit = fault.method == record.method and fault.path_contains in record.path
            if hit and fault.times > 0 and not fault.lose:
                fault.times -= 1
                raise ApiError(fault.status, fault.error_code, "injected fault")

    def _killed(self, record: Recorded) -> bool:
        if self._writes_left is None or record.method not in ("POST", "PUT", "PATCH", "DELETE"):
            return False
        self._writes_left -= 1
        self._dead = self._writes_left <= 0
        return self._dead

    def _answer_lost(self, record: Recorded) -> bool:
        for fault in self.faults:
            hit = fault.method == record.method and fault.path_contains in record.path
            if hit and fault.times > 0 and fault.lose:
                fault.times -= 1
                return True
        return False

    def _route(self, r: Recorded) -> tuple[int, Any, dict[str, str]]:
        path = r.path
        body = json.loads(r.body) if r.body and r.method == "POST" else {}
        if path.startswith("/api/2.0/fs/files/"):
            return self._files(r, unquote(path[len("/api/2.0/fs/files") :]))
        if path.startswith("/api/2.0/fs/directories/"):
            return self._directories(r, unquote(path[len("/api/2.0/fs/directories") :]))
        if path.startswith(("/api/2.0/serving-endpoints", "/serving-endpoints/")):
            return self._serving(r)
        routes = {
            ("GET", "/api/2.0/preview/scim/v2/Me"): lambda: {"id": "1", "userName": self.user},
            ("GET", "/api/2.1/clusters/list"): lambda: {"clusters": self.clusters},
            ("GET", "/api/2.2/jobs/list"): lambda: self._jobs_list(r.query),
            ("GET", "/api/2.2/jobs/get"): lambda: self._job_as_returned(int(r.query["job_id"])),
            ("POST", "/api/2.2/jobs/create"): lambda: {"job_id": self.add_job(_computed(body))},
            ("POST", "/api/2.2/jobs/reset"): lambda: self._jobs_reset(body),
            ("POST", "/api/2.2/jobs/delete"): lambda: self._jobs_delete(body),
            ("POST", "/api/2.2/jobs/run-now"): lambda: self._run_now(body),
            ("POST", "/api/2.2/jobs/runs/repair"): lambda: self._run_repair(body),
            ("GET", UC_REGISTRY + "model-versions/get"): lambda: self._uc_version(r.query),
            ("POST", UC_REGISTRY + "model-versions/set-tag"): lambda: self._uc_set_tag(body),
            ("GET", UC_REGISTRY + "registered-models/alias"): lambda: self._uc_alias(r.query),
            ("GET", UC_REGISTRY + "model-versions/search"): lambda: self._uc_search(r.query),
            ("GET", "/api/2.0/mlflow/runs/get"): lambda: self._mlflow_run(r.query["run_id"]),
            ("GET", "/api/2.2/jobs/runs/get"): lambda: self._run_get(int(r.query["run_id"])),
            ("GET", "/api/2.2/jobs/runs/get-output"): lambda: self._run_output(r.query),
            ("POST", "/api/2.0/workspace/mkdirs"): lambda: self._mkdirs(body["path"]),
            ("POST", "/api/2.0/workspace/import"): lambda: self._import(body),
            ("POST", "/api/2.0/workspace/delete"): lambda: self._delete(body),
            ("GET", "/api/2.0/workspace/get-status"): lambda: self._status(r.query["path"]),
            ("GET", "/api/2.0/workspace/export"): lambda: self._export(r.query["path"]),
            ("GET", "/api/2.0/secrets/scopes/list"): lambda: {
                "scopes": [{"name": s} for s in sorted(self.scopes)]
            },
            ("POST", "/api/2.0/secrets/scopes/create"): lambda: self._create_scope(body),
            ("GET", "/api/2.0/mlflow/experiments/get-by-name"): lambda: self._experiment(
                r.query["experiment_name"]
            ),
            ("POST", "/api/2.0/mlflow/experiments/create"): lambda: self._create_experiment(body),
        }
        if (r.method, path) not in routes:
            raise ApiError(404, "ENDPOINT_NOT_FOUND", f"fake has no {r.method} {path}")
        return 200, routes[(r.method, path)](), {}

    # --- files and directories (Unity Catalog volumes) --------------------------------------
    def _files(self, r: Recorded, path: str) -> tuple[int, Any, dict[str, str]]:
        if r.method == "PUT":
            if path in self.files and r.query.get("overwrite") == "false":
                raise ApiError(409, "ALREADY_EXISTS", f"{path} exists")
            self.files[path] = r.body
            self._add_parents(path)
            return 204, None, {}
        if path not in self.files:
            raise _not_found(path)
        if r.method == "HEAD":
            return 200, None, {"Content-Length": str(len(self.files[path]))}
        return 200, None, {}

    def _directories(self, r: Recorded, path: str) -> tuple[int, Any, dict[str, str]]:
        path = path.rstrip("/")
        if r.method == "PUT":
            self.directories.add(path)
            self._add_parents(path + "/x")
            return 204, None, {}
        if path not in self.directories:
            raise _not_found(path)
        return 200, None, {}

    def _add_parents(self, path: str) -> None:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.directories.add("/" + "/".join(parts[:i]))

    # --- workspace objects -----------------------------------------------------------------
    def _mkdirs(self, path: str) -> dict:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            current = "/" + "/".join(parts[:i])
            existing = self.objects.get(current)
            if existing and existing["object_type"] != "DIRECTORY":
                raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"{current} is not a folder")
            self.objects[current] = {"object_type": "DIRECTORY"}
        return {}

    def _import(self, body: dict) -> dict:
        path = body["path"]
        parent = path.rsplit("/", 1)[0] or "/"
        if self.objects.get(parent, {}).get("object_type") != "DIRECTORY":
            raise _not_found(f"parent folder {parent}")
        if path in self.objects and not body.get("overwrite"):
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"{path} already exists")
        kind = "NOTEBOOK" if body.get("format") == "SOURCE" else "FILE"
        existing = self.objects.get(path, {}).get("object_type")
        if existing is not None and existing != kind:
            # Whether overwrite may change an object's type is not documented: the fake takes
            # the stricter reading and refuses, so a client must delete the object first.
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"{path} exists as a {existing}")
        content = base64.b64decode(body["content"])
        self.objects[path] = {"object_type": kind, "content": content}
        if kind == "NOTEBOOK":
            self.objects[path]["language"] = body.get("language")
        return {}

    def add_file(self, path: str, content: bytes) -> None:
        """A workspace FILE (as `databricks workspace import --format AUTO` of a .py file without
        the notebook header, or a sync, leaves behind): test control."""
        self._mkdirs(path.rsplit("/", 1)[0])
        self.objects[path] = {"object_type": "FILE", "content": content}

    def _delete(self, body: dict) -> dict:
        """workspace/delete: RESOURCE_DOES_NOT_EXIST for no such path; a folder with anything in
        it only with recursive (DIRECTORY_NOT_EMPTY otherwise)."""
        path = body["path"].rstrip("/")
        if path not in self.objects:
            raise _not_found(path)
        inside = [p for p in self.objects if p.startswith(path + "/")]
        if inside and not body.get("recursive"):
            raise ApiError(400, "DIRECTORY_NOT_EMPTY", f"{path} is not empty")
        for item in [path, *inside]:
            del self.objects[item]
        return {}

    def _status(self, path: str) -> dict:
        """ObjectInfo: `language` only for a NOTEBOOK, `size` only for a FILE
        (https://docs.databricks.com/api/workspace-files/v1/notebook/object.md)."""
        if path not in self.objects:
            raise _not_found(path)
        item = self.objects[path]
        info = {"path": path, "object_type": item["object_type"]}
        if item["object_type"] == "NOTEBOOK" and item.get("language"):
            info["language"] = item["language"]
        if item["object_type"] == "FILE":
            info["size"] = len(item["content"])
        return info

    def _export(self, path: str) -> dict:
        if path not in self.objects or "content" not in self.objects[path]:
            raise _not_found(path)
        return {"content": base64.b64encode(self.objects[path]["content"]).decode()}

    # --- secrets and experiments -----------------------------------------------------------
    def _create_scope(self, body: dict) -> dict:
        if body["scope"] in self.scopes:
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"scope {body['scope']} exists")
        self.scopes.add(body["scope"])
        return {}

    def _experiment(self, name: str) -> dict:
        if name not in self.experiments:
            raise _not_found(f"experiment {name}")
        tags = [{"key": k, "value": v} for k, v in self.experiment_tags.get(name, {}).items()]
        experiment = {"experiment_id": self.experiments[name], "name": name}
        return {"experiment": {**experiment, **({"tags": tags} if tags else {})}}

    def _create_experiment(self, body: dict) -> dict:
        name = body["name"]
        if name in self.experiments:
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"experiment {name} exists")
        parent = name.rsplit("/", 1)[0]
        if self.objects.get(parent, {}).get("object_type") != "DIRECTORY":
            raise _not_found(f"parent folder {parent}")
        self.experiments[name] = str(next(self._ids))
        self.experiment_tags[name] = {t["key"]: t["value"] for t in body.get("tags") or []}
        return {"experiment_id": self.experiments[name]}

    # --- jobs and runs ---------------------------------------------------------------------
    def _jobs_list(self, query: dict[str, str]) -> dict:
        name = query.get("name")
        jobs = [
            {k: v for k, v in job.items()}
            for job in self.jobs.values()
            if name is None or job["settings"].get("name", "").lower() == name.lower()
        ]
        return {"jobs": jobs, "has_more": False}

    def _job(self, job_id: int) -> dict:
        if job_id not in self.jobs:
            raise _not_found(f"job {job_id}")
        return self.jobs[job_id]

    def _jobs_reset(self, body: dict) -> dict:
        """A reset replaces the settings whole, except run_as: new settings without it keep the
        identity the job had (as the Jobs API does: a cloud-recorded acceptance test of the
        Databricks CLI shows a hand-set run_as surviving a reset that omits it)."""
        job = self._job(int(body["job_id"]))
        _computed(body["new_settings"])
        kept = {"run_as": job["settings"]["run_as"]} if "run_as" in job["settings"] else {}
        job["settings"] = {**kept, **body["new_settings"]}
        return {}

    def _job_as_returned(self, job_id: int) -> dict:
        """jobs/get: `self.jobs` keeps the settings as sent; the answer has the documented
        defaults filled in for what the request left out (the values that
        diabetes_mlops.deploy.jobs.JOB_DEFAULTS and TASK_DEFAULTS cite), and run_as naming the
        creator, the user a job runs as by default."""
        job = self._job(job_id)
        return {**job, "settings": _filled(job["settings"], job["creator_user_name"])}

    def _jobs_delete(self, body: dict) -> dict:
        self._job(int(body["job_id"]))
        del self.jobs[int(body["job_id"])]
        return {}

    def _run_now(self, body: dict) -> dict:
        job = self._job(int(body["job_id"]))
        run_id = next(self._ids)
        tasks = [
            {"task_key": t["task_key"], "run_id": next(self._ids)} for t in job["settings"]["tasks"]
        ]
        self.runs[run_id] = {
            "run_id": run_id,
            "job_id": job["job_id"],
            "job_parameters": body.get("job_parameters") or {},
            "plan": self.run_plans.get(job["settings"]["name"], RunPlan()),
            "polls": 0,
            "tasks": tasks,
            "start_time": int(time.time() * 1000),
        }
        return {"run_id": run_id, "number_in_job": run_id}

    def _run_get(self, run_id: int) -> dict:
        if run_id not in self.runs:
            raise _not_found(f"run {run_id}")
        run = self.runs[run_id]
        run["polls"] += 1
        phase = ["PENDING", "RUNNING", "TERMINATED"][min(run["polls"] - 1, 2)]
        plan: RunPlan = run["plan"]
        tasks = []
        for index, task in enumerate(run["tasks"]):
            state = {"life_cycle_state": phase if index == 0 else "PENDING"}
            if phase == "TERMINATED":
                failed = task["task_key"] in plan.task_errors
                result = plan.task_results.get(task["task_key"])
                state = {
                    "life_cycle_state": "TERMINATED",
                    "result_state": result or ("FAILED" if failed else "SUCCESS"),
                }
            answer = {**task, "state": state}
            if phase == "TERMINATED":
                answer.update(plan.task_runs.get(task["task_key"], {}))
            tasks.append({k: v for k, v in answer.items() if v is not None})
        state = {"life_cycle_state": phase}
        if phase == "TERMINATED":
            state["result_state"] = plan.result
        return {
            "run_id": run_id,
            "job_id": run["job_id"],
            "run_page_url": f"{self.url}/#job/{run['job_id']}/run/{run_id}",
            "state": state,
            "tasks": tasks,
            "start_time": run["start_time"],
            "repair_history": [{"id": r["id"], "type": r["type"]} for r in run.get("repairs", [])],
        }

    def _run_repair(self, body: dict) -> dict:
        """jobs/runs/repair: a run that ended FAILED runs its rerun_tasks (and, with
        rerun_dependent_tasks, the tasks after them) again, here to SUCCESS. A run repaired
        before needs latest_repair_id, as the API documents
        (https://docs.databricks.com/api/workspace/jobs/repairrun)."""
        run = self.runs.get(int(body["run_id"]))
        if run is None:
            raise _not_found(f"run {body['run_id']}")
        if run["plan"].result != "FAILED":
            raise ApiError(400, "INVALID_STATE", f"run {body['run_id']} did not fail")
        repairs = run.setdefault("repairs", [])
        if repairs and body.get("latest_repair_id") != repairs[-1]["id"]:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "latest_repair_id is not the latest")
        repair_id = next(self._ids)
        repairs.append({"id": repair_id, "type": "REPAIR", **body})
        run["plan"], run["polls"] = RunPlan(), 0
        return {"repair_id": repair_id}

    def _uc_version(self, query: dict[str, str]) -> dict:
        key = (query["name"], query["version"])
        if key not in self.uc_versions:
            raise _not_found(f"model version {key[0]}/{key[1]}")
        found = self.uc_versions[key]
        aliases = [a for (name, a), v in self.uc_aliases.items() if name == key[0] and v == key[1]]
        tags = [{"key": k, "value": v} for k, v in found.get("tags", {}).items()]
        return {
            "model_version": {
                "name": key[0], "version": key[1], "status": "READY", "tags": tags,
                "aliases": aliases, "run_id": found.get("run_id", ""),
                "creation_timestamp": found.get("creation_timestamp", 0),
            }
        }  # fmt: skip

    def _uc_search(self, query: dict[str, str]) -> dict:
        """Search by name only, answered without tags, as Unity Catalog answers it."""
        name = re.fullmatch(r"name\s*=\s*'(.*)'", query.get("filter", ""))
        if name is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "the fake searches by name = '...'")
        found = [{"name": n, "version": v} for (n, v) in self.uc_versions if n == name.group(1)]
        return {"model_versions": found}

    def _mlflow_run(self, run_id: str) -> dict:
        if run_id not in self.mlflow_runs:
            raise _not_found(f"run {run_id}")
        run = self.mlflow_runs[run_id]
        info = {"run_id": run_id, "run_uuid": run_id, "experiment_id": "1", "status": "FINISHED",
                "start_time": run["start_time"], "lifecycle_stage": "active"}  # fmt: skip
        tags = [{"key": k, "value": v} for k, v in run["tags"].items()]
        return {"run": {"info": info, "data": {"tags": tags, "params": [], "metrics": []}}}

    def _uc_set_tag(self, body: dict) -> dict:
        key = (body["name"], str(body["version"]))
        if key not in self.uc_versions:
            raise _not_found(f"model version {key[0]}/{key[1]}")
        self.uc_versions[key].setdefault("tags", {})[body["key"]] = body["value"]
        return {}

    def _uc_alias(self, query: dict[str, str]) -> dict:
        version = self.uc_aliases.get((query["name"], query["alias"]))
        if version is None:
            raise _not_found(f"alias {query['alias']} of {query['name']}")
        return self._uc_version({"name": query["name"], "version": version})

    def _run_output(self, query: dict[str, str]) -> dict:
        """400 for a missing or invalid run_id, as the API documents
        (https://docs.databricks.com/api/jobs/v2/get-run-output.md)."""
        if not query.get("run_id", "").isdigit():
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "missing or invalid run_id")
        task_run = int(query["run_id"])
        for run in self.runs.values():
            for task in run["tasks"]:
                if task["run_id"] == task_run:
                    if task["task_key"] in run["plan"].task_outputs:
                        return run["plan"].task_outputs[task["task_key"]]
                    error = run["plan"].task_errors.get(task["task_key"])
                    return (
                        {"error": error, "error_trace": f"Traceback ...\n{error}"} if error else {}
                    )
        raise _not_found(f"run {task_run}")

    # --- serving endpoints -----------------------------------------------------------------
    def served(self, name: str) -> dict[str, int]:
        """version -> traffic percentage of what the endpoint serves now."""
        config = self.endpoints[name]["config"] or {"served_entities": [], "traffic_config": {}}
        versions = {e["name"]: e["entity_version"] for e in config["served_entities"]}
        routes = config["traffic_config"].get("routes") or []
        return {versions[r["served_model_name"]]: r["traffic_percentage"] for r in routes}

    def _serving(self, r: Recorded) -> tuple[int, Any, dict[str, str]]:
        body = json.loads(r.body) if r.body else {}
        if r.path.startswith("/serving-endpoints/"):  # the data plane: /<name>/invocations
            name, _, action = r.path[len("/serving-endpoints/") :].partition("/")
            if r.method == "POST" and action == "invocations":
                return self._invoke(name, body)
            raise ApiError(404, "ENDPOINT_NOT_FOUND", f"fake has no {r.method} {r.path}")
        rest = r.path[len("/api/2.0/serving-endpoints") :].strip("/")
        name, _, action = rest.partition("/")
        if r.method == "POST" and not rest:
            return 200, self._create_endpoint(body), {}
        if name not in self.endpoints:
            raise _not_found(f"serving endpoint {name}")
        if r.method == "GET" and not action:
            return 200, self._endpoint(name, poll=True), {}
        if r.method == "PUT" and action == "config":
            return 200, self._update_config(name, body), {}
        if r.method == "PATCH" and action == "tags":
            tags = self.endpoints[name]["tags"]
            tags.update({t["key"]: t.get("value", "") for t in body.get("add_tags") or []})
            for key in body.get("delete_tags") or []:
                tags.pop(key, None)
            return 200, {"tags": [{"key": k, "value": v} for k, v in tags.items()]}, {}
        if r.method == "PUT" and action == "ai-gateway":
            self.endpoints[name]["ai_gateway"] = _lower_table_names(body)
            return 200, body, {}
        if r.method == "DELETE" and not action:
            del self.endpoints[name]
            return 200, {}, {}
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"fake has no {r.method} {r.path}")

    def _create_endpoint(self, body: dict) -> dict:
        name = body["name"]
        if name in self.endpoints:
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"endpoint {name} exists")
        self.endpoints[name] = {
            "name": name,
            "config": None,
            "pending": None,
            "update": "NOT_UPDATING",
            "ai_gateway": _lower_table_names(body.get("ai_gateway")),
            "queries": 0,
            "tags": {t["key"]: t.get("value", "") for t in body.get("tags") or []},
        }
        try:
            self._start_update(name, body.get("config") or {})
        except ApiError:
            del self.endpoints[name]  # a refused config creates no endpoint
            raise
        return self._endpoint(name)

    def _update_config(self, name: str, body: dict) -> dict:
        if self.endpoints[name]["pending"] is not None:  # as Databricks: one update at a time
            raise ApiError(409, "RESOURCE_CONFLICT", f"endpoint {name} has an update in progress")
        self._start_update(name, body)
        return self._endpoint(name)

    def _start_update(self, name: str, config: dict) -> None:
        entities = config.get("served_entities") or []
        routes = (config.get("traffic_config") or {}).get("routes")
        if not routes and len(entities) == 1:
            routes = [{"served_model_name": entities[0]["name"], "traffic_percentage": 100}]
        _check_config(entities, routes or [])
        endpoint = self.endpoints[name]
        endpoint["pending"] = {"served_entities": entities, "traffic_config": {"routes": routes}}
        endpoint["polls_left"] = self.serving_update_polls
        endpoint["update"] = "IN_PROGRESS"

    def _endpoint(self, name: str, poll: bool = False) -> dict:
        endpoint = self.endpoints[name]
        if poll and endpoint["pending"] is not None:
            endpoint["polls_left"] -= 1
            versions = {e["entity_version"] for e in endpoint["pending"]["served_entities"]}
            unready = [v for v in versions if self.unready_versions.get(v, 0) > 0]
            if endpoint["polls_left"] < 0 and unready:  # still deploying: stays IN_PROGRESS
                for version in unready:
                    self.unready_versions[version] -= 1
            elif endpoint["polls_left"] < 0:
                pending, endpoint["pending"] = endpoint["pending"], None
                if versions & self.failing_versions:
                    endpoint["update"] = "UPDATE_FAILED"
                else:
                    endpoint["config"], endpoint["update"] = pending, "NOT_UPDATING"
        config = endpoint["config"]
        ready = "READY" if config else "NOT_READY"  # an active config is one that got ready
        answer = {
            "name": name,
            "id": f"{name}-id",
            "state": {"ready": ready, "config_update": endpoint["update"]},
        }
        if config is not None:
            answer["config"] = config
        if endpoint["pending"] is not None:
            answer["pending_config"] = endpoint["pending"]
        if endpoint["ai_gateway"]:
            answer["ai_gateway"] = endpoint["ai_gateway"]
        if endpoint.get("tags"):
            answer["tags"] = [{"key": k, "value": v} for k, v in endpoint["tags"].items()]
        return answer

    def _invoke(self, name: str, body: dict) -> tuple[int, Any, dict[str, str]]:
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            raise _not_found(f"serving endpoint {name}")
        if endpoint["config"] is None:
            raise ApiError(400, "BAD_REQUEST", f"endpoint {name} is not ready")
        slot = endpoint["queries"] * 37 % 100  # 37 is prime to 100: every slot, evenly
        endpoint["queries"] += 1
        config = endpoint["config"]
        for route in config["traffic_config"]["routes"]:
            if slot < route["traffic_percentage"]:
                break
            slot -= route["traffic_percentage"]
        served = route["served_model_name"]
        entity = next(e for e in config["served_entities"] if e["name"] == served)
        if self.predict is None:
            raise ApiError(400, "BAD_REQUEST", "the fake has no predictions (set fake.predict)")
        predictions = self.predict(name, entity, body["dataframe_split"])
        return 200, {"predictions": predictions}, {"served-model-name": served}


def _check_config(entities: list[dict], routes: list[dict]) -> None:
    """What the serving API refuses (400 INVALID_PARAMETER_VALUE): entity names that repeat,
    routes that do not name the served entities one each, shares that are not integers from 0 to
    100 adding up to 100. (Route: databricks-sdk's docstring; the rest assumed from the
    documented examples.)"""
    names = [e.get("name") for e in entities]
    routed = [r.get("served_model_name") or r.get("served_entity_name") for r in routes]
    shares = [r.get("traffic_percentage") for r in routes]
    problem = None
    if not entities:
        problem = "a config serves at least one entity"
    elif None in names or len(set(names)) != len(names):
        problem = f"served entity names must be set and unique, got {names}"
    elif sorted(map(str, routed)) != sorted(map(str, names)):
        problem = f"routes {routed} do not name the served entities {names} one each"
    elif not all(isinstance(p, int) and 0 <= p <= 100 for p in shares) or sum(shares) != 100:
        problem = f"traffic percentages {shares} must be integers from 0 to 100 adding up to 100"
    if problem:
        raise ApiError(400, "INVALID_PARAMETER_VALUE", problem)


def _lower_table_names(gateway: dict | None) -> dict | None:
    """Unity Catalog stores names lower-case: so does the fake's inference table config."""
    if not gateway or not gateway.get("inference_table_config"):
        return gateway
    table = dict(gateway["inference_table_config"])
    for key in ("catalog_name", "schema_name", "table_name_prefix"):
        if isinstance(table.get(key), str):
            table[key] = table[key].lower()
    return {**gateway, "inference_table_config": table}


# Task types that run on no compute of their own (a condition; a run_job task: its job's).
_NO_COMPUTE = ("condition_task", "run_job_task")
_CLUSTER = ("existing_cluster_id", "new_cluster", "job_cluster_key")


UC_REGISTRY = "/api/2.0/mlflow/unity-catalog/"


def _computed(settings: dict) -> dict:
    """The settings, if their compute is one the Jobs API takes; a 400 otherwise. A task naming
    no cluster runs on serverless compute: it takes no `libraries` (its packages come from the
    job environment its environment_key names), and each job environment gives a version
    (JobSettings.environments and compute.Environment in databricks-sdk 0.156.0)."""
    environments = {}
    for environment in settings.get("environments") or []:
        spec = environment.get("spec") or {}
        if not (spec.get("environment_version") or spec.get("client")):
            raise ApiError(
                400,
                "INVALID_PARAMETER_VALUE",
                f"environment {environment.get('environment_key')}: environment_version is"
                " required",
            )
        environments[environment.get("environment_key")] = spec
    for task in settings.get("tasks") or []:
        if any(kind in task for kind in _NO_COMPUTE) or any(key in task for key in _CLUSTER):
            continue
        if task.get("libraries"):
            raise ApiError(
                400,
                "INVALID_PARAMETER_VALUE",
                f"task {task['task_key']}: libraries are not supported on serverless compute;"
                " give them as dependencies of the job environment",
            )
        key = task.get("environment_key")
        if key is not None and key not in environments:
            raise ApiError(
                400,
                "INVALID_PARAMETER_VALUE",
                f"task {task['task_key']}: environment_key {key} names no job environment",
            )
    return settings


def _filled(settings: dict, creator: str) -> dict:
    """Job settings with the Jobs API's documented defaults for what they leave out."""
    filled = {
        "format": "MULTI_TASK",
        "max_concurrent_runs": 1,
        "timeout_seconds": 0,
        "email_notifications": {},
        "webhook_notifications": {},
        "queue": {"enabled": True},
        "run_as": {"user_name": creator},
        **settings,
    }
    filled["tasks"] = [
        {
            "timeout_seconds": 0,
            "email_notifications": {},
            "run_if": "ALL_SUCCESS",
            **task,
        }
        for task in settings.get("tasks") or []
    ]
    return filled
