import gzip
import io
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from hypothesis import settings
from tiers import sampled
from trained_models import Champion, new_champion

from diabetes_mlops.local.spark import CONNECT_MODE_ENV, JAVA_OPTIONS_ENV, REMOTE_ENV
from diabetes_mlops.tracking.runs import ARTIFACT_ROOT_ENV

REPO = Path(__file__).resolve().parents[2]

# Every local Spark session of the tests (and of processes they start) without the JVM's C2
# compiler: on the 2-core dev machine `make test` took 141-167 s instead of 212 s.
os.environ.setdefault(JAVA_OPTIONS_ENV, "-XX:TieredStopAtLevel=1")

# Which Spark the tests' `spark` and the local runner use: classic, or Spark Connect served by the
# same process (`make test-all` runs the Spark tests under both). A developer's own SPARK_REMOTE
# never reaches the tests: they set it themselves.
TEST_SPARK_ENV = "DIABETES_MLOPS_TEST_SPARK"
SPARK_KIND = os.environ.get(TEST_SPARK_ENV, "classic")
os.environ.pop(REMOTE_ENV, None)
if SPARK_KIND == "connect":  # pyspark.sql.functions builds Connect columns all session long
    os.environ[CONNECT_MODE_ENV] = "1"
else:
    os.environ.pop(CONNECT_MODE_ENV, None)

# Property tests: a few examples in the everyday tier, more in `make test-all`
# (--hypothesis-profile=full). Profiles are registered here, before Hypothesis reads the option.
settings.register_profile("everyday", max_examples=8)
settings.register_profile("full", max_examples=25)
settings.load_profile("everyday")


# What a test run may add to the checkout: the test tools' own caches. Anything else (dist/,
# .local/, mlruns/ ...) is a test writing where a user's files are, and fails the run.
TOOL_CACHES = (".pytest_cache", ".hypothesis", ".coverage", ".venv", ".ruff_cache")
_EXTRAS = pytest.StashKey[set]()


def _checkout_extras() -> set[str]:
    """Untracked and ignored paths in the checkout, tool caches and bytecode aside."""
    done = subprocess.run(
        ["git", "status", "--porcelain", "--ignored"], cwd=REPO, capture_output=True, text=True
    )
    paths = {line[3:].rstrip("/") for line in done.stdout.splitlines() if line[:2] in ("??", "!!")}
    return {
        path
        for path in paths
        if not path.startswith(TOOL_CACHES)
        and "__pycache__" not in path
        and not path.endswith(".egg-info")
    }


def pytest_collection_modifyitems(config, items):
    """Every test that uses the `spark` fixture (directly or through its fixtures) is marked
    `spark`; under DIABETES_MLOPS_TEST_SPARK=connect, tests marked classic_spark_only are
    deselected (they read the classic JVM; the Spark Connect pass is not for them)."""
    kept, dropped = [], []
    for item in items:
        if "spark" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.spark)
        only_classic = item.get_closest_marker("classic_spark_only") is not None
        (dropped if SPARK_KIND == "connect" and only_classic else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):  # the controller, with or without xdist
        session.config.stash[_EXTRAS] = _checkout_extras()


