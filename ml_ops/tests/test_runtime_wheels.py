"""The two wheels install on the supported Databricks Runtime, and into the pinned serverless
environment version, without replacing what either ships.

A Databricks job installs our wheels with pip into the cluster's Python (or, on serverless
compute, into the job environment), next to the runtime's own pandas, numpy, pyarrow,
scikit-learn and mlflow-skinny. A requirement that excludes the runtime's
version of any of them makes pip replace it, and the runtime's Spark and MLflow integration break
(pandas 3, for one, is not supported by its Spark). Each ml_ops/runtime/*.txt lists every Python
library a runtime or serverless environment ships, pinned: resolving both wheels with that file
as pip constraints succeeds only if our requirements admit every version it pins, down to the
transitive ones.

The resolution needs the package index (pip's own cache keeps it fast); an unreachable index fails
the test with a message saying so, it never skips.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from diabetes_mlops.deploy.wheels import Wheel

REPO = Path(__file__).resolve().parents[2]
RUNTIMES = REPO / "ml_ops" / "runtime"
RUNTIME_FILES = sorted(RUNTIMES.glob("*.txt"))
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")
_PYTHON = re.compile(r"^# Python: (\d+\.\d+)\b", re.MULTILINE)
_NETWORK_ERRORS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "ConnectTimeoutError",
    "ProxyError",
    "Network is unreachable",
    "Could not fetch URL",
)


@dataclass(frozen=True)
class Runtime:
    """A Databricks Runtime's Python: its version and the packages it ships, by pip's names."""

    path: Path
    python: str
    packages: dict[str, Version]


def load_runtime(path: Path) -> Runtime:
    """Parse a runtime constraints file: `# Python: X.Y` in its header, `name==version` below."""
    text = path.read_text()
    python = _PYTHON.search(text)
    if not python:
        raise ValueError(f"{path}: no '# Python: X.Y' line in the header")
    packages = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pin = _PIN.match(line)
        if not pin:
            raise ValueError(f"{path}:{number}: expected 'name==version', got {line!r}")
        packages[canonicalize_name(pin.group(1))] = Version(pin.group(2))
    return Runtime(path, python.group(1), packages)


def requires_dist(wheel: Path) -> list[Requirement]:
    """The Requires-Dist lines of a built wheel's METADATA, as the cluster's pip reads them."""
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        lines = archive.read(metadata).decode().splitlines()
    prefix = "Requires-Dist:"
    return [Requirement(line[len(prefix) :]) for line in lines if line.startswith(prefix)]


def is_installed_by_default(requirement: Requirement) -> bool:
    """True unless the requirement only applies to an extra (`pip install pkg[extra]`)."""
    return requirement.marker is None or "extra" not in str(requirement.marker)


def resolve_on_runtime(runtime: Runtime, targets: list[str], report: Path) -> dict:
    """pip's install plan for `targets` on a fresh Python of the runtime's version, every runtime
    package pinned to the runtime's version. Fails the test, with pip's reason, if there is none."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--report",
        str(report),
        "--python-version",
        runtime.python,
        "--only-binary=:all:",
        "--constraint",
        str(runtime.path),
        *targets,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        # pip names the conflicting requirements on stdout ("The conflict is caused by: ...").
        errors = [line for line in done.stderr.splitlines() if not line.startswith("WARNING:")]
        said = "\n".join(errors)[-2000:]
        unreachable = [
            line for line in done.stderr.splitlines() if any(m in line for m in _NETWORK_ERRORS)
        ]
        if unreachable:
            pytest.fail(
                f"package index unreachable, cannot resolve against {runtime.path.name}:\n"
                f"{unreachable[-1][-500:]}\n{said}"
            )
        pytest.fail(
            f"pip found no install of {' '.join(targets)} that keeps every package of "
            f"{runtime.path.name} at its version:\n{done.stdout[-3000:]}\n{said}"
        )
    return json.loads(report.read_text())


def planned_installs(report: dict) -> dict[str, Version]:
    """name -> version of everything pip's --report would install."""
    return {
        canonicalize_name(item["metadata"]["name"]): Version(item["metadata"]["version"])
        for item in report["install"]
    }


def replaced_runtime_packages(
    runtime: Runtime, installs: dict[str, Version]
) -> dict[str, tuple[Version, Version]]:
    """Runtime packages the plan would install at another version: name -> (runtime's, planned)."""
    return {
        name: (runtime.packages[name], version)
        for name, version in installs.items()
        if name in runtime.packages and version != runtime.packages[name]
    }


@pytest.fixture(scope="module", params=RUNTIME_FILES, ids=[p.stem for p in RUNTIME_FILES])
def runtime(request) -> Runtime:
    return load_runtime(request.param)


