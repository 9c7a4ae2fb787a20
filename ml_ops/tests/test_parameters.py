"""Parameter rules: declared on the step signatures, judged before anything is written."""

import json
import shutil
from typing import Annotated

import pytest
from mlflow.tracking import MlflowClient

from diabetes_mlops.cli import main
from diabetes_mlops.jobs.preflight import (
    check_job_parameters,
    data_location_clashes,
    data_locations,
)
from diabetes_mlops.jobs.specs import check_spec
from diabetes_mlops.jobs.targets import load_target
from diabetes_mlops.local.dbutils import LocalDbutils
from diabetes_mlops.runtime.context import SparkPath
from diabetes_mlops.runtime.errors import ParameterError
from diabetes_mlops.runtime.parameters import (
    Above,
    AllowNonFinite,
    AtLeast,
    Below,
    Between,
    Each,
    NotEmpty,
    OneOf,
    RegisteredModelName,
    VersionOrAlias,
    declaration,
    declared_parameters,
    parameter_registry,
    read_arguments,
)
from diabetes_mlops.runtime.step_runner import bind_parameters
from diabetes_mlops.steps import STEPS, batch_score, parameter_rules, train

TRAINING = "diabetes_model_training.json"
SCORING = "diabetes_batch_scoring.json"


def parse(annotation, text):
    return declaration("p", annotation).parse(text)


@pytest.mark.parametrize(
    "annotation, good, bad, message",
    [
        (Annotated[int, Between(0, 10)], "10", "11", "must be between 0 and 10"),
        (Annotated[float, AtLeast(0)], "0", "-5", "must be >= 0"),
        (Annotated[float, Above(0)], "0.1", "0", "must be > 0"),
        (Annotated[float, Below(1)], "0.9", "1", "must be < 1"),
        (
            Annotated[str, OneOf("spark", "pandas")],
            "pandas",
            "dask",
            "must be one of spark, pandas",
        ),
        (Annotated[str, NotEmpty()], "x", "  ", "must not be empty"),
        (Annotated[tuple[float, ...], Each(Above(0))], "1, 2", "1,-2", "each value must be > 0"),
        (Annotated[str, RegisteredModelName()], "main.ml.m", "ml/m", "cannot contain '/'"),
        (Annotated[str, RegisteredModelName()], "m", "a:b", "cannot contain ':'"),
        (Annotated[str, RegisteredModelName()], "m", " ", "must not be empty"),
        (Annotated[str, RegisteredModelName()], "m", "..m", "not a usable registered model"),
        (Annotated[str, VersionOrAlias()], "champion", "cham pion", "a version number or"),
        (Annotated[str, VersionOrAlias()], "12", "0", "a version number or an alias"),
        (float, "1e3", "inf", "must be finite"),
        (float, "-1", "nan", "must be finite"),
        (tuple[float, ...], "1,2", "1,inf", "must be finite numbers"),
    ],
)
def test_each_rule_kind(annotation, good, bad, message):
    parse(annotation, good)
    with pytest.raises(ParameterError) as info:
        parse(annotation, bad)
    line = str(info.value)
    assert line.startswith("parameter 'p': ") and line.endswith(f", got {bad!r}")
    assert message in line and "\n" not in line


def test_a_rule_may_allow_nan_and_inf():
    assert parse(Annotated[float, AllowNonFinite()], "inf") == float("inf")


def test_an_optional_path_is_none_when_empty():
    assert parse(SparkPath | None, " ") is None
    assert parse(Annotated[SparkPath | None, NotEmpty()], "/x ") == "/x"
    with pytest.raises(ParameterError, match="is empty"):
        parse(SparkPath, "")


def context(tmp_path, **parameters):
    """A task's context whose job passes `parameters` (pushed down, declared or not)."""
    return LocalDbutils(parameters, tmp_path, {}, "t").job_context


