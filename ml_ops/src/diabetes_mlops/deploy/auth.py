"""What to tell the user when deploy or run cannot authenticate, worded for the auth they chose.

`workspace.connect` hands databricks-sdk nothing but the target's profile or host: credentials
come from the SDK's unified auth alone, so CI can authenticate keyless with GitHub OIDC workload
identity federation (DATABRICKS_AUTH_TYPE=github-oidc, no long-lived secret), with DATABRICKS_TOKEN
as the fallback (https://docs.databricks.com/aws/en/dev-tools/auth/provider-github). When the
federated auth cannot start, the SDK says only that no credentials were found; this module names
what is missing instead of sending the user off to create a token. It reads variable names and
presence only, never a value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

GITHUB_OIDC = "github-oidc"
# What databricks-sdk's github-oidc auth reads (config.py / credentials_provider.py, 0.156.0).
GITHUB_OIDC_CONFIG = ("DATABRICKS_HOST", "DATABRICKS_CLIENT_ID")
# Set by GitHub Actions only in a job granted `permissions: id-token: write`:
# https://docs.github.com/en/actions/security-for-github-actions/security-hardening-your-deployments/
# about-security-hardening-with-openid-connect#adding-permissions-settings
GITHUB_ID_TOKEN_REQUEST = ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
TOKEN_HELP = (
    "set DATABRICKS_HOST and DATABRICKS_TOKEN, or run `databricks configure --profile {profile}`"
    " to write a profile to ~/.databrickscfg (see deploy.yml)"
)


def auth_help(profile: str, environ: Mapping[str, str] = os.environ) -> str:
    """How to make the chosen auth work: for github-oidc, the variables it lacks; else the token
    or profile setup."""
    if environ.get("DATABRICKS_AUTH_TYPE") != GITHUB_OIDC:
        return TOKEN_HELP.format(profile=profile)
    missing = [name for name in GITHUB_OIDC_CONFIG if not environ.get(name)]
    if not all(environ.get(name) for name in GITHUB_ID_TOKEN_REQUEST):
        missing.append(
            "/".join(GITHUB_ID_TOKEN_REQUEST)
            + " (GitHub Actions sets them in a job with `permissions: id-token: write`)"
        )
    if missing:
        return f"DATABRICKS_AUTH_TYPE={GITHUB_OIDC} needs " + ", ".join(missing)
    return (
        f"DATABRICKS_AUTH_TYPE={GITHUB_OIDC}: check the service principal's federation policy"
        " (issuer, subject, audience) against this workflow"
    )
