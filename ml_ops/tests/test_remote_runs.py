"""Remote runs and redeploys that tell the truth, against the fake workspace and the real SDK:
every task of a failed run reported (skipped ones have no run_id), the exception line when a
task's error is empty, a host that cannot be reached failing in seconds with one line, a
workspace FILE where a notebook belongs re-imported as a notebook, and a redeploy that changes
nothing resetting no job."""

import copy
import json
import re
import socket
import struct
import threading
import time

import pytest
from databricks.sdk.service.jobs import JobSettings
from fake_workspace import RunPlan

from diabetes_mlops.cli import main
from diabetes_mlops.deploy import reachability
from diabetes_mlops.deploy.jobs import same_settings

TRAINING = "diabetes-model-training"
NOTEBOOKS = "/Workspace/Shared/diabetes-mlops/staging/notebooks"


def deploy(project, *extra):
    return main(["deploy", "--target", "staging", "--repo", str(project),
                 "--config", str(project / "deploy.yml"), *extra])  # fmt: skip


def run(project, job=TRAINING):
    return main(["run", job, "--target", "staging", "--poll-seconds", "0", "--repo", str(project),
                 "--config", str(project / "deploy.yml")])  # fmt: skip


def lines_of(out):
    return [line for line in out.splitlines() if line.startswith("task ")]


# --- 1. a failed run reports every task; a skipped one may have no run_id ---------------------
def test_a_failed_run_lists_every_task_even_those_without_run_id(fake_workspace, project, capsys):
    assert deploy(project) == 0
    fake_workspace.run_plans[TRAINING] = RunPlan(
        "FAILED",
        {"train": "ValueError: raw.csv: no rows"},
        task_runs={
            # Skipped after train failed: no run_id, no state details at all.
            "validate": {"run_id": None, "state": None},
            # The same, as a result state with no run_id and no message.
            "approval": {
                "run_id": None,
                "state": {"life_cycle_state": "TERMINATED", "result_state": "UPSTREAM_FAILED"},
            },
            "promote": {
                "run_id": None,
                "state": {"life_cycle_state": "TERMINATED", "result_state": "UPSTREAM_FAILED"},
            },
            # Only the newer `status` field, naming the SKIPPED termination code.
            "deploy_serving": {
                "run_id": None,
                "state": None,
                "status": {"state": "TERMINATED", "termination_details": {"code": "SKIPPED"}},
            },
        },
    )
    capsys.readouterr()
    assert run(project) == 1
    out = capsys.readouterr().out
    assert f"FAILED: {fake_workspace.url}" in out  # the overall result
    assert lines_of(out) == [
        "task train FAILED: ValueError: raw.csv: no rows",
        "task validate NO_STATE_REPORTED: it did not run (no run of its own)",
        "task approval UPSTREAM_FAILED (skipped: an upstream task failed)",
        "task promote UPSTREAM_FAILED (skipped: an upstream task failed)",
        "task deploy_serving SKIPPED (skipped: it never ran)",
    ]
    outputs = fake_workspace.calls("GET", "/jobs/runs/get-output")
    assert len(outputs) == 1 and outputs[0].query["run_id"].isdigit()  # train's only


def test_excluded_and_upstream_canceled_tasks_are_named_for_what_they_are(
    fake_workspace, project, capsys
):
    assert deploy(project) == 0
    fake_workspace.run_plans[TRAINING] = RunPlan(
        "CANCELED",
        task_results={
            "train": "CANCELED", "validate": "UPSTREAM_CANCELED", "approval": "UPSTREAM_CANCELED"
        },
        task_runs={"promote": {"run_id": None, "state": {"result_state": "EXCLUDED"}}},
    )  # fmt: skip
    capsys.readouterr()
    assert run(project) == 1
    out = lines_of(capsys.readouterr().out)
    assert out[1:4] == [
        "task validate UPSTREAM_CANCELED (skipped: an upstream task was canceled)",
        "task approval UPSTREAM_CANCELED (skipped: an upstream task was canceled)",
        "task promote EXCLUDED (skipped: its condition did not hold)",
    ]
    assert out[0].startswith("task train CANCELED: ") and out[4] == "task deploy_serving SUCCESS"


# --- 2. an empty error: the exception line of error_trace, else the tail of the logs ------------
NOTEBOOK_TRACE = (
    "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m\n"
    "\x1b[0;31mNameError\x1b[0m                                 Traceback (most recent call last)\n"
    "File \x1b[0;32m<command-4242>, line 3\x1b[0m\n"
    "\x1b[0;32m----> 3\x1b[0m train(x)\n"
    "\n"
    "\x1b[0;31mNameError\x1b[0m: name 'x' is not defined\n"
)
EXITED = {"life_cycle_state": "TERMINATED", "result_state": "FAILED",
          "state_message": "Task exited with code 1"}  # fmt: skip


