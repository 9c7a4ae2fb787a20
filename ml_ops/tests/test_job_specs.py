import copy
import json

import pytest

from diabetes_mlops.cli import main
from diabetes_mlops.jobs.specs import SpecError, check_spec, load_json


@pytest.fixture
def notebooks(repo):
    return repo / "orchestrator_notebooks"


@pytest.fixture
def training(repo):
    return json.loads((repo / "job_specs" / "diabetes_model_training.json").read_text())


def base(spec, index):
    """Task `index`'s base_parameters (created when the task has none)."""
    return spec["tasks"][index]["notebook_task"].setdefault("base_parameters", {})


def job_parameter(spec, name):
    return next(p for p in spec["parameters"] if p["name"] == name)


def problems(tmp_path, notebooks, spec) -> str:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec, indent=2))
    with pytest.raises(SpecError) as info:
        check_spec(path, notebooks)
    assert all(line.startswith(str(path)) for line in info.value.problems)
    return str(info.value)


def test_shipped_specs_are_valid(repo, notebooks):
    training = check_spec(repo / "job_specs" / "diabetes_model_training.json", notebooks)
    assert [t.key for t in training.tasks] == [
        "train",
        "validate",
        "approval",
        "promote",
        "deploy_serving",
    ]
    assert training.tasks[1].parameters["model_version"] == "{{tasks.train.values.model_version}}"
    assert training.tasks[0].parameters["model_name"] == "diabetes"  # from the job parameters
    # Every job parameter reaches every task, as Databricks pushes them down.
    assert training.tasks[2].parameters["rmse_tolerance"] == "0.0"
    assert set(training.job_parameters) <= set(training.tasks[2].parameters)
    scoring = check_spec(repo / "job_specs" / "diabetes_batch_scoring.json", notebooks)
    assert scoring.name == "diabetes-batch-scoring"
    for spec in (training, scoring):
        assert spec.settings["max_concurrent_runs"] == 1
        assert spec.settings["schedule"]["quartz_cron_expression"]


def test_malformed_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "name": "x",\n  "tasks": [\n}\n')
    with pytest.raises(SpecError, match=r"bad.json:4:1: invalid JSON"):
        load_json(path)
    path.write_text("[]")
    with pytest.raises(SpecError, match="JSON object"):
        load_json(path)
    with pytest.raises(SpecError, match="cannot read spec"):
        load_json(tmp_path / "missing.json")


def test_unknown_field_is_named(tmp_path, notebooks, training):
    training["tasks"][0]["notebook_task"]["base_parameter"] = {}
    training["max_concurent_runs"] = 1
    text = problems(tmp_path, notebooks, training)
    assert "unknown field 'tasks[0].notebook_task.base_parameter' (not in NotebookTask)" in text
    assert "unknown field 'max_concurent_runs'" in text


def test_invalid_enum_value(tmp_path, notebooks, training):
    training["schedule"]["pause_status"] = "STOPPED"
    assert "field 'schedule.pause_status': invalid value" in problems(tmp_path, notebooks, training)


def test_wrong_shape(tmp_path, notebooks, training):
    training["schedule"] = "daily"
    assert "field 'schedule': expected an object" in problems(tmp_path, notebooks, training)