TRAIN_OK = {"data_path": "/d.csv", "model_name": "m", "experiment_name": "/e"}


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("seed", "-1", "parameter 'seed': must be between 0 and 4294967295, got '-1'"),
        (
            "seed",
            str(2**32),
            "parameter 'seed': must be between 0 and 4294967295, got '4294967296'",
        ),
        ("alphas", "inf", "parameter 'alphas': must be finite numbers, got 'inf'"),
        ("model_name", "team/m", "parameter 'model_name': a registered model name cannot"),
        ("test_size", "1", "parameter 'test_size': must be < 1, got '1'"),
        ("cv_folds", "1", "parameter 'cv_folds': must be >= 2, got '1'"),
    ],
)
def test_bad_training_parameters_are_one_line_naming_the_parameter(tmp_path, name, value, expected):
    with pytest.raises(ParameterError) as info:
        bind_parameters(train, context(tmp_path, **{**TRAIN_OK, name: value}))
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)


def test_cross_checks_judge_parameters_together(tmp_path):
    unity = {**TRAIN_OK, "registry": "unity_catalog"}
    _, problems = read_arguments(train, unity.get)
    assert problems == ["parameter 'model_name': Unity Catalog needs catalog.schema.model, got 'm'"]
    assert read_arguments(train, {**unity, "model_name": "main.ml.m"}.get)[1] == []
    scoring = {"input_path": "/in", "output_path": "/out.csv", "model_name": "m"}
    scoring |= {"experiment_name": "/e", "engine": "pandas", "input_format": "parquet"}
    assert read_arguments(batch_score, scoring.get)[1] == [
        "parameter 'input_format': engine=pandas reads csv only, got 'parquet'"
    ]
    _, problems = read_arguments(batch_score, {**scoring, "input_format": "csv"}.get)
    assert problems == []
    _, problems = read_arguments(batch_score, {**scoring, "engine": "spark"}.get)
    assert problems == []  # Spark reads parquet


def test_one_parameter_name_has_one_meaning_in_every_step():
    rules = parameter_rules()
    for name, declared in rules.items():
        for step in STEPS.values():
            mine = declared_parameters(step).get(name)
            assert mine is None or mine.meaning == declared.meaning, (name, step.__name__)
    assert {"seed", "rmse_tolerance", "engine", "model_name"} <= set(rules)


def test_two_steps_that_disagree_on_a_name_are_refused():
    def first(x: Annotated[int, AtLeast(0)] = 1): ...

    def second(x: int = 1): ...

    with pytest.raises(TypeError, match="parameter 'x' means different things"):
        parameter_registry([first, second])
    assert parameter_registry([first, first])["x"].rules == (AtLeast(0),)


# --- before a job starts -----------------------------------------------------------------------
@pytest.fixture
def specs(repo):
    notebooks = repo / "orchestrator_notebooks"
    return {name: check_spec(repo / "job_specs" / name, notebooks) for name in (TRAINING, SCORING)}


def test_the_shipped_specs_pass_and_references_are_left_to_run_time(specs):
    assert check_job_parameters(specs[TRAINING]) == []  # model_version is {{tasks...}}
    assert check_job_parameters(specs[SCORING]) == []


def test_a_value_a_later_task_refuses_is_named_with_job_and_task(specs):
    problems = check_job_parameters(specs[TRAINING], {"rmse_tolerance": "-5", "model_name": "a/b"})
    assert problems == [
        "job 'diabetes-model-training' task 'train': parameter 'model_name': a registered model"
        " name cannot contain '/', got 'a/b'",
        "job 'diabetes-model-training' task 'validate': parameter 'rmse_tolerance': must be >= 0,"
        " got '-5'",
    ]  # model_name reaches all three tasks, and is reported once


def test_an_empty_value_for_a_required_parameter_is_judged_by_its_rule(specs):
    assert check_job_parameters(specs[SCORING], {"model_version": ""}) == [
        "job 'diabetes-batch-scoring' task 'batch_score': parameter 'model_version': must be a"
        " version number or an alias (letters, digits, '_' and '-'), got ''"
    ]


def test_a_value_the_job_sets_as_it_runs_cannot_be_given(specs):
    """model_version=999 on the training job would replace what train publishes, so validate and
    promote would judge another version than the one just registered."""
    assert check_job_parameters(specs[TRAINING], {"model_version": "999"}) == [
        f"job 'diabetes-model-training' task '{task}': parameter 'model_version' is set by the"
        " job as it runs ({{tasks.train.values.model_version}}); it cannot be given"
        for task in ("validate", "approval", "promote")
    ]


