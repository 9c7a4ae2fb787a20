"""The everyday tier's share of the long case matrices.

`make test` runs a few cases of each kind of failure (a header problem, a value problem, a
category problem, a row that does not parse, an encoding problem); `make test-all` runs them all.
A case outside the everyday share is marked `slow`, so it is deselected, never skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest


def sampled(cases: Mapping[str, Any], everyday: Iterable[str]) -> list[Any]:
    """pytest.param per case, id = its name; the cases not in `everyday` are marked slow."""
    everyday = set(everyday)
    unknown = everyday - set(cases)
    assert not unknown, f"no such cases: {sorted(unknown)}"
    return [
        pytest.param(case, id=name, marks=() if name in everyday else pytest.mark.slow)
        for name, case in cases.items()
    ]
