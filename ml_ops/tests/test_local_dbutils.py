import pytest

from diabetes_mlops.local.dbutils import (
    InputWidgetNotDefined,
    LocalDbutils,
    NotebookExit,
    Secrets,
    local_path,
)
from diabetes_mlops.runtime.errors import ParameterError


def make(tmp_path, parameters=None, environ=None, store=None, task="t"):
    return LocalDbutils(
        parameters or {}, tmp_path, {} if store is None else store, task, environ or {}
    )


def test_widgets_take_job_parameters_over_defaults(tmp_path):
    dbutils = make(tmp_path, {"a": "from-job"})
    dbutils.widgets.text("a", "default")
    dbutils.widgets.text("b", "default-b", "label")
    dbutils.widgets.combobox("c", "x", ["x", "y"])
    dbutils.widgets.multiselect("d", "x", ["x", "y"])
    assert dbutils.widgets.getAll() == {"a": "from-job", "b": "default-b", "c": "x", "d": "x"}
    with pytest.raises(InputWidgetNotDefined):
        dbutils.widgets.get("undeclared")
    dbutils.widgets.remove("b")
    with pytest.raises(InputWidgetNotDefined):
        dbutils.widgets.get("b")
    dbutils.widgets.removeAll()
    assert dbutils.widgets.getAll() == {}


def test_a_passed_parameter_reads_without_a_widget(tmp_path):
    """As a job parameter pushed down to a Databricks notebook task that declares no widget."""
    dbutils = make(tmp_path, {"rmse_tolerance": "0.1"})
    assert dbutils.widgets.get("rmse_tolerance") == "0.1"
    assert dbutils.job_context.get_param("rmse_tolerance") == "0.1"
    assert dbutils.job_context.get_param("seed") is None


def test_dropdown_rejects_a_value_outside_its_choices(tmp_path):
    dbutils = make(tmp_path, {"registry": "hive"})
    with pytest.raises(ParameterError, match="'hive' is not one of"):
        dbutils.widgets.dropdown("registry", "workspace", ["workspace", "unity_catalog"])


def test_secrets_come_from_environment_variables(tmp_path):
    dbutils = make(tmp_path, environ={"SECRET__ML_TEAM__API_KEY": "s3cret"})
    assert dbutils.secrets.get(scope="ml-team", key="api-key") == "s3cret"
    assert dbutils.secrets.getBytes("ml-team", "api-key") == b"s3cret"
    with pytest.raises(KeyError, match="export SECRET__ML_TEAM__OTHER") as info:
        dbutils.secrets.get("ml-team", "other")
    assert "s3cret" not in str(info.value)
    assert Secrets.variable("a.b", "c d") == "SECRET__A_B__C_D"


def test_task_values_flow_between_tasks(tmp_path):
    store = {}
    make(tmp_path, store=store, task="train").jobs.taskValues.set("model_version", "3")
    reader = make(tmp_path, store=store, task="validate").jobs.taskValues
    assert reader.get(taskKey="train", key="model_version") == "3"
    assert reader.get("train", "other", default="d") == "d"
    with pytest.raises(ValueError, match="set no value"):
        reader.get("train", "other")
    with pytest.raises(TypeError):
        make(tmp_path, store=store).jobs.taskValues.set("bad", object())


def test_notebook_exit_stops_with_a_value(tmp_path):
    with pytest.raises(NotebookExit) as info:
        make(tmp_path).notebook.exit("done")
    assert info.value.value == "done"


@pytest.mark.parametrize(
    "path, relative",
    [
        ("dbfs:/FileStore/x.csv", "dbfs/FileStore/x.csv"),
        ("/dbfs/FileStore/x.csv", "dbfs/FileStore/x.csv"),
        ("/Volumes/main/diabetes/data/x.csv", "Volumes/main/diabetes/data/x.csv"),
    ],
)
def test_databricks_paths_map_into_the_local_folder(tmp_path, path, relative):
    assert local_path(path, tmp_path) == tmp_path / relative
    assert make(tmp_path).job_context.resolve_path(path) == str(tmp_path / relative)


def test_other_paths_stay_where_they_are(tmp_path):
    assert local_path("/tmp/x.csv", tmp_path).as_posix() == "/tmp/x.csv"
    assert local_path("rel/x.csv", tmp_path).is_absolute()


@pytest.mark.parametrize(
    "path", ["/Volumes/../../x", "/Volumes/main/../../etc", "dbfs:/../x", "/dbfs/a/../../x"]
)
def test_mapped_paths_cannot_climb_out_of_the_local_folder(tmp_path, path):
    with pytest.raises(ParameterError, match="climbs out of"):
        local_path(path, tmp_path)
    with pytest.raises(ParameterError, match="climbs out of"):
        make(tmp_path).job_context.resolve_spark_path(path)


def test_dots_that_stay_inside_are_resolved(tmp_path):
    assert local_path("/Volumes/main/../x/./y", tmp_path) == tmp_path / "Volumes/x/y"
    assert local_path("dbfs:/", tmp_path) == tmp_path / "dbfs"


def test_a_table_name_is_not_taken_for_a_path(tmp_path):
    """input_format / data_format `table`: Spark resolves the name, not the local folder."""
    context = make(tmp_path).job_context
    assert context.resolve_spark_path("main.diabetes.training") == "main.diabetes.training"
    assert context.resolve_spark_path("`my-cat`.s.t") == "`my-cat`.s.t"
    volume = context.resolve_spark_path("/Volumes/main/d/x.csv")
    assert volume == str(tmp_path / "Volumes/main/d/x.csv")
