"""The fake workspace plus what `databricks-init` and `databricks-upload-data` use: Unity Catalog
catalogs, schemas, volumes and grants, clusters/create, cluster permissions, and file downloads.

Paths and payloads are those databricks-sdk 0.156.0 sends (databricks/sdk/service/catalog.py,
compute.py, files.py): GET/POST /api/2.1/unity-catalog/{schemas,volumes}, GET
/api/2.1/unity-catalog/catalogs/{name}, GET/PATCH
/api/2.1/unity-catalog/permissions/{securable_type}/{full_name}
(https://docs.databricks.com/api/uc-grants/v1/update-permissions.md: `changes` of principal,
add, remove), POST /api/2.1/clusters/create, GET/PATCH /api/2.0/permissions/clusters/{id}, GET
/api/2.0/fs/files/{path} (the file's bytes). Missing objects answer 404, as Unity Catalog does
(CATALOG_DOES_NOT_EXIST, ...); creating an existing one 409. Securable types are matched in any
case (the CLI documents `databricks grants get catalog my_catalog`).
"""

from __future__ import annotations

import json
import re
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote, urlparse

from fake_workspace import ApiError, FakeWorkspace, Recorded

UC = "/api/2.1/unity-catalog"
FILES = "/api/2.0/fs/files/"
CLUSTER_ACL = "/api/2.0/permissions/clusters/"
OBJECT_ACL = "/api/2.0/permissions/"
SCIM = "/api/2.0/preview/scim/v2/"
# SCIM resource -> (principal kind, the attribute a filter names)
SCIM_RESOURCES = {
    "Users": ("user", "userName"),
    "Groups": ("group", "displayName"),
    "ServicePrincipals": ("service_principal", "applicationId"),
}
ACL_FIELDS = {
    "user": "user_name",
    "group": "group_name",
    "service_principal": "service_principal_name",
}