def test_the_pinned_runtime_and_serverless_environment_each_have_their_file():
    """deploy.yml's cluster runtime and serverless environment version are what the files
    here pin: a version moved in one place but not the other fails here."""
    defaults = yaml.safe_load((REPO / "deploy.yml").read_text())["defaults"]
    runtime = re.fullmatch(r"(\d+\.\d+)\.x-cpu-ml-scala2\.13", defaults["cluster"]["spark_version"])
    assert runtime, defaults["cluster"]["spark_version"]
    expected = {f"dbr-{runtime.group(1)}-ml.txt"}
    expected.add(f"serverless-env-{defaults['serverless_environment_version']}.txt")
    assert {p.name for p in RUNTIME_FILES} == expected


@pytest.fixture(scope="module")
def wheels(built_wheels) -> list[Wheel]:
    """Both wheels, built exactly as `make dist` and deploy build them (x.y.z+h<hash>)."""
    return built_wheels


def test_runtime_file_names_python_and_the_packages_our_wheels_touch(runtime):
    # The mlflow-skinny, pandas etc. of the supported runtime, and only exact pins: a range would
    # let the check pass for a version the runtime does not have.
    assert re.fullmatch(r"3\.\d+", runtime.python)
    for name in ("mlflow-skinny", "databricks-sdk", "scikit-learn", "numpy", "pandas", "pyarrow"):
        assert name in runtime.packages, f"{runtime.path.name} does not list {name}"
    assert runtime.packages["pandas"] < Version("3")


def test_load_runtime_rejects_a_range_with_one_line_naming_file_and_line(tmp_path):
    bad = tmp_path / "dbr.txt"
    bad.write_text("# Python: 3.12\npandas==2.2.3\nnumpy>=2\n")
    with pytest.raises(ValueError, match=r"dbr\.txt:3: expected 'name==version', got 'numpy>=2'"):
        load_runtime(bad)
    bad.write_text("pandas==2.2.3\n")
    with pytest.raises(ValueError, match=r"dbr\.txt: no '# Python: X\.Y' line"):
        load_runtime(bad)


def test_wheel_requirements_are_ranges_that_admit_the_runtime_versions(wheels, runtime):
    """No network: every requirement a plain install pulls in admits the runtime's version."""
    by_package = {wheel.package: requires_dist(wheel.path) for wheel in wheels}
    for package, requirements in by_package.items():
        for requirement in requirements:
            assert "~=" not in str(requirement.specifier), f"{package}: {requirement} is a pin"
            name = canonicalize_name(requirement.name)
            assert name != "mlflow", f"{package}: requires mlflow, the runtime has mlflow-skinny"
            if not is_installed_by_default(requirement):
                continue
            assert name != "pyspark", f"{package}: requires pyspark outside an extra"
            if name in runtime.packages:
                assert requirement.specifier.contains(runtime.packages[name], prereleases=True), (
                    f"{package}: {requirement} excludes the runtime's {name}=="
                    f"{runtime.packages[name]}"
                )
        pandas = [r for r in requirements if canonicalize_name(r.name) == "pandas"]
        assert pandas and not pandas[0].specifier.contains("3.0.0"), f"{package}: pandas<3 missing"
    names = {canonicalize_name(r.name) for r in by_package["diabetes_mlops"]}
    assert "mlflow-skinny" in names


def test_replaced_runtime_packages_reports_only_changed_versions(runtime):
    planned = {
        "pandas": Version("3.0.0"),
        "numpy": runtime.packages["numpy"],
        "brand-new": Version("1.0"),
    }
    assert replaced_runtime_packages(runtime, planned) == {
        "pandas": (runtime.packages["pandas"], Version("3.0.0"))
    }


@pytest.mark.network  # pip resolves against the package index
def test_wheels_install_on_the_runtime_without_replacing_any_of_its_packages(
    wheels, runtime, tmp_path
):
    """Resolves both wheels and all they need, transitively, against the runtime's pins."""
    report = resolve_on_runtime(runtime, [str(w.path) for w in wheels], tmp_path / "plan.json")
    installs = planned_installs(report)
    assert {canonicalize_name(w.package) for w in wheels} <= set(installs)
    assert replaced_runtime_packages(runtime, installs) == {}
    ours = {canonicalize_name(w.package) for w in wheels}
    known = set(runtime.packages) | ours
    added = sorted(f"{n}=={v}" for n, v in installs.items() if n not in known)
    # Packages the runtime lacks may be added (never replaced): shown for whoever reads the log.
    print(f"added on {runtime.path.name}: {', '.join(added) or 'nothing'}")


@pytest.mark.network  # pip resolves against the package index
def test_resolution_fails_naming_the_package_when_a_requirement_excludes_the_runtime(
    runtime, tmp_path
):
    # The check above is only as good as its failure: a requirement that would replace the
    # runtime's pandas (pandas 3) must fail the resolution, and say which package.
    with pytest.raises(pytest.fail.Exception, match=r"(?s)keeps every package.*pandas==2\.2\.3"):
        resolve_on_runtime(runtime, ["pandas>=3"], tmp_path / "plan.json")
