"""Names Model Serving accepts, and the per-user part of a dev endpoint's name.

An endpoint name may hold letters, digits, dashes and underscores (databricks-sdk's
`ServingEndpointsAPI.create` docstring, databricks/sdk/service/serving.py; REST reference
https://docs.databricks.com/api/azure/workspace/servingendpoints/create). The docs name no length
limit that we could find: 63 characters is this project's own cap, the common DNS-label bound, so
a name too long for some part of the platform is refused before a deploy rather than half-way.

A dev endpoint is per developer, but a user name is an email, which is no endpoint name: deploy.yml
writes `{user_slug}`, which the deployer fills with `user_slug(user)`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from diabetes_mlops.runtime.parameters import Rule

MAX_ENDPOINT_NAME = 63
USER_SLUG_MARKER = "{user_slug}"
USER_SLUG_MAX = 32
_NAME = re.compile(r"[A-Za-z0-9_-]+")


def user_slug(user: str) -> str:
    """`alice.smith@example.com` -> `alice-smith-example-com`: lower case, every run of other
    characters one dash, at most USER_SLUG_MAX characters. A longer one keeps its start and
    gets a hash of the whole name, so two long names that share a start still differ."""
    slug = re.sub(r"[^a-z0-9]+", "-", user.lower()).strip("-") or "user"
    if len(slug) <= USER_SLUG_MAX:
        return slug
    digest = hashlib.sha256(user.encode()).hexdigest()[:8]
    return f"{slug[: USER_SLUG_MAX - 9].rstrip('-')}-{digest}"


def endpoint_name_problem(name: str) -> str | None:
    """What is wrong with `name` as a serving endpoint name; None when it is usable or empty
    (empty: the target has no endpoint). A `{user_slug}` marker, which only a deploy can fill,
    counts as the longest slug it can become."""
    if not name:
        return None
    longest = name.replace(USER_SLUG_MARKER, "u" * USER_SLUG_MAX)
    if not _NAME.fullmatch(longest):
        return "a serving endpoint name holds only letters, digits, '-' and '_'"
    if len(longest) > MAX_ENDPOINT_NAME:
        return f"a serving endpoint name has at most {MAX_ENDPOINT_NAME} characters"
    return None


@dataclass(frozen=True)
class ServingEndpointName(Rule):
    """A step parameter's rule: empty (the target serves no endpoint) or a usable name."""

    def problem(self, value: Any) -> str | None:
        return endpoint_name_problem(value)
