"""Condition and run_job tasks: a job decides in its spec whether to run another.

The specs here are small ones of their own (a `monitor` notebook that sets task values with
`dbutils.jobs.taskValues.set`, a `train` notebook, no Spark), in a folder of their own: the shape
is the one the batch-scoring job gets (monitor -> drift_check -> retrain).
"""

import copy
import json

import pytest

from diabetes_mlops.cli import main
from diabetes_mlops.jobs.control_tasks import ConditionError, evaluate
from diabetes_mlops.jobs.specs import SpecError, check_job_references, check_spec
from diabetes_mlops.local.runner import EXCLUDED, FAILED, SKIPPED, SUCCESS, LocalRunner
from diabetes_mlops.runtime.errors import ParameterError

COMPUTE = {
    "existing_cluster_id": "${cluster_id}",
    "libraries": [{"whl": "${wheel.diabetes}"}, {"whl": "${wheel.diabetes_mlops}"}],
}
MONITOR = [
    "dbutils.widgets.text('drift', '0.5')\ndbutils.widgets.text('threshold', '0.3')",
    "drift = float(dbutils.widgets.get('drift'))\n" "dbutils.jobs.taskValues.set('drift', drift)\n"
    # A Python bool: a reference reads it as "true"/"false", as on Databricks.
    "dbutils.jobs.taskValues.set('retrain', drift > float(dbutils.widgets.get('threshold')))\n"
    "dbutils.jobs.taskValues.set('shape', [1, 2])",
]
TRAIN = [
    "dbutils.widgets.text('reason', 'schedule')\ndbutils.widgets.text('fail', 'no')",
    "if dbutils.widgets.get('fail') == 'yes':\n    raise RuntimeError('training broke')\n"
    "dbutils.jobs.taskValues.set('trained_for', dbutils.widgets.get('reason'))",
]
DRIFT_CHECK = {
    "task_key": "drift_check",
    "depends_on": [{"task_key": "monitor"}],
    "condition_task": {
        "op": "EQUAL_TO",
        "left": "{{tasks.monitor.values.retrain}}",
        "right": "true",
    },
}
RETRAIN = {
    "task_key": "retrain",
    "depends_on": [{"task_key": "drift_check", "outcome": "true"}],
    "run_job_task": {
        "job_id": "${job_id.training}",
        "job_parameters": {"reason": "drift {{tasks.monitor.values.drift}}"},
    },
}
SCORING = {
    "name": "scoring",
    "tasks": [
        {"task_key": "monitor", "notebook_task": {"notebook_path": "${notebooks_dir}/monitor"},
         **COMPUTE},
        DRIFT_CHECK,
        RETRAIN,
    ],
}  # fmt: skip
TRAINING = {
    "name": "training",
    "parameters": [{"name": "reason", "default": "schedule"}, {"name": "fail", "default": "no"}],
    "tasks": [
        {"task_key": "train", "notebook_task": {"notebook_path": "${notebooks_dir}/train"},
         **COMPUTE},
    ],
}  # fmt: skip


def notebook(folder, name, cells):
    source = "# Databricks notebook source\n" + "\n# COMMAND ----------\n".join(cells)
    (folder / f"{name}.py").write_text(source)


