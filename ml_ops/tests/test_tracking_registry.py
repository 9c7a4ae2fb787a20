import mlflow
import pytest
from mlflow.exceptions import MlflowException

from diabetes_mlops.runtime.errors import ModelNotFoundError, ParameterError
from diabetes_mlops.runtime.parameters import VersionOrAlias
from diabetes_mlops.tracking.registry import champion, get_version
from diabetes_mlops.tracking.runs import (
    EXPERIMENT_KIND_TAG,
    name_run,
    tracked_run,
    use_experiment,
    use_registry,
)


def test_unity_catalog_registry_is_selected_for_a_three_level_name(mlflow_store):
    try:
        use_registry("unity_catalog", "main.ml.diabetes")
        assert mlflow.get_registry_uri() == "databricks-uc"
    finally:
        use_registry("workspace", "diabetes")
    assert mlflow.get_registry_uri() == mlflow_store


@pytest.mark.parametrize("name", ["diabetes", "main.diabetes", "main..diabetes"])
def test_unity_catalog_rejects_other_names(name):
    with pytest.raises(ParameterError, match="catalog.schema.model"):
        use_registry("unity_catalog", name)


def test_empty_model_name():
    with pytest.raises(ParameterError, match="model_name"):
        use_registry("workspace", "")


def test_experiment_artifacts_go_under_the_configured_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DIABETES_MLOPS_ARTIFACT_ROOT", str(tmp_path))
    experiment_id = use_experiment("/Shared/artifact root test")
    location = mlflow.get_experiment(experiment_id).artifact_location
    assert location.endswith("Shared_artifact_root_test") and str(tmp_path) in location
    assert use_experiment("/Shared/artifact root test") == experiment_id  # idempotent


def test_a_lost_creation_race_is_fine(monkeypatch):
    name = "/Shared/race test"
    real_create = mlflow.create_experiment

    def someone_else_was_first(experiment, artifact_location=None, tags=None):
        real_create(experiment, artifact_location=artifact_location)
        raise MlflowException("already exists")

    monkeypatch.setattr(mlflow, "create_experiment", someone_else_was_first)
    assert use_experiment(name) == mlflow.get_experiment_by_name(name).experiment_id


def test_an_experiment_this_project_creates_opens_on_its_runs():
    name = "/Shared/kind test"
    experiment = mlflow.get_experiment(use_experiment(name))
    assert experiment.tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
    with tracked_run("train") as run:
        name_run(run, "v3 (alpha 1)")
    assert mlflow.get_run(run.info.run_id).info.run_name == "train v3 (alpha 1)"


class BrokenClient:
    """A registry that answers with a server error rather than 'not found'."""

    def _fail(self, *args):
        raise MlflowException("registry unavailable", error_code="INTERNAL_ERROR")

    get_model_version = get_model_version_by_alias = _fail


def test_registry_errors_other_than_not_found_are_not_hidden():
    with pytest.raises(MlflowException, match="unavailable"):
        get_version(BrokenClient(), "diabetes", "champion")
    with pytest.raises(MlflowException, match="unavailable"):
        champion(BrokenClient(), "diabetes")  # never mistaken for "no champion yet"


class NoCallClient:
    """A registry that must not be asked: the reference is refused before any lookup."""

    def __getattr__(self, name):
        raise AssertionError(f"the registry was asked ({name})")


@pytest.mark.parametrize("ref", ["01", "0", "٣", "²", "3.0", "-1", "cham pion"])
def test_a_reference_the_parameter_rule_refuses_is_no_lookup_either(ref):
    """One rule for what names a version: the pre-run check and the registry agree."""
    assert VersionOrAlias().problem(ref) is not None
    with pytest.raises(ModelNotFoundError, match="must be a version number or an alias"):
        get_version(NoCallClient(), "diabetes", ref)


@pytest.mark.parametrize("ref, method", [("3", "get_model_version"), ("champion", "alias")])
def test_what_the_rule_accepts_is_looked_up_as_what_it_took_it_for(ref, method):
    asked = []

    class Client:
        def get_model_version(self, name, version):
            asked.append(("get_model_version", version))
            return "v"

        def get_model_version_by_alias(self, name, alias):
            asked.append(("alias", alias))
            return "v"

    assert VersionOrAlias().problem(ref) is None
    assert get_version(Client(), "diabetes", ref) == "v"
    assert asked == [(method, ref)]


def test_an_error_is_one_line_whatever_its_message():
    from diabetes_mlops.runtime.errors import first_line

    assert first_line(ValueError("bad value\n  at line 3")) == "bad value"
    assert first_line(RuntimeError("")) == "RuntimeError"
    assert first_line(OSError("  \n")) == "OSError"
    assert first_line(ValueError("packed", "in two parts")) == "packed; in two parts"
    assert first_line(ValueError("x" * 300), limit=200) == "x" * 200