def test_a_dropdown_must_offer_what_its_step_takes(tmp_path, repo):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(repo / "orchestrator_notebooks", notebooks)
    score = notebooks / "diabetes_orchestrator_batch_score.py"
    text = score.read_text()
    assert '["spark", "pandas"]' in text
    score.write_text(text.replace('["spark", "pandas"]', '["spark", "pandas", "dask"]'))
    spec = check_spec(repo / "job_specs" / SCORING, notebooks)
    assert check_job_parameters(spec) == [
        "job 'diabetes-batch-scoring' task 'batch_score': diabetes_orchestrator_batch_score.py:"
        " dropdown 'engine' offers spark, pandas, dask; step 'batch_score' takes spark, pandas"
    ]


def test_widget_defaults_are_judged_for_parameters_nobody_passes(tmp_path, repo):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(repo / "orchestrator_notebooks", notebooks)
    validate = notebooks / "diabetes_orchestrator_validate.py"
    validate.write_text(
        validate.read_text().replace('"min_comparison_rows", "20"', '"min_comparison_rows", "0"')
    )
    spec = json.loads((repo / "job_specs" / TRAINING).read_text())
    spec["parameters"] = [p for p in spec["parameters"] if p["name"] != "min_comparison_rows"]
    path = tmp_path / "training.json"
    path.write_text(json.dumps(spec))
    assert check_job_parameters(check_spec(path, notebooks)) == [
        "job 'diabetes-model-training' task 'validate': parameter 'min_comparison_rows':"
        " must be >= 2, got '0'"
    ]


def test_a_notebook_that_runs_no_known_step_is_named(tmp_path, repo):
    notebooks = tmp_path / "notebooks"
    shutil.copytree(repo / "orchestrator_notebooks", notebooks)
    promote = notebooks / "diabetes_orchestrator_promote.py"
    promote.write_text(
        promote.read_text().replace("run_step(promote, dbutils)", "run_step(promot, dbutils)")
    )
    problems = check_job_parameters(check_spec(repo / "job_specs" / TRAINING, notebooks))
    assert len(problems) == 1
    assert (
        "task 'promote': diabetes_orchestrator_promote.py runs 'promot', which is not a step"
        in problems[0]
    )


@pytest.fixture
def local_root(tmp_path, repo):
    root = tmp_path / "local"
    data = root / "Volumes/main/diabetes/data"
    data.mkdir(parents=True)
    shutil.copy(repo / "ml_data" / "data_raw.csv", data)
    return root


def test_run_local_refuses_a_bad_value_before_the_first_task(repo, local_root, model_name, capsys):
    spec = str(repo / "job_specs" / TRAINING)
    args = [
        "run-local",
        spec,
        "--local-root",
        str(local_root),
        "--param",
        f"model_name={model_name}",
    ]
    assert main([*args, "--param", "rmse_tolerance=-5"]) == 2
    out, err = capsys.readouterr()
    assert err.strip() == (
        "error: job 'diabetes-model-training' task 'validate': parameter 'rmse_tolerance':"
        " must be >= 0, got '-5'"
    )
    assert "task train" not in out  # no task started
    assert MlflowClient().search_model_versions(f"name='{model_name}'") == []


