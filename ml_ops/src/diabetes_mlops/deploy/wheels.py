"""Building the two wheels with a content-derived local version: 0.1.0+h<hash>.

An all-purpose cluster keeps a wheel installed until it restarts if a job attaches the same
version again, so every change of a package's sources must change its version, and with it the
wheel's file name. Identical sources give the identical name, so a redeploy uploads nothing.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from diabetes_mlops.deploy.jobs import DeployError
from diabetes_mlops.runtime.digests import add_files

PACKAGES = {"diabetes": "ml_source", "diabetes_mlops": "ml_ops"}
_VERSION = re.compile(r'^__version__ = "([^"+]+)"', re.MULTILINE)


@dataclass(frozen=True)
class Wheel:
    package: str
    version: str
    path: Path

    @property
    def name(self) -> str:
        return self.path.name


def source_digest(project: Path, package: str) -> str:
    """sha256 over the package's pyproject and source files (names and bytes), 10 hex digits."""
    digest = hashlib.sha256()
    files = [project / "pyproject.toml"] + sorted((project / "src" / package).rglob("*.py"))
    add_files(digest, project, files)
    return digest.hexdigest()[:10]


def build_wheels(repo: Path, out_dir: Path) -> list[Wheel]:
    """Build both wheels into out_dir, reusing one already there for the same sources."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [_build(repo / folder, package, out_dir) for package, folder in PACKAGES.items()]


def _build(project: Path, package: str, out_dir: Path) -> Wheel:
    init = project / "src" / package / "__init__.py"
    match = _VERSION.search(init.read_text())
    if not match:
        raise DeployError(f'{init}: no __version__ = "x.y.z" line')
    # "h" before the hash: PEP 440 drops leading zeros from an all-digit local segment, so a
    # hash like 0899811028 would build as +899811028 under another file name than expected.
    version = f"{match.group(1)}+h{source_digest(project, package)}"
    path = out_dir / f"{package}-{version}-py3-none-any.whl"
    if path.exists():
        return Wheel(package, version, path)
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / project.name
        shutil.copytree(
            project, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
        )
        copied_init = copy / "src" / package / "__init__.py"
        copied_init.write_text(_VERSION.sub(f'__version__ = "{version}"', init.read_text(), 1))
        build = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", scratch]
        done = subprocess.run([*build, str(copy)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise DeployError(f"building the {package} wheel failed: {' / '.join(said)}")
        built = Path(scratch) / path.name
        if not built.exists():
            raise DeployError(f"building {package} did not produce {path.name}")
        shutil.move(built, path)
    return Wheel(package, version, path)