@pytest.fixture
def folder(tmp_path):
    """<tmp>/job_specs/{scoring,training}.json and <tmp>/notebooks/{monitor,train}.py."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    notebook(notebooks, "monitor", MONITOR)
    notebook(notebooks, "train", TRAIN)
    specs = tmp_path / "job_specs"
    specs.mkdir()
    write(specs / "scoring.json", SCORING)
    write(specs / "training.json", TRAINING)
    return specs


def write(path, spec):
    path.write_text(json.dumps(spec, indent=2))
    return path


def notebooks_of(folder):
    return folder.parent / "notebooks"


# --- the validator -----------------------------------------------------------------------------


def test_the_retraining_shape_is_accepted(folder):
    spec = check_spec(folder / "scoring.json", notebooks_of(folder))
    assert [t.key for t in spec.tasks] == ["monitor"]  # `tasks`: the notebook tasks only
    assert [t.key for t in spec.control_tasks] == ["drift_check", "retrain"]
    assert [t.key for t in spec.all_tasks] == ["monitor", "drift_check", "retrain"]
    condition, run_job = spec.control_tasks
    assert (condition.op, condition.left, condition.right) == (
        "EQUAL_TO",
        "{{tasks.monitor.values.retrain}}",
        "true",
    )
    assert run_job.job == "training" and run_job.outcomes == {"drift_check": "true"}
    assert spec.referenced_jobs == ["training"]
    training = check_spec(folder / "training.json", notebooks_of(folder))
    check_job_references([spec, training])  # raises on a problem


def task(spec, key):
    return next(t for t in spec["tasks"] if t["task_key"] == key)


BAD = {
    "condition without right": (
        lambda s: task(s, "drift_check")["condition_task"].pop("right"),
        "task 'drift_check': condition_task needs op, left and right; missing: right",
    ),
    "unknown operator": (
        lambda s: task(s, "drift_check")["condition_task"].update(op="EQUALS"),
        "task 'drift_check': field 'tasks[1].condition_task.op': invalid value",
    ),
    "outcome on a dependency on a notebook task": (
        lambda s: task(s, "retrain")["depends_on"].append(
            {"task_key": "monitor", "outcome": "true"}
        ),
        "task 'retrain': depends on 'monitor' with outcome 'true', but 'monitor' is not a"
        " condition task",
    ),
    "outcome neither true nor false": (
        lambda s: task(s, "retrain")["depends_on"][0].update(outcome="yes"),
        "task 'retrain': depends on 'drift_check' with outcome 'yes': it is 'true' or 'false'",
    ),
    "cluster on a condition task": (
        lambda s: task(s, "drift_check").update(existing_cluster_id="${cluster_id}"),
        "task 'drift_check': a condition task runs on no cluster: remove existing_cluster_id",
    ),
    "libraries on a run_job task": (
        lambda s: task(s, "retrain").update(libraries=COMPUTE["libraries"]),
        "task 'retrain': a run_job task runs on no cluster: remove libraries",
    ),
    "a notebook on a condition task": (
        lambda s: task(s, "drift_check").update(notebook_task={"notebook_path": "x/monitor"}),
        "task 'drift_check': sets condition_task and notebook_task: a task has exactly one kind",
    ),
    "a kind of task not supported": (
        lambda s: s["tasks"].append({"task_key": "py", "spark_python_task": {"python_file": "x"}}),
        "task 'py': only notebook tasks (notebook_task.notebook_path), condition tasks",
    ),
    "literal job id": (
        lambda s: task(s, "retrain")["run_job_task"].update(job_id=1234),
        "task 'retrain': run_job_task.job_id is the literal id 1234: name the job by"
        " placeholder, ${job_id.<spec name>}, so that every target resolves its own job",
    ),
    "job id as a string of digits": (
        lambda s: task(s, "retrain")["run_job_task"].update(job_id="1234"),
        "task 'retrain': field 'tasks[2].run_job_task.job_id': expected ${job_id.<spec name>},"
        " got str '1234'",
    ),
    "another placeholder for the job id": (
        lambda s: task(s, "retrain")["run_job_task"].update(job_id="${cluster_id}"),
        "expected ${job_id.<spec name>}, got str '${cluster_id}'",
    ),
    "no job id": (
        lambda s: task(s, "retrain")["run_job_task"].pop("job_id"),
        "task 'retrain': run_job_task needs job_id: ${job_id.<spec name>}",
    ),
    "a job id placeholder where a string belongs": (
        lambda s: task(s, "monitor")["notebook_task"].update(
            base_parameters={"drift": "${job_id.training}"}
        ),
        "task 'monitor': placeholder '${job_id.training}' belongs in run_job_task.job_id only",
    ),
    "an int where a string belongs": (
        lambda s: s.update(max_concurrent_runs="${job_id.training}"),
        "field 'max_concurrent_runs': expected an integer, got str '${job_id.training}'",
    ),
    "legacy parameters of run_job_task": (
        lambda s: task(s, "retrain")["run_job_task"].update(notebook_params={"reason": "x"}),
        "task 'retrain': run_job_task.notebook_params: pass values as"
        " run_job_task.job_parameters",
    ),
    "condition reads a task that is not upstream": (
        lambda s: task(s, "drift_check")["condition_task"].update(
            right="{{tasks.retrain.values.x}}"
        ),
        "task 'drift_check' field 'condition_task.right' reads a value of task 'retrain', which"
        " is not upstream of it",
    ),
    "job parameter reads a task that is not upstream": (
        lambda s: task(s, "retrain")["run_job_task"].update(
            job_parameters={"reason": "{{tasks.nobody.values.x}}"}
        ),
        "task 'retrain' field 'run_job_task.job_parameters.reason' reads a value of task"
        " 'nobody', which is not upstream of it",
    ),
    "reads a value of a condition task": (
        lambda s: task(s, "retrain")["run_job_task"].update(
            job_parameters={"reason": "{{tasks.drift_check.values.x}}"}
        ),
        "reads a value of task 'drift_check', which sets no values (only notebook tasks do)",
    ),
    "unsupported reference in an operand": (
        lambda s: task(s, "drift_check")["condition_task"].update(left="{{job.trigger}}"),
        "task 'drift_check' field 'condition_task.left': unsupported reference '{{job.trigger}}'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_bad_form_is_one_line_naming_file_and_task(case, folder):
    mutate, message = BAD[case]
    spec = copy.deepcopy(SCORING)
    mutate(spec)
    path = write(folder / "scoring.json", spec)
    with pytest.raises(SpecError) as info:
        check_spec(path, notebooks_of(folder))
    lines = [line for line in info.value.problems if message in line]
    assert len(lines) == 1, info.value.problems
    assert lines[0].startswith(f"{path}: ")


def checked(folder):
    return [check_spec(p, notebooks_of(folder)) for p in sorted(folder.glob("*.json"))]


CROSS = {
    "unknown job": (
        lambda scoring, training: task(scoring, "retrain")["run_job_task"].update(
            job_id="${job_id.trainig}"
        ),
        "scoring.json: task 'retrain': ${job_id.trainig} names no spec in",
    ),
    "a job parameter the job does not declare": (
        lambda scoring, training: task(scoring, "retrain")["run_job_task"].update(
            job_parameters={"colour": "red"}
        ),
        "scoring.json: task 'retrain': passes job parameter 'colour', which job 'training'"
        " does not declare (it has: fail, reason)",
    ),
    "a cycle": (
        lambda scoring, training: training["tasks"].append(
            {"task_key": "score", "run_job_task": {"job_id": "${job_id.scoring}"}}
        ),
        "job 'scoring' runs itself through run_job tasks: scoring -> training -> scoring",
    ),
    "a job that runs itself": (
        lambda scoring, training: task(scoring, "retrain")["run_job_task"].update(
            job_id="${job_id.scoring}", job_parameters={}
        ),
        "scoring.json: job 'scoring' runs itself through run_job tasks: scoring -> scoring",
    ),
    "two specs of one name": (
        lambda scoring, training: training.update(name="scoring"),
        "job name 'scoring' is used by more than one spec: scoring.json, training.json",
    ),
}


@pytest.mark.parametrize("case", sorted(CROSS))
def test_specs_are_checked_together(case, folder):
    mutate, message = CROSS[case]
    scoring, training = copy.deepcopy(SCORING), copy.deepcopy(TRAINING)
    mutate(scoring, training)
    write(folder / "scoring.json", scoring)
    write(folder / "training.json", training)
    with pytest.raises(SpecError) as info:
        check_job_references(checked(folder))
    assert len([line for line in info.value.problems if message in line]) == 1, info.value


def test_validate_command_checks_the_specs_together(folder, capsys):
    specs = [str(p) for p in sorted(folder.glob("*.json"))]
    args = ["validate", "--notebooks-dir", str(notebooks_of(folder)), *specs]
    assert main(args) == 0
    assert "job 'scoring', tasks monitor -> drift_check -> retrain" in capsys.readouterr().out
    (folder / "training.json").write_text(json.dumps({**TRAINING, "name": "train-job"}))
    assert main(args) == 1
    assert "${job_id.training} names no spec in" in capsys.readouterr().err


# --- conditions --------------------------------------------------------------------------------


def test_equality_compares_text_and_ordering_compares_numbers():
    """As Databricks documents it: "12.0" == "12" is false, "12.0" >= "12" is true."""
    assert evaluate("EQUAL_TO", "12.0", "12") is False
    assert evaluate("NOT_EQUAL", "12.0", "12") is True
    assert evaluate("GREATER_THAN_OR_EQUAL", "12.0", "12") is True
    assert evaluate("GREATER_THAN", "9", "10") is False  # as text "9" > "10" would hold
    assert evaluate("LESS_THAN", "9", "10") is True
    assert evaluate("LESS_THAN_OR_EQUAL", "1e-3", ".001") is True
    assert evaluate("EQUAL_TO", "true", "true") is True
    with pytest.raises(ConditionError, match="GREATER_THAN compares numbers; the left operand"):
        evaluate("GREATER_THAN", "high", "0.3")
    with pytest.raises(ConditionError, match="the right operand is 'nan'"):
        evaluate("LESS_THAN", "1", "nan")


# --- the local runner --------------------------------------------------------------------------


def run(folder, overrides=None, defaults=None, spec="scoring.json"):
    lines = []
    runner = LocalRunner(folder.parent / "local", report=lines.append)
    job = runner.run(folder / spec, overrides, notebooks_of(folder), defaults)
    return job, lines


def test_a_condition_that_holds_runs_the_referenced_job_nested(folder):
    job, lines = run(folder, {"drift": "0.5"})
    assert job.succeeded, lines
    assert [(t.key, t.status) for t in job.tasks] == [
        ("monitor", SUCCESS),
        ("drift_check", SUCCESS),
        ("retrain", SUCCESS),
    ]
    assert job.task("drift_check").outcome == "true"  # the bool True, read as "true"
    nested = job.task("retrain").job
    assert nested is not None and nested.name == "training" and nested.succeeded
    assert nested.task("train").outputs == {"trained_for": "drift 0.5"}
    assert "v task drift_check succeeded in" in "\n".join(lines)
    assert any(line.endswith(": 'true' EQUAL_TO 'true' is true") for line in lines)
    assert "    > task train: train.py" in lines  # the nested job's lines, indented
    assert any(line.startswith("    v task train succeeded") for line in lines)
    assert any(line.startswith("v task retrain succeeded") for line in lines)


def test_a_condition_that_does_not_hold_excludes_its_dependents_and_the_job_succeeds(folder):
    job, lines = run(folder, {"drift": "0.1"})
    assert job.succeeded
    assert job.task("drift_check").outcome == "false"
    assert job.task("retrain").status == EXCLUDED and job.task("retrain").job is None
    assert "- task retrain: excluded (drift_check is false)" in lines
    assert not any("task train" in line for line in lines)


def test_dependents_of_an_excluded_task_are_excluded_and_false_branches_run(folder):
    scoring = copy.deepcopy(SCORING)
    scoring["tasks"] += [
        {"task_key": "after_retrain", "depends_on": [{"task_key": "retrain"}],
         "notebook_task": {"notebook_path": "${notebooks_dir}/monitor"}, **COMPUTE},
        {"task_key": "no_drift", "depends_on": [{"task_key": "drift_check", "outcome": "false"}],
         "notebook_task": {"notebook_path": "${notebooks_dir}/monitor"}, **COMPUTE},
    ]  # fmt: skip
    write(folder / "scoring.json", scoring)
    job, lines = run(folder, {"drift": "0.1"})
    assert job.succeeded
    statuses = {t.key: t.status for t in job.tasks}
    assert statuses["after_retrain"] == EXCLUDED and statuses["no_drift"] == SUCCESS
    assert "- task after_retrain: excluded (retrain was excluded)" in lines


def test_numbers_are_compared_as_numbers_in_a_run(folder):
    scoring = copy.deepcopy(SCORING)
    task(scoring, "drift_check")["condition_task"] = {
        "op": "GREATER_THAN",
        "left": "{{tasks.monitor.values.drift}}",
        "right": "0.30",
    }
    write(folder / "scoring.json", scoring)
    high, _ = run(folder, {"drift": "1.5"})  # as text "1.5" < "0.30" would not hold
    assert high.task("drift_check").outcome == "true" and high.task("retrain").job is not None
    low, _ = run(folder, {"drift": "0.25"})
    assert low.task("drift_check").outcome == "false"
    assert low.task("retrain").status == EXCLUDED and low.succeeded


def test_an_operand_that_cannot_be_compared_fails_the_condition(folder):
    scoring = copy.deepcopy(SCORING)
    task(scoring, "drift_check")["condition_task"]["left"] = "{{tasks.monitor.values.shape}}"
    write(folder / "scoring.json", scoring)
    job, _ = run(folder)
    assert not job.succeeded
    assert job.task("drift_check").status == FAILED
    assert "a condition operand reads a task value of type list" in (
        job.task("drift_check").error_line
    )
    assert job.task("retrain").status == SKIPPED


def test_a_failed_nested_job_fails_the_run_job_task(folder):
    job, lines = run(folder, {"drift": "0.5"}, defaults={"fail": "yes"})
    assert not job.succeeded
    retrain = job.task("retrain")
    assert retrain.status == FAILED
    assert retrain.job is not None and retrain.job.task("train").status == FAILED
    assert retrain.error_line == (
        "JobFailed: job 'training' FAILED: task train: RuntimeError: training broke"
    )
    assert any(line.startswith("    x task train FAILED") for line in lines)


def test_a_bad_value_for_the_nested_job_is_refused_before_anything_runs(folder, repo):
    """The values a run_job task passes are judged by the nested job's steps up front."""
    name = "diabetes_orchestrator_train"
    (notebooks_of(folder) / f"{name}.py").write_text(
        (repo / "orchestrator_notebooks" / f"{name}.py").read_text()
    )
    training = copy.deepcopy(TRAINING)
    training["parameters"] = [{"name": "seed", "default": "42"}]
    training["tasks"][0]["notebook_task"]["notebook_path"] = f"${{notebooks_dir}}/{name}"
    write(folder / "training.json", training)
    scoring = copy.deepcopy(SCORING)
    task(scoring, "retrain")["run_job_task"]["job_parameters"] = {"seed": "-1"}
    write(folder / "scoring.json", scoring)
    with pytest.raises(ParameterError, match="job 'training' task 'train': parameter 'seed'"):
        run(folder)
    assert not (folder.parent / "local").exists()  # nothing ran, nothing was written


def test_a_cycle_is_refused_before_running(folder):
    training = copy.deepcopy(TRAINING)
    training["tasks"].append({"task_key": "score", "run_job_task": {"job_id": "${job_id.scoring}"}})
    write(folder / "training.json", training)
    with pytest.raises(SpecError, match="runs itself through run_job tasks"):
        run(folder)


def test_run_local_reports_excluded_tasks_and_exits_by_the_job(folder, capsys):
    args = ["run-local", str(folder / "scoring.json"), "--notebooks-dir", str(notebooks_of(folder))]
    args += ["--local-root", str(folder.parent / "local")]
    assert main([*args, "--param", "drift=0.1"]) == 0
    out = capsys.readouterr().out
    assert "job 'scoring' SUCCEEDED" in out and "retrain excluded" in out
    (folder.parent / "deploy.yml").write_text(
        "targets: {local: {parameters: {fail: 'yes'}}}\n"  # the target's defaults reach it
    )
    assert main([*args, "--param", "drift=0.5"]) == 1
    out, err = capsys.readouterr()
    assert "job 'scoring' FAILED" in out and "retrain failed" in out
    assert (
        "task retrain (run job 'training'): JobFailed: job 'training' FAILED: task train:"
        " RuntimeError: training broke"
    ) in err