def test_an_empty_error_shows_the_exception_line_of_the_trace(fake_workspace, project, capsys):
    assert deploy(project) == 0
    fake_workspace.run_plans[TRAINING] = RunPlan(
        "FAILED",
        task_runs={"train": {"state": EXITED}},
        task_outputs={"train": {"error": "", "error_trace": NOTEBOOK_TRACE}},
    )
    capsys.readouterr()
    assert run(project) == 1
    out = capsys.readouterr().out
    assert "task train FAILED: NameError: name 'x' is not defined" in out
    assert "Task exited with code 1" not in out and "\x1b" not in out


def test_without_error_or_trace_the_logs_tail_is_shown(fake_workspace, project, capsys):
    assert deploy(project) == 0
    logs = "\n".join(f"step {i}" for i in range(1, 9)) + "\n\nOSError: disk full\n"
    fake_workspace.run_plans[TRAINING] = RunPlan(
        "FAILED",
        task_runs={"train": {"state": EXITED}},
        task_outputs={"train": {"logs": logs, "logs_truncated": False}},
    )
    capsys.readouterr()
    assert run(project) == 1
    out = capsys.readouterr().out.splitlines()
    at = out.index("task train FAILED: Task exited with code 1")
    tail = ["step 5", "step 6", "step 7", "step 8", "OSError: disk full"]
    assert out[at + 1 : at + 6] == [f"    | {line}" for line in tail]


# --- 3. a host that cannot be reached: one line, in seconds, for every command ------------------
COMMANDS = [("deploy",), ("deploy", "--plan"), ("databricks-init",), ("run", TRAINING)]


