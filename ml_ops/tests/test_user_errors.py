"""One base for every error a user can fix: callers catch `UserError`, not a list of classes."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import diabetes
import diabetes_mlops
from diabetes.errors import InputRefused, UserError
from diabetes_mlops.cli import main

# Exceptions used as signals inside the code, never shown to a user.
INTERNAL = {
    "diabetes.linear_form.NotLinear",  # a model that is not linear: scored another way
    "diabetes_mlops.data.directory_swap.ExchangeUnsupported",  # no atomic exchange: two renames
    "diabetes_mlops.local.dbutils.InputWidgetNotDefined",  # what dbutils raises, for notebooks
    "diabetes_mlops.local.dbutils.NotebookExit",  # dbutils.notebook.exit
    "diabetes_mlops.serving.rollout._Failure",  # a rollout step failed: roll back
    "diabetes_mlops.serving.rollout._Foreign",  # an endpoint we do not own: leave it
}


def exception_classes() -> dict[str, type[BaseException]]:
    found = {}
    for package in (diabetes, diabetes_mlops):
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if (
                    inspect.isclass(value)
                    and issubclass(value, BaseException)
                    and value.__module__ == info.name
                ):
                    found[f"{info.name}.{name}"] = value
    return found


def test_every_error_a_user_can_meet_derives_from_user_error():
    classes = exception_classes()
    assert set(classes) >= INTERNAL
    not_user = (
        {name for name, cls in classes.items() if not issubclass(cls, UserError)}
        - INTERNAL
        - {"diabetes.errors.UserError", "diabetes.errors.InputRefused"}
    )
    assert not_user == set()
    assert len(classes) - len(INTERNAL) >= 18  # the user errors of both packages


def test_input_refused_before_any_work_exits_2_and_a_failure_exits_1(capsys, tmp_path):
    refused = main(["run-local", str(tmp_path / "missing.json")])
    assert refused == 2 and issubclass(
        importlib.import_module("diabetes_mlops.jobs.specs").SpecError, InputRefused
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err and all(line.startswith("error: ") for line in err)
    assert "missing.json" in err[0]
    assert not issubclass(importlib.import_module("diabetes_mlops.deploy.jobs").DeployError,
                          InputRefused)  # fmt: skip