# --- deploy targets ------------------------------------------------------------------------------
def test_validate_fails_on_a_bad_value_in_deploy_yml(repo, tmp_path, monkeypatch, capsys):
    config = tmp_path / "deploy.yml"
    text = (repo / "deploy.yml").read_text()
    config.write_text(text.replace(
        "      model_name: main.diabetes_staging.diabetes\n",
        "      model_name: main.diabetes_staging.diabetes\n      rmse_tolerance: '-5'\n",
    ))  # fmt: skip
    monkeypatch.chdir(repo)
    assert main(["validate", "--config", str(config)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{config}: target 'staging': job 'diabetes-model-training' task 'validate': parameter"
        " 'rmse_tolerance': must be >= 0, got '-5'"
    ]
    assert main(["validate"]) == 0  # the shipped deploy.yml, found in the current folder


@pytest.mark.parametrize(
    "text, message",
    [
        ("targets: [a, b]\n", "expected a mapping with 'defaults' and 'targets'"),
        (
            "defaults: {parameters: {data_path: '{data_dir}/x.csv'}}\ntargets: {local: {}}\n",
            "target 'local': parameter(s) data_path use {data_dir}, which the target does not set",
        ),
    ],
)
def test_a_deploy_config_validate_cannot_use_is_one_line(
    repo, tmp_path, monkeypatch, capsys, text, message
):
    config = tmp_path / "deploy.yml"
    config.write_text(text)
    monkeypatch.chdir(repo)
    assert main(["validate", "--config", str(config)]) == 1
    assert capsys.readouterr().err.strip() == f"{config}: {message}"


def test_each_target_has_its_own_data_and_dev_is_per_user(repo, specs):
    config = repo / "deploy.yml"
    found = {}
    for name in ("dev", "staging", "prod"):
        target = load_target(name, config).for_user("alice@example.com")
        found[name] = data_locations(list(specs.values()), target.parameters)
    # data_path, input_path, output_path, monitoring_path
    assert all(len(paths) == 4 for paths in found.values())
    assert all("alice@example.com" in path for path in found["dev"])
    assert not set(found["dev"]) & set(found["staging"])
    assert not set(found["staging"]) & set(found["prod"])
    assert "/Volumes/main/diabetes_staging/data/predictions/diabetes" in found["staging"]
    assert data_location_clashes(config, list(specs.values())) == []


def test_targets_sharing_data_are_refused(repo, tmp_path, specs):
    config = tmp_path / "deploy.yml"
    text = (repo / "deploy.yml").read_text()
    staging = "data_dir: /Volumes/main/diabetes_staging/data"
    config.write_text(text.replace(staging, "data_dir: /Volumes/main/diabetes/data/"))
    clashes = data_location_clashes(config, list(specs.values()))
    assert len(clashes) == 4
    assert (
        f"{config}: targets 'staging' and 'prod' both use"
        " /Volumes/main/diabetes/data/predictions/diabetes (job 'diabetes-batch-scoring'"
        " parameter 'output_path'); give each target its own data_dir" in clashes
    )
    inside = "data_dir: /Volumes/main/diabetes/data/predictions/diabetes"
    config.write_text(text.replace(staging, inside))
    clashes = data_location_clashes(config, list(specs.values()))
    assert len(clashes) == 4  # each of staging's data is inside prod's output folder
    assert (
        "targets 'staging' and 'prod' overlap:"
        " /Volumes/main/diabetes/data/predictions/diabetes/data_raw.csv (job"
        " 'diabetes-model-training' parameter 'data_path' in 'staging') and"
        " /Volumes/main/diabetes/data/predictions/diabetes (job 'diabetes-batch-scoring'"
        " parameter 'output_path' in 'prod')" in "\n".join(clashes)
    )


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("output_path", "/", "is not a folder to write"),
        ("output_path", ".", "is not a folder to write"),
        ("output_path", "/Volumes/", "is not a folder to write"),
        ("output_path", "s3://bucket/scores", "uses s3:, which is not supported for output"),
        ("quarantine_path", "..", "is not a folder to write"),
    ],
)
def test_output_locations_that_cannot_be_an_output_are_refused_before_the_job(name, value, words):
    """Judged from the text by the pre-run checks (exit 2), before any task starts."""
    from diabetes_mlops.runtime.parameters import read_arguments
    from diabetes_mlops.steps import batch_score

    texts = {
        "input_path": "/Volumes/main/diabetes/data/in.csv",
        "output_path": "/Volumes/main/diabetes/data/scores",
        "model_name": "diabetes",
        "experiment_name": "/Shared/diabetes",
        name: value,
    }
    _, problems = read_arguments(batch_score, texts.get)
    assert len(problems) == 1 and problems[0].startswith(f"parameter '{name}': ")
    assert words in problems[0] and "\n" not in problems[0]