class FakeWorkspaceWithSetup(FakeWorkspace):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.catalogs: set[str] = {"main"}
        self.schemas: dict[str, dict[str, Any]] = {}
        self.volumes: dict[str, dict[str, Any]] = {}
        # (securable type, full name) -> principal -> privileges
        self.grants: dict[tuple[str, str], dict[str, set[str]]] = {}
        # cluster id -> principal ("user:x", "group:y") -> its direct permission level
        self.cluster_acls: dict[str, dict[str, str]] = {}
        # Who exists (SCIM): kind -> names (a service principal by its application id)
        self.principals: dict[str, set[str]] = {
            "user": {self.user}, "group": {"admins", "users"}, "service_principal": set()
        }  # fmt: skip
        # (object type, id) -> "kind:name" -> direct level: jobs, serving-endpoints, experiments
        self.object_acls: dict[tuple[str, str], dict[str, str]] = {}
        self.models: dict[str, dict[str, Any]] = {}  # Unity Catalog registered models

    def start(self) -> FakeWorkspaceWithSetup:
        super().start()
        assert self._server is not None  # the SDK PATCHes grants and permissions
        handler = self._server.RequestHandlerClass
        handler.do_PATCH = handler.do_GET  # type: ignore[attr-defined]
        return self

    # --- test controls ---------------------------------------------------------------------
    def changes(self) -> list[Recorded]:
        """Every request that may change something."""
        return [r for r in self.requests if r.method in ("POST", "PUT", "PATCH", "DELETE")]

    def add_schema(self, full_name: str) -> None:
        catalog, name = full_name.split(".")
        self.schemas[full_name] = {"catalog_name": catalog, "name": name, "full_name": full_name}

    def add_volume(self, full_name: str) -> None:
        catalog, schema, name = full_name.split(".")
        self.volumes[full_name] = {
            "catalog_name": catalog,
            "schema_name": schema,
            "name": name,
            "full_name": full_name,
            "volume_type": "MANAGED",
        }

    def add_cluster(self, name: str, **spec: Any) -> str:
        """A cluster as clusters/list returns it (with what the server fills in)."""
        return self._create_cluster({"cluster_name": name, **spec})

    # --- dispatch --------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        """A file's bytes for GET /api/2.0/fs/files/...; the base class answers only JSON, so
        this one case is served here; any error case (token, fault, no such file) goes to the base
        class, which answers it as the API does."""
        parsed = urlparse(handler.path)
        path = unquote(parsed.path[len(FILES) - 1 :])
        with self._lock:
            served = (
                handler.command == "GET"
                and parsed.path.startswith(FILES)
                and handler.headers.get("Authorization") == f"Bearer {self.token}"
                and path in self.files
                and not any(f.times > 0 and f.path_contains in parsed.path for f in self.faults)
            )
            if served:
                self.requests.append(Recorded("GET", parsed.path, {}, b"", dict(handler.headers)))
                data = self.files[path]
        if not served:
            super()._handle(handler)
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Last-Modified", formatdate(usegmt=True))
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, r: Recorded) -> tuple[int, Any, dict[str, str]]:
        body = json.loads(r.body) if r.body and r.method in ("POST", "PATCH") else {}
        path = unquote(r.path)
        if path.startswith(UC + "/"):
            return 200, self._unity_catalog(r.method, path[len(UC) + 1 :], body, r.query), {}
        if (r.method, path) == ("POST", "/api/2.1/clusters/create"):
            return 200, {"cluster_id": self._create_cluster(body)}, {}
        if (r.method, path) == ("POST", "/api/2.1/clusters/permanent-delete"):
            before = len(self.clusters)
            self.clusters = [c for c in self.clusters if c["cluster_id"] != body["cluster_id"]]
            if len(self.clusters) == before:
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"cluster {body['cluster_id']}")
            self.cluster_acls.pop(body["cluster_id"], None)
            return 200, {}, {}
        if path.startswith(CLUSTER_ACL) and r.method in ("GET", "PATCH"):
            return 200, self._cluster_permissions(r.method, path[len(CLUSTER_ACL) :], body), {}
        if path.startswith(OBJECT_ACL) and r.method in ("GET", "PATCH"):
            kind, _, object_id = path[len(OBJECT_ACL) :].partition("/")
            return 200, self._object_permissions(r.method, kind, object_id, body), {}
        if path.startswith(SCIM) and path[len(SCIM) :] in SCIM_RESOURCES and r.method == "GET":
            return 200, self._scim(path[len(SCIM) :], r.query.get("filter", "")), {}
        return super()._route(r)

    # --- principals and object permissions ---------------------------------------------------
    def _scim(self, resource: str, query: str) -> dict:
        """SCIM list with a filter `attribute eq "value"` (the only form sent here)."""
        kind, attribute = SCIM_RESOURCES[resource]
        wanted = re.fullmatch(rf'{attribute} eq "(.*)"', query)
        if wanted is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"fake filters by {attribute} eq only")
        name = wanted.group(1).replace('\\"', '"')
        found = [{"id": f"{kind}-{name}", attribute: name}] if name in self.principals[kind] else []
        return {"Resources": found, "totalResults": len(found), "startIndex": 1}

    def _object_permissions(self, method: str, kind: str, object_id: str, body: dict) -> dict:
        exists = {
            "jobs": lambda: object_id.isdigit() and int(object_id) in self.jobs,
            "serving-endpoints": lambda: any(f"{n}-id" == object_id for n in self.endpoints),
            "experiments": lambda: object_id in self.experiments.values(),
        }
        if kind not in exists or not exists[kind]():
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"{kind} {object_id} does not exist")
        acl = self.object_acls.setdefault((kind, object_id), {})
        changes = body.get("access_control_list") or [] if method == "PATCH" else []
        for entry in changes:  # PATCH: the principals named, the others left
            who = next((k, entry[f]) for k, f in ACL_FIELDS.items() if f in entry)
            if who[1] not in self.principals[who[0]]:
                raise ApiError(
                    404, "RESOURCE_DOES_NOT_EXIST", f"Principal: {who[0]}({who[1]}) does not exist"
                )
            acl[f"{who[0]}:{who[1]}"] = entry["permission_level"]
        entries = [
            {ACL_FIELDS[key.split(":", 1)[0]]: key.split(":", 1)[1],
             "all_permissions": [{"permission_level": level, "inherited": False}]}
            for key, level in sorted(acl.items())
        ]  # fmt: skip
        return {"object_id": f"/{kind}/{object_id}", "access_control_list": entries}

    # --- Unity Catalog -----------------------------------------------------------------------
    def _unity_catalog(self, method: str, rest: str, body: dict, query: dict) -> Any:
        kind, _, name = rest.partition("/")
        if kind == "catalogs" and method == "GET" and name:
            if name not in self.catalogs:
                raise ApiError(404, "CATALOG_DOES_NOT_EXIST", f"Catalog '{name}' does not exist.")
            return {"name": name, "full_name": name}
        if kind == "schemas" and method == "GET" and name:
            return self._get(self.schemas, "SCHEMA", name)
        if kind == "schemas" and method == "POST" and not name:
            return self._create_schema(body)
        if kind == "volumes" and method == "GET" and name:
            return self._get(self.volumes, "VOLUME", name)
        if kind == "volumes" and method == "POST" and not name:
            return self._create_volume(body)
        if kind == "models" and method == "GET" and name:
            return self._get(self.models, "REGISTERED_MODEL", name)
        if kind == "permissions" and "/" in name:
            securable, _, full_name = name.partition("/")
            return self._permissions(method, securable.lower(), full_name, body, query)
        raise ApiError(404, "ENDPOINT_NOT_FOUND", f"fake has no {method} {UC}/{rest}")

    def _get(self, store: dict[str, dict], kind: str, name: str) -> dict:
        if name not in store:
            raise ApiError(
                404, f"{kind}_DOES_NOT_EXIST", f"{kind.title()} '{name}' does not exist."
            )
        return store[name]

    def _create_schema(self, body: dict) -> dict:
        catalog, name = body["catalog_name"], body["name"]
        if catalog not in self.catalogs:
            raise ApiError(404, "CATALOG_DOES_NOT_EXIST", f"Catalog '{catalog}' does not exist.")
        full_name = f"{catalog}.{name}"
        if full_name in self.schemas:
            raise ApiError(409, "SCHEMA_ALREADY_EXISTS", f"Schema '{full_name}' already exists")
        self.add_schema(full_name)
        self.schemas[full_name].update(owner=self.user, comment=body.get("comment"))
        return self.schemas[full_name]

    def _create_volume(self, body: dict) -> dict:
        schema = f"{body['catalog_name']}.{body['schema_name']}"
        self._get(self.schemas, "SCHEMA", schema)
        full_name = f"{schema}.{body['name']}"
        if full_name in self.volumes:
            raise ApiError(409, "VOLUME_ALREADY_EXISTS", f"Volume '{full_name}' already exists")
        if body.get("volume_type") != "MANAGED" or body.get("storage_location"):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "the fake makes managed volumes only")
        self.add_volume(full_name)
        self.volumes[full_name].update(owner=self.user, comment=body.get("comment"))
        return self.volumes[full_name]

    def _permissions(
        self, method: str, securable: str, full_name: str, body: dict, query: dict
    ) -> dict:
        stores = {
            "catalog": self.catalogs,
            "schema": self.schemas,
            "volume": self.volumes,
            "function": self.models,  # a registered model's securable type
        }
        if securable not in stores:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"fake has no securable {securable}")
        if full_name not in stores[securable]:
            raise ApiError(404, f"{securable.upper()}_DOES_NOT_EXIST", f"{full_name} not found")
        granted = self.grants.setdefault((securable, full_name), {})
        if method == "PATCH":
            for change in body.get("changes") or []:
                held = granted.setdefault(change["principal"], set())
                held.update(change.get("add") or [])
                held.difference_update(change.get("remove") or [])
        principal = query.get("principal")
        assignments = [
            {"principal": who, "privileges": sorted(privileges)}
            for who, privileges in sorted(granted.items())
            if privileges and (principal is None or who == principal)
        ]
        if method == "PATCH" or "max_results" not in query:
            return {"privilege_assignments": assignments}
        # Paginated (max_results=0): one assignment a page after an empty first page, as the API
        # allows ("a page may contain zero results while still providing a next_page_token").
        page = int(query.get("page_token") or 0)
        answer: dict[str, Any] = {
            "privilege_assignments": assignments[page - 1 : page] if page else []
        }
        if page < len(assignments):
            answer["next_page_token"] = str(page + 1)
        return answer

    # --- clusters ----------------------------------------------------------------------------
    def _create_cluster(self, body: dict) -> str:
        if not body.get("spark_version"):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", "spark_version is required")
        cluster_id = f"1129-{next(self._ids):06d}-fake"
        cluster = {
            "cluster_id": cluster_id,
            "creator_user_name": self.user,
            "state": "PENDING",
            "cluster_source": "API",
            "driver_node_type_id": body.get("node_type_id"),
            "enable_elastic_disk": True,
            "default_tags": {"Vendor": "Databricks", "ClusterName": body.get("cluster_name")},
            **body,
        }
        if "autoscale" in body:  # the current size, as the API reports it
            cluster["num_workers"] = body["autoscale"]["min_workers"]
        self.clusters.append(cluster)
        self.cluster_acls[cluster_id] = {f"user:{self.user}": "CAN_MANAGE"}
        return cluster_id

    def _cluster_permissions(self, method: str, cluster_id: str, body: dict) -> dict:
        if not any(c["cluster_id"] == cluster_id for c in self.clusters):
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"cluster {cluster_id} does not exist")
        acl = self.cluster_acls.setdefault(cluster_id, {})
        if method == "PATCH":  # sets the level of the principals named, leaves the others
            for entry in body.get("access_control_list") or []:
                kind = "group" if "group_name" in entry else "user"
                acl[f"{kind}:{entry.get('group_name') or entry.get('user_name')}"] = entry[
                    "permission_level"
                ]
        entries = [
            {
                f"{'group' if key.startswith('group:') else 'user'}_name": key.split(":", 1)[1],
                "all_permissions": [{"permission_level": level, "inherited": False}],
            }
            for key, level in sorted(acl.items())
        ]
        entries.append(  # workspace admins manage every cluster (inherited from /clusters/)
            {
                "group_name": "admins",
                "all_permissions": [
                    {
                        "permission_level": "CAN_MANAGE",
                        "inherited": True,
                        "inherited_from_object": ["/clusters/"],
                    }
                ],
            }
        )
        return {
            "object_id": f"/clusters/{cluster_id}",
            "object_type": "cluster",
            "access_control_list": entries,
        }