def free_port() -> int:
    """A loopback port nothing listens on: bound by the OS, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def remote(project, command):
    return main([*command, "--target", "staging", "--repo", str(project),
                 "--config", str(project / "deploy.yml")])  # fmt: skip


def timed_failure(project, command, capsys):
    capsys.readouterr()
    started = time.monotonic()
    assert remote(project, command) == 1
    seconds = time.monotonic() - started
    out, err = capsys.readouterr()
    return seconds, err.strip()


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_refused_connection_fails_in_seconds_with_one_line(project, monkeypatch, capsys, command):
    port = free_port()
    monkeypatch.setenv("DATABRICKS_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-unused")
    monkeypatch.setenv("DATABRICKS_AUTH_TYPE", "pat")
    seconds, err = timed_failure(project, command, capsys)
    assert seconds < 30
    assert len(err.splitlines()) == 1
    assert f"cannot reach workspace host 127.0.0.1 on port {port}: Connection refused" in err
    assert "target 'staging'" in err


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_name_that_does_not_resolve_fails_in_seconds_with_one_line(
    project, monkeypatch, capsys, command
):
    """.invalid never resolves (RFC 2606), but this machine's resolver would still ask a
    nameserver on the network: the lookup is answered here, as the resolver would answer it, so
    no packet leaves the machine. The SDK's requests use the same socket.getaddrinfo, so a
    request that got past the probe would be refused the same way and retried for minutes."""
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if str(host).endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setenv("DATABRICKS_HOST", "https://nonexistent.invalid")
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-unused")
    monkeypatch.setenv("DATABRICKS_AUTH_TYPE", "pat")
    seconds, err = timed_failure(project, command, capsys)
    assert seconds < 30 and len(err.splitlines()) == 1
    assert (
        "cannot reach workspace host nonexistent.invalid: the name does not resolve"
        " (Name or service not known)" in err
    )


def test_a_resolver_that_never_answers_is_given_up_on(monkeypatch):
    monkeypatch.setattr(reachability, "DNS_SECONDS", 0.2)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: time.sleep(3))
    started = time.monotonic()
    with pytest.raises(reachability.Unreachable, match="no DNS answer within 0 s"):
        reachability.check_reachable("https://slow.invalid")
    assert time.monotonic() - started < 1


def test_the_proxy_requests_would_use_is_what_is_probed(monkeypatch):
    port = free_port()
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(reachability.Unreachable) as caught:
        reachability.check_reachable("https://adb-1.azuredatabricks.net")
    assert str(caught.value) == (
        f"cannot reach proxy 127.0.0.1 for workspace host adb-1.azuredatabricks.net on port"
        f" {port}: Connection refused"
    )


class Misbehaving:
    """A loopback server that accepts connections and then does not answer as a workspace:
    never answers, resets the connection, or answers with a web page."""

    def __init__(self, how: str, status: int = 200) -> None:
        self.how, self.status = how, status
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.open: list[socket.socket] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.open.append(conn)
            if self.how == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            elif self.how == "html":
                conn.recv(65536)
                body = b"<html><body>Sign in</body></html>"
                head = (
                    f"HTTP/1.1 {self.status} X\r\nContent-Type: text/html; charset=utf-8\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                )
                conn.sendall(head.encode() + body)
                conn.close()
            # "silent": keep the connection open and say nothing

    def stop(self) -> None:
        self.sock.close()
        for conn in self.open:
            conn.close()


@pytest.mark.parametrize(
    "how, status, scheme, words",
    [
        ("silent", 0, "http", re.escape("no answer within 1 s")),
        ("reset", 0, "http", "reset|closed the connection"),  # when the reset lands decides
        ("silent", 0, "https", re.escape("the TLS handshake failed")),
        ("html", 200, "http", re.escape("answered HTML (HTTP 200), not the Databricks API")),
        ("html", 404, "http", re.escape("answered HTML (HTTP 404), not the Databricks API")),
    ],
    ids=["never answers", "resets", "https to a port without TLS", "200 web page", "404 page"],
)
def test_a_host_that_does_not_answer_as_a_workspace_fails_in_seconds_with_one_line(
    project, monkeypatch, capsys, how, status, scheme, words
):
    monkeypatch.setattr(reachability, "ANSWER_SECONDS", 1.0)
    monkeypatch.setattr(reachability, "CONNECT_SECONDS", 1.0)
    server = Misbehaving(how, status)
    if scheme == "https":  # a plain-HTTP port: it answers a TLS hello with nothing, or HTTP
        server.stop()
        server = Misbehaving("html", 400)
    try:
        monkeypatch.setenv("DATABRICKS_HOST", f"{scheme}://127.0.0.1:{server.port}")
        monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-unused")
        monkeypatch.setenv("DATABRICKS_AUTH_TYPE", "pat")
        seconds, err = timed_failure(project, ("deploy", "--plan"), capsys)
    finally:
        server.stop()
    assert seconds < 10, seconds
    assert len(err.splitlines()) == 1, err
    assert "workspace host 127.0.0.1" in err and re.search(words, err), err


def test_a_busy_host_that_answers_as_a_workspace_is_not_judged_by_its_page(monkeypatch):
    server = Misbehaving("html", 503)  # a gateway's page while the workspace restarts
    try:
        reachability.check_answers(f"http://127.0.0.1:{server.port}", {})
    finally:
        server.stop()


def test_a_host_that_answers_is_left_to_the_sdk_retries(fake_workspace, project):
    fake_workspace.fail("GET", "/preview/scim/v2/Me", status=503, times=4)
    assert deploy(project, "--plan") == 0  # retried, not given up on
    calls = fake_workspace.calls("GET", "/preview/scim/v2/Me")
    # the probe after authenticating (503: busy, passed on to the SDK), then the SDK's own
    # request: three 503s retried, then the answer
    assert len(calls) == 5


# --- 4. a FILE where a notebook belongs becomes a notebook again --------------------------------
def test_a_workspace_file_where_a_notebook_belongs_is_imported_as_a_notebook(
    fake_workspace, project, capsys
):
    assert deploy(project) == 0
    path = f"{NOTEBOOKS}/diabetes_orchestrator_train"
    same_source = fake_workspace.objects[path]["content"]
    del fake_workspace.objects[path]
    fake_workspace.add_file(path, same_source)  # what a plain-file import leaves behind
    imports = len(fake_workspace.calls("POST", "/workspace/import"))
    capsys.readouterr()
    assert deploy(project, "--plan") == 0
    out = capsys.readouterr().out
    assert f"notebook {path}: upload" in out and "replaces the workspace FILE there" in out
    assert deploy(project) == 0
    assert fake_workspace.objects[path]["object_type"] == "NOTEBOOK"
    assert fake_workspace.objects[path]["language"] == "PYTHON"
    assert fake_workspace.objects[path]["content"] == same_source
    assert len(fake_workspace.calls("POST", "/workspace/import")) == imports + 1
    deleted = [
        json.loads(r.body)["path"] for r in fake_workspace.calls("POST", "/workspace/delete")
    ]
    assert deleted == [path]
    assert deploy(project) == 0  # and now it stays
    assert len(fake_workspace.calls("POST", "/workspace/import")) == imports + 1


def test_a_folder_where_a_notebook_belongs_is_refused_before_any_change(
    fake_workspace, project, capsys
):
    path = f"{NOTEBOOKS}/diabetes_orchestrator_train"
    fake_workspace._mkdirs(f"{path}/kept")
    capsys.readouterr()
    assert deploy(project) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: workspace path {path} holds a DIRECTORY, where the notebook"
        " diabetes_orchestrator_train.py belongs: move it away, then deploy again"
    )
    assert fake_workspace.calls("POST", "/workspace/import") == [] and fake_workspace.jobs == {}
    assert f"{path}/kept" in fake_workspace.objects


# --- 5. a redeploy that changes nothing resets nothing; a hand edit is put back ----------------
def resets(fake):
    return [json.loads(r.body)["job_id"] for r in fake.calls("POST", "/jobs/reset")]


def by_name(fake):
    return {job["settings"]["name"]: job for job in fake.jobs.values()}


def test_a_redeploy_resets_only_the_jobs_edited_by_hand(fake_workspace, project, capsys):
    assert deploy(project) == 0
    fake_workspace.requests.clear()  # the first deploy's: its creates unpause with a reset
    capsys.readouterr()
    assert deploy(project, "--plan") == 0
    assert f"job '{TRAINING}': unchanged (no reset)" in capsys.readouterr().out
    assert deploy(project) == 0
    assert resets(fake_workspace) == []
    training = by_name(fake_workspace)[TRAINING]
    wanted = copy.deepcopy(training["settings"])
    training["settings"]["max_concurrent_runs"] = 4  # by hand, in the UI
    training["settings"]["tasks"][0]["max_retries"] = 5
    capsys.readouterr()
    assert deploy(project) == 0
    out = capsys.readouterr().out
    assert resets(fake_workspace) == [training["job_id"]]
    assert f"job '{TRAINING}' updated" in out and "job 'diabetes-batch-scoring' unchanged" in out
    assert by_name(fake_workspace)[TRAINING]["settings"] == wanted


@pytest.mark.parametrize("edit", [
    lambda s: s.update(run_as={"service_principal_name": "someone-else"}),
    lambda s: s.update(health={"rules": [{"metric": "RUN_DURATION_SECONDS", "op": "GREATER_THAN",
                                          "value": 60}]}),
    lambda s: s["tasks"].pop(),
    lambda s: s["tasks"][1].update(run_if="ALL_DONE"),
    lambda s: s.update(queue={"enabled": False}),
], ids=["run_as", "health", "task removed", "run_if", "queue off"])  # fmt: skip
def test_what_is_not_a_server_default_is_a_change(edit):
    wanted = {
        "name": "j",
        "parameters": [{"name": "a", "default": "1"}, {"name": "b", "default": ""}],
        "tasks": [
            {"task_key": "one",
             "notebook_task": {"notebook_path": "/n/one", "source": "WORKSPACE"}},
            {"task_key": "two", "depends_on": [{"task_key": "one"}],
             "notebook_task": {"notebook_path": "/n/two"}},
        ],
    }  # fmt: skip
    # What jobs/get returns: server defaults filled in, tasks and parameters in another order.
    returned = copy.deepcopy(wanted)
    returned.update(format="MULTI_TASK", max_concurrent_runs=1, timeout_seconds=0,
                    email_notifications={}, webhook_notifications={}, queue={"enabled": True},
                    run_as={"user_name": "alice@example.com"})  # fmt: skip
    returned["parameters"].reverse()
    returned["tasks"].reverse()
    for task in returned["tasks"]:
        task.update(timeout_seconds=0, run_if="ALL_SUCCESS", email_notifications={})
    returned["tasks"][0]["notebook_task"]["source"] = "WORKSPACE"
    current = JobSettings.from_dict(returned)
    assert same_settings(wanted, current, "alice@example.com")
    assert not same_settings(wanted, current, "bob@example.com")  # run_as: not the creator
    by_ci = copy.deepcopy(returned)  # created by a service principal (keyless CI): its own run_as
    by_ci["run_as"] = {"service_principal_name": "6f1a-app-id"}
    assert same_settings(wanted, JobSettings.from_dict(by_ci), "6f1a-app-id")
    edit(returned)
    assert not same_settings(wanted, JobSettings.from_dict(returned), "alice@example.com")


def test_following_a_run_ends_on_status_alone():
    """A server may fill only `status` (Jobs API 2.2), not the older `state`."""
    from databricks.sdk.service.jobs import Run

    from diabetes_mlops.deploy.runs import ended

    assert ended(Run.from_dict({"run_id": 1, "status": {"state": "TERMINATED"}}))
    assert not ended(Run.from_dict({"run_id": 1, "status": {"state": "RUNNING"}}))
    assert not ended(Run.from_dict({"run_id": 1}))
    assert ended(Run.from_dict({"run_id": 1, "state": {"life_cycle_state": "TERMINATED"}}))