MUTATIONS = {
    "notebook missing": (
        lambda s: s["tasks"][0]["notebook_task"].update(notebook_path="${notebooks_dir}/nope"),
        "notebook 'nope' is not in",
    ),
    "undeclared parameter": (
        lambda s: base(s, 0).update(learning_rate="1"),
        "passes parameter 'learning_rate' that diabetes_orchestrator_train.py does not declare",
    ),
    "required parameter omitted": (
        lambda s: s["tasks"][1]["notebook_task"]["base_parameters"].pop("model_version"),
        "omits parameter 'model_version', which diabetes_orchestrator_validate.py declares"
        " with no default",
    ),
    "literal cluster id": (
        lambda s: s["tasks"][0].update(existing_cluster_id="0123-456789-abcdef"),
        "existing_cluster_id must be a placeholder",
    ),
    "no cluster": (lambda s: s["tasks"][0].pop("existing_cluster_id"), "names no cluster"),
    "wheel missing": (
        lambda s: s["tasks"][2].update(libraries=[{"whl": "${wheel.diabetes}"}]),
        "does not attach the wheel ${wheel.diabetes_mlops}",
    ),
    "unknown placeholder": (
        lambda s: s["tasks"][0].update(existing_cluster_id="${clusterid}"),
        "unknown placeholder '${clusterid}'",
    ),
    "unknown dependency": (
        lambda s: s["tasks"][1].update(depends_on=[{"task_key": "trian"}]),
        "depends on unknown task 'trian'",
    ),
    "cycle": (
        lambda s: s["tasks"][0].update(depends_on=[{"task_key": "promote"}]),
        "depend on each other",
    ),
    "reference to a task that is not upstream": (
        lambda s: base(s, 1).update(model_version="{{tasks.promote.values.x}}"),
        "reads a value of task 'promote', which is not upstream",
    ),
    "unsupported reference": (
        lambda s: base(s, 1).update(model_version="{{job.trigger}}"),
        "unsupported reference '{{job.trigger}}'",
    ),
    "job parameter nobody declares": (
        lambda s: s["parameters"].append({"name": "colour", "default": "red"}),
        "job parameter 'colour' is declared by no task's notebook",
    ),
    "job and task parameter clash": (
        lambda s: base(s, 0).update(model_name="x"),
        "'model_name' is both a job and a task parameter",
    ),
    "non-string parameter": (
        lambda s: base(s, 0).update(seed=42),
        "field 'tasks[0].notebook_task.base_parameters.seed': expected a string, got int 42",
    ),
    "dropdown value outside its choices": (
        lambda s: job_parameter(s, "registry").update(default="hive"),
        "parameter 'registry'='hive' is not one of",
    ),
    "not a notebook task": (lambda s: s["tasks"][0].pop("notebook_task"), "only notebook tasks"),
    "task without task_key": (
        lambda s: s["tasks"][0].pop("task_key"),
        "field 'tasks[0].task_key' is missing",
    ),
    "duplicate task_key": (
        lambda s: s["tasks"][1].update(task_key="train"),
        "task_key 'train' is used by more than one task",
    ),
    "dependency without task_key": (
        lambda s: s["tasks"][1]["depends_on"].append({}),
        "field 'tasks[1].depends_on[1].task_key' is missing",
    ),
    "job parameter without name": (
        lambda s: s["parameters"][0].pop("name"),
        "field 'parameters[0].name' is missing",
    ),
    "job parameter declared twice": (
        lambda s: s["parameters"].append({"name": "registry", "default": "workspace"}),
        "job parameter 'registry' is declared more than once",
    ),
    "string where an integer belongs": (
        lambda s: s.update(max_concurrent_runs="1"),
        "field 'max_concurrent_runs': expected an integer, got str '1'",
    ),
    "list where an object belongs": (
        lambda s: s["tasks"][0]["notebook_task"].update(base_parameters=["a"]),
        "field 'tasks[0].notebook_task.base_parameters': expected an object",
    ),
    "no tasks": (lambda s: s.update(tasks=[]), "no tasks"),
}


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_each_kind_of_bad_spec_is_reported(case, tmp_path, notebooks, training):
    mutate, message = MUTATIONS[case]
    spec = copy.deepcopy(training)
    mutate(spec)
    assert message in problems(tmp_path, notebooks, spec)


def test_validate_command(repo, tmp_path, capsys, monkeypatch, training):
    monkeypatch.chdir(repo)
    assert main(["validate"]) == 0
    assert "ok job_specs/diabetes_model_training.json" in capsys.readouterr().out
    training["tasks"][0]["bogus"] = 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(training))
    assert main(["validate", str(bad)]) == 1
    assert "unknown field 'tasks[0].bogus'" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 2
