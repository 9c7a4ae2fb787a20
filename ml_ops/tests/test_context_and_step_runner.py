import io
import logging

import pytest

from diabetes_mlops.local.dbutils import LocalDbutils, LocalJobContext
from diabetes_mlops.runtime.context import DatabricksJobContext, FilePath, context_for
from diabetes_mlops.runtime.errors import ParameterError
from diabetes_mlops.runtime.step_runner import bind_parameters, configure_logging, convert, run_step
from diabetes_mlops.steps import parameter_rules, promote
from diabetes_mlops.steps import run_step as run_notebook_step


class FakeWidgets:
    """What a Databricks notebook's dbutils.widgets does: raises for undeclared widgets."""

    def __init__(self, values):
        self.values = values

    def get(self, name):
        if name not in self.values:
            raise RuntimeError(f"InputWidgetNotDefined: {name}")
        return self.values[name]


class FakeDbutils:
    def __init__(self, values):
        self.widgets = FakeWidgets(values)
        self.task_values = {}
        outer = self

        class TaskValues:
            def set(self, key, value):
                outer.task_values[key] = value

        class Jobs:
            taskValues = TaskValues()

        class Secrets:
            def get(self, scope, key):
                return f"{scope}/{key}"

        self.jobs = Jobs()
        self.secrets = Secrets()


def step(
    data: FilePath, count: int, ratio: float, flag: bool, grid: tuple[float, ...], name: str = "x"
):
    return {"seen": [data, count, ratio, flag, grid, name]}


def test_databricks_context_reads_widgets_secrets_and_publishes_task_values():
    dbutils = FakeDbutils({"a": "1"})
    context = context_for(dbutils)
    assert isinstance(context, DatabricksJobContext)
    assert context.get_param("a") == "1" and context.get_param("undeclared") is None
    assert context.get_secret("scope", "key") == "scope/key"
    context.set_task_value("k", "v")
    assert dbutils.task_values == {"k": "v"}


@pytest.mark.parametrize(
    "path, expected",
    [
        ("dbfs:/tmp/x.csv", "/dbfs/tmp/x.csv"),
        ("/Volumes/c/s/v/x.csv", "/Volumes/c/s/v/x.csv"),
        ("/dbfs/tmp/x.csv", "/dbfs/tmp/x.csv"),
    ],
)
def test_databricks_context_makes_paths_usable_by_local_file_apis(path, expected):
    assert DatabricksJobContext(FakeDbutils({})).resolve_path(path) == expected


def test_local_dbutils_brings_its_own_context(tmp_path):
    dbutils = LocalDbutils({}, tmp_path, {}, "t")
    assert isinstance(context_for(dbutils), LocalJobContext)


def test_run_step_converts_widgets_by_annotation_and_publishes_outputs():
    values = {"data": "dbfs:/d.csv", "count": "3", "ratio": "0.5", "flag": "Yes", "grid": "1, 2.5"}
    dbutils = FakeDbutils(values)
    outputs = run_step(step, dbutils)
    assert outputs["seen"] == ["/dbfs/d.csv", 3, 0.5, True, (1.0, 2.5), "x"]
    assert dbutils.task_values == outputs


def test_a_step_parameter_without_widget_or_default_is_an_error():
    with pytest.raises(ParameterError, match="needs parameter 'count'"):
        bind_parameters(step, context_for(FakeDbutils({"data": "x"})))


@pytest.mark.parametrize(
    "kind, text, message",
    [
        (int, "1.5", "expected an integer"),
        (float, "abc", "expected a number"),
        (bool, "maybe", "true or false"),
        (tuple[float, ...], "1,x", "comma-separated"),
        (int, "  ", "is empty"),
        (FilePath, "", "is empty"),
    ],
)
def test_conversion_errors_name_the_parameter(kind, text, message):
    with pytest.raises(ParameterError, match=f"'p'.*{message}|{message}"):
        convert("p", text, kind, context_for(FakeDbutils({})))


def test_unsupported_annotation_is_a_programming_error():
    with pytest.raises(TypeError, match="unsupported"):
        convert("p", "1", dict, context_for(FakeDbutils({})))


def test_step_logs_go_to_the_current_stdout(monkeypatch):
    configure_logging()
    buffer = io.StringIO()
    monkeypatch.setattr("sys.stdout", buffer)
    logging.getLogger("diabetes_mlops.test").info("hello")
    assert "hello" in buffer.getvalue()


def test_a_pushed_down_job_parameter_another_step_refuses_stops_the_first_task():
    """The train task sees the job's rmse_tolerance, which only validate takes: refused before
    train runs, so nothing is registered by a job whose validate task would fail."""
    ran = []

    def first_step(name: str = "x"):
        ran.append(name)

    dbutils = FakeDbutils({"name": "ok", "rmse_tolerance": "-5", "seed": "7"})
    with pytest.raises(ParameterError) as info:
        run_step(first_step, dbutils, known=parameter_rules())
    assert str(info.value) == "parameter 'rmse_tolerance': must be >= 0, got '-5'"
    assert ran == [] and dbutils.task_values == {}
    assert (
        run_step(first_step, FakeDbutils({"rmse_tolerance": "0.1"}), known=parameter_rules()) == {}
    )
    assert ran == ["x"]


def test_the_notebook_run_step_judges_every_step_parameter_it_can_see(model_name):
    dbutils = FakeDbutils(
        {"model_name": model_name, "model_version": "1", "registry": "workspace", "seed": "-1"}
    )
    with pytest.raises(ParameterError, match="parameter 'seed': must be between 0 and"):
        run_notebook_step(promote, dbutils)  # promote itself would say: no such model


def test_every_problem_the_task_can_see_is_one_line_of_the_error():
    def first_step(count: int):
        raise AssertionError("never runs")

    dbutils = FakeDbutils({"count": "x", "seed": "-1", "engine": "dask"})
    with pytest.raises(ParameterError) as info:
        run_step(first_step, dbutils, known=parameter_rules())
    assert str(info.value).splitlines() == [
        "parameter 'count': expected an integer, got 'x'",
        "parameter 'seed': must be between 0 and 4294967295, got '-1'",
        "parameter 'engine': must be one of spark, pandas, got 'dask'",
    ]
