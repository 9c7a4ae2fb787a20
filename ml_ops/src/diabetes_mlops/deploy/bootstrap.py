"""`databricks-init`: everything a target needs before its first deploy, created when missing.

From deploy.yml alone: the Unity Catalog schemas and volumes of the target's data_dir and
wheel_dir (`/Volumes/<catalog>/<schema>/<volume>/...`) and of its model (`parameters.model_name`
catalog.schema.model, with registry unity_catalog), the folders, the MLflow experiment, the secret
scope, the all-purpose cluster (`cluster:`) and the grants of the group that runs the jobs
(`run_as_group`). Each step prints one line: created, exists, missing, or differs (a cluster:
then one more line per field that differs).

Nothing that exists is changed or deleted: a cluster whose spec differs is reported field by
field, and grants are only added. Catalogs are not created (that is a metastore admin's decision,
with storage behind it): a missing one is one line, and the steps inside it are skipped. Re-running
sends no request that changes anything and prints "exists" for every step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, ResourceAlreadyExists, ResourceConflict
from databricks.sdk.service.catalog import Privilege, VolumeType
from databricks.sdk.service.compute import ClusterDetails
from databricks.sdk.service.ml import ExperimentTag

from diabetes_mlops.deploy import grants
from diabetes_mlops.deploy.clusters import create_args, differences
from diabetes_mlops.deploy.jobs import DeployError
from diabetes_mlops.jobs.compute import SERVERLESS
from diabetes_mlops.jobs.preflight import received_values
from diabetes_mlops.jobs.specs import JobSpec
from diabetes_mlops.jobs.targets import Target
from diabetes_mlops.runtime.owner import Owner, owner_tags
from diabetes_mlops.tracking.runs import (
    CUSTOM_MODEL_DEVELOPMENT,
    EXPERIMENT_KIND_TAG,
    UNITY_CATALOG,
)

CREATED, EXISTS = "created", "exists"


@dataclass(frozen=True)
class Volume:
    catalog: str
    schema: str
    name: str

    @property
    def schema_name(self) -> str:
        return f"{self.catalog}.{self.schema}"

    @property
    def full_name(self) -> str:
        return f"{self.schema_name}.{self.name}"


def volume_of(path: str) -> Volume | None:
    """The volume a /Volumes/<catalog>/<schema>/<volume>/... path lies in (None: not in one)."""
    parts = path.strip("/").split("/")
    if len(parts) < 4 or parts[0] != "Volumes" or not all(parts[1:4]):
        return None
    return Volume(parts[1], parts[2], parts[3])


def in_volume(path: str) -> bool:
    """A Unity Catalog volume path (the Files API), not a workspace path."""
    return path.startswith("/Volumes/")


def ensure_folder(w: WorkspaceClient, label: str, path: str) -> str:
    """A folder in a volume (Files API directories) or in the workspace: CREATED or EXISTS; a
    workspace object there that is no folder is a DeployError (not ours to replace)."""
    if in_volume(path):
        try:
            w.files.get_directory_metadata(path)
            return EXISTS
        except NotFound:
            w.files.create_directory(path)
            return CREATED
    try:
        status = w.workspace.get_status(path)
    except NotFound:
        w.workspace.mkdirs(path)
        return CREATED
    kind = status.object_type.value if status.object_type else "unknown"
    if kind != "DIRECTORY":
        raise DeployError(f"{label} {path}: holds a {kind}, not a folder: move it away")
    return EXISTS


def ensure_experiment(w: WorkspaceClient, target: Target) -> str:
    """The target's MLflow experiment (parameters.experiment_name), created with the target's
    owner tags: CREATED or EXISTS. One another target owns is a DeployError (check_experiment);
    one created meanwhile, or by this create sent again after its answer was lost, EXISTS."""
    name = target.experiment_name
    if not name:
        raise DeployError(f"target '{target.name}' sets no parameters.experiment_name")
    if check_experiment(w, target) is not None:
        return EXISTS
    w.workspace.mkdirs(name.rsplit("/", 1)[0])
    tags = {EXPERIMENT_KIND_TAG: CUSTOM_MODEL_DEVELOPMENT, **owner_tags(target.name)}
    try:
        w.experiments.create_experiment(
            name, tags=[ExperimentTag(key=k, value=v) for k, v in tags.items()]
        )
    except ResourceAlreadyExists:
        check_experiment(w, target)
    return CREATED


def check_experiment(w: WorkspaceClient, target: Target) -> str | None:
    """The id of the target's experiment (None: there is none). An experiment whose owner tags
    name another target is a DeployError: two targets would log their runs into one. One with no
    owner tags (made by hand, or before experiments carried them) is used as it is."""
    name = target.experiment_name or ""
    try:
        experiment = w.experiments.get_by_name(name).experiment
    except NotFound:
        return None
    if experiment is None:
        return None
    owner = Owner.of_tags(experiment.tags)
    if owner.ours and owner.target and owner.target != target.name:
        raise DeployError(
            f"experiment {name} belongs to target '{owner.target}', and target '{target.name}'"
            " would log its runs there too: give the two targets distinct"
            " parameters.experiment_name values in deploy.yml"
        )
    return experiment.experiment_id


def find_cluster(w: WorkspaceClient, name: str) -> ClusterDetails | None:
    """The one cluster named `name`, None when there is none; several are a DeployError naming
    their ids (which one the jobs should use cannot be told)."""
    found = [c for c in w.clusters.list() if c.cluster_name == name]
    if len(found) > 1:
        ids = ", ".join(c.cluster_id or "?" for c in found)
        raise DeployError(
            f"{len(found)} clusters are named '{name}' (ids {ids}): rename or delete all but one"
        )
    return found[0] if found else None


class Bootstrap:
    def __init__(
        self,
        w: WorkspaceClient,
        target: Target,
        specs: list[JobSpec],
        report: Callable[[str], None] = print,
    ) -> None:
        """`target` with {user} already filled (Deployer does it on connecting); `specs`, the
        jobs it will deploy, say what their tasks receive (the registry, the model's name)."""
        self.w = w
        self.target = target
        self.specs = specs
        self.report = report
        self.lines: list[str] = []
        self.problems: list[str] = []

    def run(self) -> list[str]:
        t = self.target
        data, wheels = volume_of(t.data_dir), volume_of(t.wheel_dir)
        volumes = [v for v in dict.fromkeys([data, wheels]) if v is not None]
        model_schema = self._model_schema()
        schemas = list(dict.fromkeys([*(v.schema_name for v in volumes), *model_schema]))
        catalogs = [c for c in dict.fromkeys(s.split(".")[0] for s in schemas) if self._catalog(c)]
        schemas = [s for s in schemas if s.split(".")[0] in catalogs]
        volumes = [v for v in volumes if v.catalog in catalogs]
        for schema in schemas:
            self._schema(schema)
        for volume in volumes:
            self._volume(volume)
        if t.source != "git":  # git-source jobs import no notebook
            self._folder("folder", t.notebooks_dir)
        folders = (("wheel folder", t.wheel_dir, wheels), ("data folder", t.data_dir, data))
        for label, path, volume in folders:
            if path and (volume is None or volume in volumes):
                self._folder(label, path)
        self._experiment()
        self._secret_scope()
        cluster_id = self._cluster()
        self._grants(catalogs, schemas, model_schema, volumes, data, wheels, cluster_id)
        if self.problems:
            raise DeployError(
                f"databricks-init: target '{t.name}' is not ready: {'; '.join(self.problems)}"
            )
        return self.lines

    # --- steps -------------------------------------------------------------------------------
    def _say(self, line: str) -> None:
        self.lines.append(line)
        self.report(line)

    def _model_schema(self) -> list[str]:
        """The schemas of the model and of the inference tables (Unity Catalog registry only).
        Their names were judged by the steps' parameter rules (Deployer._specs): three parts."""

        def received(name: str) -> list[str]:
            return [str(v) for v in received_values(self.specs, self.target.parameters, name)]

        if UNITY_CATALOG not in received("registry"):
            return []
        names = [*received("model_name"), *received("inference_table")]
        return list(dict.fromkeys(name.rsplit(".", 1)[0] for name in names if name))

    def _catalog(self, name: str) -> bool:
        try:
            self.w.catalogs.get(name)
            self._say(f"catalog {name}: exists")
            return True
        except NotFound:
            line = (
                f"catalog {name}: missing (databricks-init creates no catalogs: ask a metastore"
                " admin to create it, or name another in deploy.yml)"
            )
            self._say(line)
            self.problems.append(f"catalog {name} missing")
            return False

    def _schema(self, full_name: str) -> None:
        try:
            self.w.schemas.get(full_name)
            state = EXISTS
        except NotFound:
            catalog, name = full_name.split(".")
            try:
                self.w.schemas.create(name=name, catalog_name=catalog, comment=self._comment())
            except ResourceConflict:  # made meanwhile, or by this create sent again
                self.w.schemas.get(full_name)
            state = CREATED
        self._say(f"schema {full_name}: {state}")

    def _volume(self, volume: Volume) -> None:
        try:
            self.w.volumes.read(volume.full_name)
            state = EXISTS
        except NotFound:
            try:
                self.w.volumes.create(
                    volume.catalog,
                    volume.schema,
                    volume.name,
                    VolumeType.MANAGED,
                    comment=self._comment(),
                )
            except ResourceConflict:  # made meanwhile, or by this create sent again
                self.w.volumes.read(volume.full_name)
            state = CREATED
        self._say(f"volume {volume.full_name}: {state}")

    def _folder(self, label: str, path: str) -> None:
        self._say(f"{label} {path}: {ensure_folder(self.w, label, path)}")

    def _experiment(self) -> None:
        state = ensure_experiment(self.w, self.target)
        self._say(f"experiment {self.target.experiment_name}: {state}")

    def _secret_scope(self) -> None:
        scope = self.target.secret_scope
        state = EXISTS
        if scope not in {s.name for s in self.w.secrets.list_scopes()}:
            try:
                self.w.secrets.create_scope(scope)
                state = CREATED
            except ResourceAlreadyExists:  # created meanwhile: what we wanted
                pass
        self._say(f"secret scope {scope}: {state}")

    def _cluster(self) -> str | None:
        """The cluster's id: found by name (compared with deploy.yml's spec) or created (not
        waited for: it starts in the background, and a job run starts it anyway). A serverless
        target's jobs run on no cluster: none is looked for or made."""
        if self.target.compute == SERVERLESS:
            version = self.target.serverless_environment_version
            self._say(f"cluster: none (compute: serverless, environment version {version})")
            return None
        name, spec = self.target.cluster_name, self.target.cluster
        cluster = find_cluster(self.w, name)
        if cluster is not None:
            found_differences = differences(spec, cluster.as_dict())
            if not found_differences:
                self._say(f"cluster {name}: exists (id {cluster.cluster_id})")
            else:
                self._say(
                    f"cluster {name}: differs from deploy.yml (id {cluster.cluster_id};"
                    " left unchanged, edit one or the other):"
                )
                for difference in found_differences:
                    self._say(f"  cluster {name} {difference}")
            return cluster.cluster_id
        if not spec:
            self._say(f"cluster {name}: missing, and target '{self.target.name}' sets no cluster:")
            self.problems.append(f"cluster {name} missing")
            return None
        cluster_id = self.w.clusters.create(**create_args(name, spec)).cluster_id
        self._say(f"cluster {name}: created (id {cluster_id}; starting, not waited for)")
        self._remove_duplicate_clusters(name, cluster_id or "")
        return cluster_id

    def _remove_duplicate_clusters(self, name: str, created: str) -> None:
        """Clusters/create is not idempotent: one the SDK sent again, its first answer lost,
        made a second cluster. There was none of that name before, so another one now made by
        this user with the same spec is that duplicate: permanently deleted (it would bill, and
        make the name ambiguous for every deploy)."""
        user = self.w.current_user.me().user_name
        for cluster in self.w.clusters.list():
            if cluster.cluster_name != name or cluster.cluster_id == created:
                continue
            if cluster.creator_user_name == user and not differences(
                self.target.cluster, cluster.as_dict()
            ):
                self.w.clusters.permanent_delete(cluster.cluster_id or "")
                self._say(
                    f"cluster {name}: deleted id {cluster.cluster_id}, a duplicate of"
                    f" {created} (a create sent again after its answer was lost)"
                )

    def _grants(
        self,
        catalogs: list[str],
        schemas: list[str],
        model_schemas: list[str],
        volumes: list[Volume],
        data: Volume | None,
        wheels: Volume | None,
        cluster_id: str | None,
    ) -> None:
        group = self.target.run_as_group
        if not group:
            self._say("grants: none (deploy.yml sets no run_as_group)")
            return
        for catalog in catalogs:
            self._say(grants.grant_privileges(self.w, "catalog", catalog, group, grants.CATALOG))
        for schema in schemas:
            wanted = grants.MODEL_SCHEMA if schema in model_schemas else grants.SCHEMA
            self._say(grants.grant_privileges(self.w, "schema", schema, group, wanted))
        for volume in volumes:
            wanted: list[Privilege] = []
            for privileges, used in ((grants.DATA_VOLUME, data), (grants.WHEEL_VOLUME, wheels)):
                if volume == used:
                    wanted += [p for p in privileges if p not in wanted]
            self._say(grants.grant_privileges(self.w, "volume", volume.full_name, group, wanted))
        if cluster_id:
            self._say(grants.grant_cluster(self.w, cluster_id, self.target.cluster_name, group))

    def _comment(self) -> str:
        return f"diabetes-mlops target {self.target.name} (databricks-init)"
