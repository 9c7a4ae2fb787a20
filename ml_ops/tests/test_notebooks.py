import pytest

from diabetes_mlops.jobs.notebooks import NotebookError, parse_notebook


def write(tmp_path, text, name="nb.py"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_training_notebook(repo):
    notebook = parse_notebook(repo / "orchestrator_notebooks" / "diabetes_orchestrator_train.py")
    assert notebook.cells[0].magic == "%md"
    assert set(notebook.widgets) == {
        "data_path",
        "data_format",
        "max_training_rows",
        "model_name",
        "experiment_name",
        "registry",
        "alphas",
        "test_size",
        "cv_folds",
        "seed",
    }
    assert notebook.steps == ["train"]  # its `run_step(train, dbutils)` line
    registry = notebook.widgets["registry"]
    assert registry.kind == "dropdown" and registry.choices == ("workspace", "unity_catalog")
    assert not any(w.required for w in notebook.widgets.values())


def test_empty_default_means_required(repo):
    notebook = parse_notebook(repo / "orchestrator_notebooks" / "diabetes_orchestrator_validate.py")
    assert [w.name for w in notebook.widgets.values() if w.required] == ["model_version"]


def test_cells_keep_their_file_line_numbers(tmp_path):
    path = write(
        tmp_path,
        "# Databricks notebook source\nx = 1\n\n# COMMAND ----------\n\n"
        "dbutils.widgets.text(name='a', defaultValue='1')\n",
    )
    notebook = parse_notebook(path)
    assert [c.first_line for c in notebook.cells] == [2, 5]
    assert notebook.widgets["a"].default == "1"
    assert notebook.cells[1].source.splitlines()[1].startswith("dbutils")


def test_the_steps_a_notebook_runs_are_read_from_its_run_step_calls(tmp_path):
    path = write(
        tmp_path,
        "# Databricks notebook source\nfrom diabetes_mlops import steps\n"
        "steps.run_step(steps.train, dbutils)\n# COMMAND ----------\nrun_step(score, dbutils)\n"
        "print(run_step)\n",
    )
    assert parse_notebook(path).steps == ["train", "score"]


def test_magic_cells_are_recognised(tmp_path):
    path = write(tmp_path, "# Databricks notebook source\n# MAGIC %pip install x\n")
    assert parse_notebook(path).cells[0].magic == "%pip"


@pytest.mark.parametrize(
    "text, message",
    [
        ("print(1)\n", "not a Databricks source notebook"),
        ("# Databricks notebook source\ndef (:\n", "nb.py:2: syntax error"),
        (
            "# Databricks notebook source\ndbutils.widgets.text('a', DEFAULT)\n",
            "nb.py:2: widget arguments must be literals",
        ),
        ("# Databricks notebook source\ndbutils.widgets.text('a')\n", "a widget needs a name"),
    ],
)
def test_unusable_notebooks(tmp_path, text, message):
    with pytest.raises(NotebookError, match=message):
        parse_notebook(write(tmp_path, text))


def test_unreadable_notebook(tmp_path):
    with pytest.raises(NotebookError, match="cannot read notebook"):
        parse_notebook(tmp_path / "missing.py")
