"""`databricks-upload-data`: the sample data (ml_data/) where a target's jobs read it.

The destinations are the target's `data_path` and `input_path` parameters as a deploy resolves
them (deploy.yml's target, {data_dir} and {user} filled), so the jobs find exactly these files.
A file already there with the same bytes is skipped (compared by size, then by SHA-256 of a
download: the Files API's metadata carries no hash); a different file is refused, since it may be
the team's real data, unless `overwrite` is given.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound
from databricks.sdk.service.files import FilesAPI

from diabetes_mlops.deploy.bootstrap import in_volume
from diabetes_mlops.deploy.jobs import DeployError
from diabetes_mlops.jobs.targets import Target

# The job parameter naming where each sample file is read, the one naming its format, the file.
SAMPLES = (
    ("data_path", "data_format", "data_raw.csv"),
    ("input_path", "input_format", "data_batch_input.csv"),
)


def upload_sample_data(
    w: WorkspaceClient,
    target: Target,
    data_dir: Path,
    overwrite: bool = False,
    report: Callable[[str], None] = print,
) -> list[str]:
    """Upload each sample file to its parameter's path; one line each. Raises DeployError (after
    every file's line) when a different file was refused."""
    lines, refused = [], []
    for parameter, format_parameter, name in SAMPLES:
        remote = target.parameters.get(parameter, "")
        fmt = target.parameters.get(format_parameter, "csv")
        if fmt != "csv":  # the jobs would read a CSV file as Parquet, Delta or a table
            raise DeployError(
                f"target '{target.name}': parameters.{format_parameter} is {fmt!r}; the sample"
                f" data is CSV, so {parameter} would not read it: load your own data there"
            )
        if not in_volume(remote):
            raise DeployError(
                f"target '{target.name}': parameters.{parameter} is {remote!r}; sample data goes"
                " only to a /Volumes/... path (the Files API)"
            )
        local = data_dir / name
        try:
            content = local.read_bytes()
        except OSError as exc:
            raise DeployError(f"{local}: cannot read sample data: {exc.strerror}") from None
        state = _state(w, remote, content)
        if state == "differs" and not overwrite:
            line = (
                f"data {remote}: refused: a different file is there (it may be real data);"
                " --overwrite replaces it"
            )
            refused.append(remote)
        elif state == "exists":
            line = f"data {remote}: exists (same content, 0 bytes sent)"
        else:
            w.files.upload(remote, io.BytesIO(content), overwrite=state == "differs")
            done = "replaced" if state == "differs" else "created"
            line = f"data {remote}: {done} ({len(content)} bytes from {local})"
        lines.append(line)
        report(line)
    if refused:
        raise DeployError(f"{len(refused)} file(s) left as they were: {', '.join(refused)}")
    return lines


def _state(w: WorkspaceClient, remote: str, content: bytes) -> str:
    """missing, exists (same bytes) or differs."""
    try:
        size = w.files.get_metadata(remote).content_length
    except NotFound:
        return "missing"
    if size != len(content):
        return "differs"
    # The plain Files API download (GET /api/2.0/fs/files/...): these files are small, and it
    # needs none of the SDK's presigned-URL machinery.
    stream = FilesAPI(w.api_client).download(remote).contents
    digest = hashlib.sha256(stream.read() if stream else b"").hexdigest()
    return "exists" if digest == hashlib.sha256(content).hexdigest() else "differs"
