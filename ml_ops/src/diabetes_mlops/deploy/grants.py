"""Grants for the group whose members run a target's jobs: only ever added, never removed.

Unity Catalog: `w.grants.update(securable_type, full_name, changes=[PermissionsChange(principal,
add=[...])])` (PATCH /api/2.1/unity-catalog/permissions/{securable_type}/{full_name},
https://docs.databricks.com/api/uc-grants/v1/update-permissions.md), sent only with the privileges
the group does not hold yet and never with `remove`. Cluster: the Permissions API's PATCH
(`w.clusters.update_permissions`), which changes the named principal's level only; it is sent only
when the group cannot already start the cluster, so a group's CAN_MANAGE is never lowered.
"""

from __future__ import annotations

from databricks.sdk import WorkspaceClient
from databricks.sdk.service.catalog import PermissionsChange, Privilege
from databricks.sdk.service.compute import ClusterAccessControlRequest, ClusterPermissionLevel

# What the jobs do, as the privilege tables of the docs name it
# (https://docs.databricks.com/en/volumes/privileges.html): reading files in a volume takes
# USE CATALOG + USE SCHEMA + READ VOLUME, writing them WRITE VOLUME as well. USE CATALOG grants no
# access to any data by itself; it only lets the group reach the schemas it is granted on.
# Registering a model takes CREATE MODEL on the schema, loading one EXECUTE (inherited by the
# schema's models).
CATALOG = [Privilege.USE_CATALOG]
SCHEMA = [Privilege.USE_SCHEMA]
MODEL_SCHEMA = [Privilege.USE_SCHEMA, Privilege.CREATE_MODEL, Privilege.EXECUTE]
DATA_VOLUME = [Privilege.READ_VOLUME, Privilege.WRITE_VOLUME]
WHEEL_VOLUME = [Privilege.READ_VOLUME]
# Jobs start a terminated all-purpose cluster: "Start cluster" takes Can Restart (which includes
# Can Attach To; https://docs.databricks.com/security/access-control/cluster-acl.html).
CLUSTER_LEVEL = ClusterPermissionLevel.CAN_RESTART
_ENOUGH = {ClusterPermissionLevel.CAN_RESTART, ClusterPermissionLevel.CAN_MANAGE}


def grant_privileges(
    w: WorkspaceClient, securable: str, full_name: str, group: str, wanted: list[Privilege]
) -> str:
    """Add the privileges `group` lacks on a securable (its direct grants; ALL_PRIVILEGES covers
    every one); one line: created, or exists."""
    held = held_privileges(w, securable, full_name, group)
    missing = [] if Privilege.ALL_PRIVILEGES in held else [p for p in wanted if p not in held]
    names = ", ".join(p.value for p in wanted)
    what = f"grant {names} on {securable} {full_name} to {group}"
    if not missing:
        return f"{what}: exists"
    w.grants.update(securable, full_name, changes=[PermissionsChange(principal=group, add=missing)])
    return f"{what}: created"


def held_privileges(
    w: WorkspaceClient, securable: str, full_name: str, group: str
) -> set[Privilege]:
    """The principal's direct privileges, page by page (max_results=0: the paginated form the API
    asks clients to use; a page may be empty while a next_page_token follows)."""
    held: set[Privilege] = set()
    token = None
    while True:
        page = w.grants.get(securable, full_name, principal=group, max_results=0, page_token=token)
        for assignment in page.privilege_assignments or []:
            if assignment.principal == group:
                held.update(assignment.privileges or [])
        token = page.next_page_token
        if not token:
            return held


def grant_cluster(w: WorkspaceClient, cluster_id: str, cluster_name: str, group: str) -> str:
    """Let `group` start and use the cluster, unless it may already (directly or inherited)."""
    what = f"grant {CLUSTER_LEVEL.value} on cluster {cluster_name} to {group}"
    acl = w.clusters.get_permissions(cluster_id).access_control_list or []
    levels = {
        permission.permission_level
        for entry in acl
        if entry.group_name == group
        for permission in entry.all_permissions or []
    }
    if levels & _ENOUGH:
        return f"{what}: exists"
    request = ClusterAccessControlRequest(group_name=group, permission_level=CLUSTER_LEVEL)
    w.clusters.update_permissions(cluster_id, access_control_list=[request])
    return f"{what}: created"
