"""Who a workspace resource belongs to: the project and the deploy.yml target that made it.

Jobs, MLflow experiments and serving endpoints carry two tags, `project` and `target`. A deploy
(or a rollout) changes or deletes only what carries this project's name and its own target's:
several targets (staging and prod, one per developer) may share a workspace, and a name alone
cannot tell their resources apart. docs/deploy.md, "Who owns what", has the rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PROJECT = "diabetes-mlops"
# The deploy.yml target of the local runner, which no workspace holds.
LOCAL_TARGET = "local"
PROJECT_TAG, TARGET_TAG = "project", "target"


def owner_tags(target: str) -> dict[str, str]:
    """The tags a resource of `target` carries."""
    return {PROJECT_TAG: PROJECT, TARGET_TAG: target}


@dataclass(frozen=True)
class Owner:
    project: str | None  # None: no project tag
    target: str | None  # None: no target tag (made before resources carried one)

    @classmethod
    def of(cls, tags: Mapping[str, str] | None) -> Owner:
        tags = tags or {}
        return cls(tags.get(PROJECT_TAG), tags.get(TARGET_TAG))

    @classmethod
    def of_tags(cls, tags: Iterable[Any] | None) -> Owner:
        """From a list of tag objects with `key` and `value` (experiments, serving endpoints)."""
        return cls.of({t.key: t.value or "" for t in tags or [] if t.key})

    @property
    def ours(self) -> bool:
        """Made by this project (for some target, or before targets were tagged)."""
        return self.project == PROJECT

    def is_target(self, target: str) -> bool:
        return self.ours and self.target == target
