"""What names a model version in a job parameter or a registry lookup: a version number or an
alias. One rule, so that a value the pre-run checks accept is looked up as what they took it for.
"""

from __future__ import annotations

import re

# MLflow numbers versions from 1 and in ASCII digits: "01" or "٣" (str.isdigit) names none.
VERSION_NUMBER = re.compile(r"[1-9][0-9]*")
ALIAS = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")  # MLflow's alias characters
PROBLEM = "must be a version number or an alias (letters, digits, '_' and '-')"


def is_version_number(ref: str) -> bool:
    return VERSION_NUMBER.fullmatch(ref) is not None


def is_alias(ref: str) -> bool:
    return ALIAS.fullmatch(ref) is not None
