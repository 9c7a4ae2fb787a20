"""`deploy`, `deploy --plan` and `databricks-init`: ship wheels, notebooks and jobs to a target.

A deploy first works out everything it will do (validating the specs, building the wheels,
looking up the cluster, the jobs and what is already uploaded) and only then changes the
workspace, in an order that converges: re-running after a failure half-way ends in the same state
as a clean deploy.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound
from databricks.sdk.service.jobs import JobSettings
from databricks.sdk.service.workspace import ExportFormat, ImportFormat, Language

from diabetes_mlops.deploy.bootstrap import (
    Bootstrap,
    check_experiment,
    ensure_experiment,
    ensure_folder,
    find_cluster,
    in_volume,
)
from diabetes_mlops.deploy.git_source import (
    GitSource,
    GitSourceError,
    from_checkout,
    with_git_source,
)
from diabetes_mlops.deploy.job_owners import claim_job, duplicates_of, job_name
from diabetes_mlops.deploy.job_references import (
    check_deployed,
    deploy_order,
    shown,
    with_job_ids,
)
from diabetes_mlops.deploy.jobs import (
    DeployError,
    for_serving_trigger,
    model_triggered,
    paused,
    resolve_settings,
    same_settings,
)
from diabetes_mlops.deploy.permissions import PermissionPlan, check_principals, plans_for
from diabetes_mlops.deploy.permissions import apply as apply_permissions
from diabetes_mlops.deploy.serving_plan import ServingPlan, serving_plans
from diabetes_mlops.deploy.wheels import build_wheels
from diabetes_mlops.deploy.workspace import for_current_user
from diabetes_mlops.jobs.compute import CLUSTER
from diabetes_mlops.jobs.compute import describe as describe_compute
from diabetes_mlops.jobs.preflight import check_job_parameters, received_values
from diabetes_mlops.jobs.specs import (
    NOTEBOOKS_FOLDER,
    JobSpec,
    check_job_references,
    load_specs,
)
from diabetes_mlops.jobs.targets import Target
from diabetes_mlops.runtime.errors import ParameterError
from diabetes_mlops.tracking.runs import UNITY_CATALOG

CREATED, UPDATED, UNCHANGED, DELETED = "created", "updated", "unchanged", "deleted"


@dataclass
class Upload:
    kind: str  # "wheel" or "notebook"
    local: Path
    remote: str
    needed: bool
    # A workspace FILE where this notebook belongs: deleted before the notebook is imported.
    replaces_file: bool = False

    @property
    def size(self) -> int:
        return self.local.stat().st_size


@dataclass
class JobPlan:
    name: str
    settings: dict[str, Any]
    job_id: int | None
    action: str  # created / updated / unchanged
    spec: str = ""  # the spec's name, which ${job_id.<spec name>} uses
    note: str = ""  # what the reset puts back that someone changed by hand
    why: str = ""  # for a job deleted: why


@dataclass
class Plan:
    target: Target
    cluster_id: str
    experiment_exists: bool
    uploads: list[Upload] = field(default_factory=list)
    jobs: list[JobPlan] = field(default_factory=list)
    serving: list[ServingPlan] = field(default_factory=list)
    # This target's jobs that must go, so that no schedule runs twice: jobs it no longer deploys,
    # duplicates a retried create made, a job under a name the target no longer gives it.
    stale: list[JobPlan] = field(default_factory=list)
    # deploy.yml's permissions: on the objects that exist now (permissions.py)
    permissions: list[PermissionPlan] = field(default_factory=list)

    @property
    def upload_bytes(self) -> int:
        return sum(u.size for u in self.uploads if u.needed)


class Deployer:
    def __init__(
        self,
        w: WorkspaceClient,
        target: Target,
        repo: Path,
        report: Callable[[str], None] = print,
        dist: Path | None = None,
    ) -> None:
        self.w = w
        self.report = report
        self.repo = repo
        self.dist = dist or repo / "dist"  # where the wheels are built (and found again)
        self.target = for_current_user(w, target)

    # --- read-only ---------------------------------------------------------------------------
    def plan(self) -> Plan:
        t = self.target
        checked = self._specs()
        specs = for_serving_trigger(checked, t.serving_trigger)
        check_deployed(specs, t)
        specs = deploy_order(specs)
        self._check_model_trigger(specs)
        wheels = build_wheels(self.repo, self.dist)
        wheel_paths = {w.package: f"{t.wheel_dir.rstrip('/')}/{w.name}" for w in wheels}
        git = self._git_source()
        uploads = [Upload("wheel", w.path, wheel_paths[w.package], False) for w in wheels]
        uploads += [] if git else self._notebook_uploads()
        for upload in uploads:
            upload.needed = not self._already_there(upload)
        values = {
            "notebooks_dir": t.notebooks_dir,
            "alert_email": t.alert_email,
            **{f"wheel.{package}": path for package, path in wheel_paths.items()},
        }
        check_principals(self.w, t.grants, t.name)  # a missing one: refused before any change
        experiment_id = check_experiment(self.w, t)
        experiment = experiment_id is not None
        if t.compute == CLUSTER:
            values["cluster_id"] = self._cluster_id()
        plan = Plan(t, values.get("cluster_id", ""), experiment, uploads)
        job_ids: dict[str, int | None] = {}  # spec name -> its job's id (None: to be created)
        for spec in specs:  # a job run by a run_job task comes before the job that runs it
            settings = resolve_settings(spec, t, values, job_ids)
            if git:  # the notebooks of that commit (branch, tag), checked out by the job
                settings = with_git_source(settings, git)
            claim = claim_job(self.w, t, spec.name)
            note = claim.note
            if claim.current is None:
                action = CREATED
            else:
                current = claim.current
                same = same_settings(settings, current.settings, current.creator_user_name)
                action = UNCHANGED if same else UPDATED
                identity = _identity_note(current, settings["run_as"])
                note = "; ".join(n for n in (note, identity) if n)
            plan.stale += [
                JobPlan(job_name(job), {}, job.job_id, DELETED, spec.name, why=why)
                for jobs, why in (
                    (claim.duplicates, f"a duplicate of job id {claim.job_id}, same settings"),
                    (claim.former, f"this target's job before its name became '{claim.name}'"),
                )
                for job in jobs
            ]
            job_id = claim.job_id
            job_ids[spec.name] = job_id
            job = JobPlan(settings["name"], settings, job_id, action, spec.name, note)
            plan.jobs.append(job)
        plan.stale += self._stale_jobs(checked, specs)
        plan.serving = serving_plans(self.w, specs, t.parameters, t.job_name_prefix)
        jobs_by_name = {job.name: job.job_id for job in plan.jobs}
        plan.permissions = plans_for(self.w, t, jobs_by_name, experiment_id)[0]
        return plan

    def describe(self, plan: Plan) -> None:
        """What `make deploy-plan` prints: the upload list and the resolved JobSettings."""
        t = plan.target
        self.report(f"target {t.name} on {self.w.config.host}")
        compute = describe_compute(
            t.compute, t.cluster_name, plan.cluster_id, t.serverless_environment_version
        )
        self.report(f"  compute: {compute}")
        for upload in plan.uploads:
            state = f"upload {upload.size} bytes" if upload.needed else "already there"
            if upload.replaces_file:
                state += " (replaces the workspace FILE there, deleted first)"
            self.report(f"  {upload.kind:8} {upload.remote}: {state}")
        experiment = "exists" if plan.experiment_exists else "will be created"
        self.report(f"  experiment {plan.target.experiment_name}: {experiment}")
        for job in plan.stale:
            self.report(f"job '{job.name}': delete (job id {job.job_id}; {job.why})")
        for job in plan.jobs:
            action = {CREATED: "create", UPDATED: "reset", UNCHANGED: "unchanged (no reset)"}
            note = f" ({job.note})" if job.note else ""
            self.report(f"job '{job.name}': {action[job.action]}{note}")
            self.report(json.dumps(shown(job.settings), indent=2))
        for serving in plan.serving:
            for line in serving.lines():
                self.report(line)
        for permission in plan.permissions:
            self.report(permission.line())

    # --- changes -----------------------------------------------------------------------------
    def deploy(self) -> Plan:
        plan = self.plan()
        self._make_folders()
        for upload in plan.uploads:
            if upload.needed:
                self._upload(upload)
        ensure_experiment(self.w, self.target)
        # Stale jobs go first: a job that serves the champion must never run beside the one that
        # replaces it (two deployers racing on one endpoint), even if a later step fails.
        for job in plan.stale:
            with contextlib.suppress(NotFound):  # deleted meanwhile: what we wanted
                self.w.jobs.delete(job.job_id)
        job_ids = {job.spec: job.job_id for job in plan.jobs}
        for job in plan.jobs:  # referenced jobs first: their ids fill the run_job tasks after
            job.settings = with_job_ids(job.settings, job_ids, job.name)
            if job.job_id is None:
                # Created paused, unpaused once any duplicate is gone: a schedule never runs
                # on two jobs, even when this deploy dies between the two steps.
                created = paused(job.settings)
                job.job_id = self.w.jobs.create(**_create_args(created)).job_id
                job_ids[job.spec] = job.job_id
                self._remove_duplicates(job)
                if created != job.settings:
                    self.w.jobs.reset(job.job_id, JobSettings.from_dict(job.settings))
            elif job.action != UNCHANGED:  # unchanged: same_settings found no hand edit either
                self.w.jobs.reset(job.job_id, JobSettings.from_dict(job.settings))
        sent = plan.upload_bytes
        count = sum(u.needed for u in plan.uploads)
        self.report(f"uploaded {count} file(s), {sent} bytes, to target {plan.target.name}")
        for job in plan.stale:
            self.report(f"job '{job.name}' deleted (job id {job.job_id}): {job.why}")
        for job in plan.jobs:
            url = f"{self.w.config.host.rstrip('/')}/jobs/{job.job_id}"
            note = f" ({job.note}: put back)" if job.note else ""
            self.report(f"job '{job.name}' {job.action}: {url}{note}")
        if self.target.grants:  # now that every job and the experiment exist
            jobs_by_name = {job.name: job.job_id for job in plan.jobs}
            experiment_id = check_experiment(self.w, self.target)
            plan.permissions, ids = plans_for(
                self.w, self.target, jobs_by_name, experiment_id, plan.permissions
            )
            apply_permissions(self.w, plan.permissions, ids)
            for permission in plan.permissions:
                self.report(permission.line(done=True))
        return plan

    def init(self) -> list[str]:
        """Create, idempotently, what a target needs before its first deploy (bootstrap.py)."""
        return Bootstrap(self.w, self.target, self._specs(), self.report).run()

    # --- helpers -----------------------------------------------------------------------------
    def _specs(self) -> list[JobSpec]:
        """The checked specs, each alone and together (the jobs run_job tasks name); a parameter
        value the target gives that a step would refuse is a ParameterError here, before
        anything in the workspace changes."""
        specs = load_specs(self.repo)
        check_job_references(specs)
        problems = [
            f"target '{self.target.name}': {problem}"
            for spec in specs
            for problem in check_job_parameters(spec, self.target.parameters)
        ]
        if problems:
            raise ParameterError("\n".join(problems))
        return specs

    def _stale_jobs(self, checked: list[JobSpec], deployed: list[JobSpec]) -> list[JobPlan]:
        """This target's jobs for the project's specs it does not deploy (the model-triggered
        deployment job under serving_trigger: task). A job of that name that is not this
        target's (job_owners) is never touched. Deleting a job terminates its active runs
        asynchronously (Jobs API `jobs/delete`); a rollout such a run leaves half-way is finished
        by the next run of the deploy_serving task, and a rollback never overwrites a config its
        own run did not send."""
        names = {spec.name for spec in deployed}
        why = (
            f"target '{self.target.name}' has serving_trigger: {self.target.serving_trigger},"
            " so it does not deploy this job"
        )
        stale = []
        for spec in checked:
            if spec.name in names:
                continue
            claim = claim_job(self.w, self.target, spec.name, strict=False)
            for job in [*filter(None, [claim.current]), *claim.duplicates, *claim.former]:
                stale.append(JobPlan(job_name(job), {}, job.job_id, DELETED, spec.name, why=why))
        return stale

    def _remove_duplicates(self, job: JobPlan) -> None:
        """Jobs/create is not idempotent: a create the SDK sent again, its first answer lost,
        made a second job. It carries this target's tags and the same settings: deleted now,
        before its schedule can run beside the one kept."""
        for duplicate in duplicates_of(self.w, self.target, job.job_id or 0, job.name):
            with contextlib.suppress(NotFound):
                self.w.jobs.delete(duplicate.job_id)
            self.report(
                f"job '{job.name}': deleted job id {duplicate.job_id}, a duplicate of job id"
                f" {job.job_id} (a create sent again after its answer was lost)"
            )

    def _check_model_trigger(self, specs: list[JobSpec]) -> None:
        """A model trigger watches a Unity Catalog model; refused before anything changes."""
        for spec in filter(model_triggered, specs):
            registries = received_values([spec], self.target.parameters, "registry")
            for registry in registries:
                if registry != UNITY_CATALOG:
                    raise DeployError(
                        f"target '{self.target.name}': serving_trigger: model needs registry"
                        f" unity_catalog (a job model trigger watches a Unity Catalog model),"
                        f" got {registry!r}"
                    )

    def _cluster_id(self) -> str:
        name = self.target.cluster_name
        cluster = find_cluster(self.w, name)
        if cluster is None:
            raise DeployError(
                f"no cluster named '{name}' (target '{self.target.name}', cluster_name in"
                " deploy.yml): `make databricks-init` creates it from deploy.yml's cluster spec"
            )
        return cluster.cluster_id or ""

    def _already_there(self, upload: Upload) -> bool:
        """Wheels carry a content hash in their name, so same name and size means same bytes;
        notebooks are compared by content, once the path is known to hold a Python notebook: a
        FILE there exports the same source but does not run as a notebook task."""
        try:
            if upload.kind == "notebook":
                if not self._is_python_notebook(upload):
                    return False
                exported = self.w.workspace.export(upload.remote, format=ExportFormat.SOURCE)
                remote = base64.b64decode(exported.content or "").decode("utf-8", "replace")
                return _normal(remote) == _normal(upload.local.read_text(encoding="utf-8"))
            if in_volume(upload.remote):
                return self.w.files.get_metadata(upload.remote).content_length == upload.size
            return self.w.workspace.get_status(upload.remote).size == upload.size
        except NotFound:
            return False

    def _is_python_notebook(self, upload: Upload) -> bool:
        """Whether the path holds a Python notebook (workspace get-status: object_type, and
        language, set for notebooks only; https://docs.databricks.com/api/workspace-files/v1/
        notebook/object.md). A FILE is marked to be replaced; a folder or any other object is
        not ours to delete: refused before anything changes."""
        status = self.w.workspace.get_status(upload.remote)
        kind = status.object_type.value if status.object_type else "unknown"
        if kind == "FILE":
            upload.replaces_file = True
            return False
        if kind != "NOTEBOOK":
            raise DeployError(
                f"workspace path {upload.remote} holds a {kind}, where the notebook"
                f" {upload.local.name} belongs: move it away, then deploy again"
            )
        return status.language == Language.PYTHON

    def _upload(self, upload: Upload) -> None:
        data = upload.local.read_bytes()
        if upload.replaces_file:
            with contextlib.suppress(NotFound):  # gone meanwhile: what we wanted
                self.w.workspace.delete(upload.remote)
        if upload.kind == "notebook":
            self.w.workspace.import_(
                upload.remote,
                content=base64.b64encode(data).decode(),
                format=ImportFormat.SOURCE,
                language=Language.PYTHON,
                overwrite=True,
            )
        elif in_volume(upload.remote):
            self.w.files.upload(upload.remote, io.BytesIO(data), overwrite=True)
        else:
            self.w.workspace.import_(
                upload.remote,
                content=base64.b64encode(data).decode(),
                format=ImportFormat.AUTO,
                overwrite=True,
            )

    def _git_source(self) -> GitSource | None:
        """The checkout's git source when the target runs its jobs from git (source: git)."""
        t = self.target
        if t.source != "git":
            return None
        try:
            git = from_checkout(self.repo, t.git_ref, t.git_url or None, t.git_provider or None)
        except GitSourceError as exc:
            raise DeployError(f"target '{t.name}': {exc}") from None
        if not git.pushed:
            self.report(
                f"warning: {git.ref_kind} {git.ref} is on no remote branch this checkout knows:"
                f" the jobs cannot check it out from {git.url} until it is pushed"
            )
        return git

    def _notebook_uploads(self) -> list[Upload]:
        folder = self.target.notebooks_dir
        return [
            Upload("notebook", path, f"{folder}/{path.stem}", False)
            for path in sorted((self.repo / NOTEBOOKS_FOLDER).glob("*.py"))
        ]

    def _make_folders(self) -> None:
        t = self.target
        if t.source != "git":  # git-source jobs import no notebook
            ensure_folder(self.w, "folder", t.notebooks_dir)
        ensure_folder(self.w, "wheel folder", t.wheel_dir)


def _normal(source: str) -> str:
    """Notebook source as compared for "already there": the workspace may re-emit a notebook
    with other line endings or trailing whitespace, which are no change of ours."""
    return "\n".join(line.rstrip() for line in source.splitlines()).strip()


def _create_args(settings: dict[str, Any]) -> dict[str, Any]:
    """jobs.create takes JobSettings' fields as keyword arguments, typed."""
    typed = JobSettings.from_dict(settings)
    return {key: getattr(typed, key) for key in settings}


def _identity_note(current: Any, wanted: dict[str, str]) -> str:
    """Says so when the job runs as another identity than deploy.yml's (set by hand)."""
    settings = current.settings
    have = settings.run_as.as_dict() if settings and settings.run_as else None
    have = have or {"user_name": current.creator_user_name or "?"}
    if have == wanted:
        return ""
    theirs, ours = next(iter(have.values())), next(iter(wanted.values()))
    return f"runs as {theirs}, set by hand; deploy.yml: {ours}"