def pytest_sessionfinish(session, exitstatus):
    before = session.config.stash.get(_EXTRAS, None)
    if before is None:
        return
    added = sorted(_checkout_extras() - before)
    if added:
        session.config.get_terminal_writer().line(
            f"error: the tests wrote into the checkout: {', '.join(added)}", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def no_databricks_env(monkeypatch):
    """A developer's real workspace settings must never reach a test."""
    for key in list(os.environ):
        if key.startswith("DATABRICKS_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory):
    """One sqlite store for the session (creating one costs ~2 s); tests use unique model names."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_TRACKING_URI", uri)
    patch.setenv(ARTIFACT_ROOT_ENV, str(root / "artifacts"))
    patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    mlflow.set_tracking_uri(uri)
    yield uri
    patch.undo()


@pytest.fixture(autouse=True)
def session_store_each_test(mlflow_store):
    """Every test starts on the session's store, whatever the one before pointed MLflow at
    (`serve` and the steps set the tracking and registry URIs, as a one-shot command may)."""
    mlflow.set_tracking_uri(mlflow_store)
    mlflow.set_registry_uri(mlflow_store)
    yield


@pytest.fixture
def model_name() -> str:
    return f"diabetes_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def built_wheels(tmp_path_factory) -> list:
    """Both wheels of the checkout's sources, built once per session (~4 s)."""
    from diabetes_mlops.deploy.wheels import build_wheels

    return build_wheels(REPO, tmp_path_factory.mktemp("wheels"))


@pytest.fixture
def project(repo, tmp_path, built_wheels) -> Path:
    """A copy of the project's deployable parts, so a test may change a source file.

    Its dist/ starts with the session's wheels. A wheel's name holds the digest of its sources,
    so a deploy of unchanged sources finds its wheel there, and a test that changes a source
    builds a new one, as a deploy from a checkout would.
    """
    copy = tmp_path / "project"
    for part in ("ml_source", "ml_ops", "orchestrator_notebooks", "job_specs"):
        shutil.copytree(
            repo / part, copy / part, ignore=shutil.ignore_patterns("build", "*.egg-info", "tests")
        )
    shutil.copy(repo / "deploy.yml", copy / "deploy.yml")
    (copy / "dist").mkdir()
    for wheel in built_wheels:
        os.link(wheel.path, copy / "dist" / wheel.name)
    return copy


@pytest.fixture(scope="session")
def champion(mlflow_store) -> Champion:
    """The session's one trained, validated and promoted model, for every test that only needs
    a champion to score, monitor or serve with. Shared read-only: a test that changed its
    versions, aliases or tags would make other tests depend on the order they run in, so the
    session ends with an error if anything changed."""
    shared = new_champion("diabetes_session_champion", "/Shared/diabetes-tests-champion")
    before = shared.state()
    yield shared
    assert shared.state() == before, "a test changed the shared champion; train its own instead"


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """A copy of ml_data that tests may spoil."""
    target = tmp_path / "data"
    shutil.copytree(REPO / "ml_data", target)
    return target


def _frame_edit(edit):
    """A bad-input case made by editing the good CSV as a DataFrame."""
    return lambda text: edit(pd.read_csv(io.StringIO(text))).to_csv(index=False)


def _set(column, row, value):
    return _frame_edit(
        lambda f: f.assign(**{column: f[column].astype(object).where(f.index != row, value)})
    )


# Each kind of bad input: (good CSV text -> bad CSV text, or None for "no file"), expected message.
BAD_TRAINING = {
    "missing column": (_frame_edit(lambda f: f.drop(columns=["BMI"])), "column 'BMI' missing"),
    "non-numeric value": (_set("BP", 3, "high"), "column 'BP': non-numeric value 'high'"),
    "unknown SEX": (_set("SEX", 5, "X"), "column 'SEX': unknown value 'X'"),
    "column all missing": (_frame_edit(lambda f: f.assign(S3=np.nan)), "'S3': has no values"),
    "target missing": (_frame_edit(lambda f: f.drop(columns=["Y"])), "target column 'Y' missing"),
    "header only": (_frame_edit(lambda f: f.head(0)), "has a header but no data rows"),
    "empty file": (lambda text: "", "file is empty"),
    "unreadable path": (lambda text: None, "cannot read file"),
    "negative age": (_set("AGE", 3, "-5"), "column 'AGE': value -5 is outside the valid range"),
    "huge value": (_set("S1", 4, "1e308"), "column 'S1': value 1e308 is outside the valid range"),
    "target out of range": (_set("Y", 2, "5000"), "column 'Y': value 5000 is outside"),
    "infinite value": (_set("BP", 1, "inf"), "column 'BP': non-finite value 'inf'"),
    "extra field": (
        lambda t: _line(t, 1, lambda row: row.replace("32.1", "32,1")),
        "row does not parse",
    ),
    "truncated last line": (lambda t: t.rstrip("\n").rsplit(",", 3)[0], "row does not parse"),
    "duplicated column": (lambda t: t.replace("S6", "AGE", 1), "column 'AGE': appears twice"),
    "column names differ in case": (
        lambda t: t.replace("S6,", "age,", 1) if "S6," in t else t.replace(",S6", ",age", 1),
        "differs only in case",
    ),
    "UTF-16 file": (lambda t: t.encode("utf-16"), "UTF-16 text"),
    "gzip file named .csv": (lambda t: gzip.compress(t.encode()), "gzip-compressed"),
}
BAD_SCORING = {
    "missing column": (_frame_edit(lambda f: f.drop(columns=["SEX"])), "column 'SEX' missing"),
    "non-numeric value": (_set("S1", 2, "n/a?"), "column 'S1': non-numeric value 'n/a?'"),
    "column all missing": (_frame_edit(lambda f: f.assign(S6=np.nan)), "'S6': has no values"),
    "header only": (_frame_edit(lambda f: f.head(0)), "has a header but no data rows"),
    "empty file": (lambda text: "", "file is empty"),
    "unreadable path": (lambda text: None, "cannot read file"),
    "huge value": (_set("S1", 4, "1e308"), "column 'S1': value 1e308 is outside the valid range"),
    "extra field": (
        lambda t: _line(t, 1, lambda row: row.replace(",Male,", ",Male,1,")),
        "row does not parse",
    ),
    "unknown SEX codes": (
        _frame_edit(lambda f: f.assign(SEX=f["SEX"].map({"Male": "M", "Female": "F"}))),
        "have unknown values such as 'F', 'M'",
    ),
    "number with a type suffix": (_set("BMI", 2, "21.6d"), "non-numeric value '21.6d'"),
    "AGE beside age": (lambda t: t.replace("\n", ",age\n", 1), "differs only in case"),
    "UTF-16 file": (lambda t: t.encode("utf-16"), "UTF-16 text"),
}


def _line(text: str, number: int, edit) -> str:
    """Edit line `number` (0 is the header) of a CSV text."""
    lines = text.split("\n")
    lines[number] = edit(lines[number])
    return "\n".join(lines)


# The kinds of failure `make test` runs of a matrix marked `everyday_sample` (unless the marker
# names the cases itself).
EVERYDAY_TRAINING = (
    "missing column",
    "non-numeric value",
    "unknown SEX",
    "extra field",
    "UTF-16 file",
)
EVERYDAY_SCORING = (
    "missing column", "non-numeric value", "unknown SEX codes", "extra field", "UTF-16 file"
)  # fmt: skip


def pytest_generate_tests(metafunc):
    """Tests that take `bad_training` / `bad_scoring` run once per kind of bad input (in make
    test only the everyday kinds, for a test marked `everyday_sample`)."""
    sample = metafunc.definition.get_closest_marker("everyday_sample")
    for name, cases, everyday in (
        ("bad_training", BAD_TRAINING, EVERYDAY_TRAINING),
        ("bad_scoring", BAD_SCORING, EVERYDAY_SCORING),
    ):
        if name in metafunc.fixturenames:
            chosen = cases if sample is None else (sample.args or everyday)
            metafunc.parametrize(name, sampled(cases, chosen))


def write_bad_input(case, good: Path, bad: Path) -> Path:
    content = case[0](good.read_text())
    if content is None:
        bad.unlink(missing_ok=True)
    elif isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        bad.write_text(content)
    return bad


@pytest.fixture
def bad_input():
    return write_bad_input


@pytest.fixture
def fake_workspace(monkeypatch):
    """A fake workspace on loopback (with Unity Catalog, clusters/create and permissions:
    what databricks-init uses); DATABRICKS_HOST/TOKEN point the real SDK client at it."""
    from fake_workspace_setup import FakeWorkspaceWithSetup

    fake = FakeWorkspaceWithSetup().start()
    monkeypatch.setenv("DATABRICKS_HOST", fake.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", fake.token)
    monkeypatch.setenv("DATABRICKS_AUTH_TYPE", "pat")
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def classic_spark(tmp_path_factory):
    """One local classic SparkSession for the whole test session (starting one costs ~12 s)."""
    from diabetes_mlops.local.spark import classic_session

    return classic_session(tmp_path_factory.mktemp("spark"))


@pytest.fixture(scope="session")
def connect_url(classic_spark):
    """A Spark Connect server in this process, on the classic session's Spark: its sc:// URL."""
    from diabetes_mlops.local.spark import start_connect_server

    return start_connect_server(classic_spark)


@pytest.fixture(scope="session")
def connect_spark(connect_url):
    from diabetes_mlops.local.spark import local_spark_session

    saved = {name: os.environ.get(name) for name in (REMOTE_ENV, CONNECT_MODE_ENV)}
    os.environ[REMOTE_ENV] = connect_url
    try:
        return local_spark_session(Path("unused"))
    finally:  # as it was: classic tests keep classic columns (CONNECT_MODE_ENV unset)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="session")
def spark(request):
    """The session's Spark: classic, or Spark Connect (DIABETES_MLOPS_TEST_SPARK=connect)."""
    return request.getfixturevalue("connect_spark" if SPARK_KIND == "connect" else "classic_spark")


@pytest.fixture(scope="session", autouse=True)
def spark_for_runners(request):
    """Under DIABETES_MLOPS_TEST_SPARK=connect, the local runner's notebooks get Spark Connect
    (in every test and fixture of the session)."""
    if SPARK_KIND == "connect":
        os.environ[REMOTE_ENV] = request.getfixturevalue("connect_url")


@pytest.fixture
def local_model_root(tmp_path, repo, monkeypatch):
    """A local root for `model`: the sample training data, its own MLflow store, and a
    deploy.yml (in the root) whose local target names that model."""
    from diabetes_mlops.local.store import tracking_uri

    def make(model: str) -> Path:
        root = tmp_path / "root"
        data = root / "Volumes/main/diabetes/data"
        data.mkdir(parents=True)
        (data / "data_raw.csv").write_bytes((repo / "ml_data" / "data_raw.csv").read_bytes())
        monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri(root))
        config = (repo / "deploy.yml").read_text()
        (root / "deploy.yml").write_text(
            config.replace("model_name: diabetes\n", f"model_name: {model}\n")
        )
        return root

    return make
