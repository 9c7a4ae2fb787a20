"""`diabetes-mlops`: validate job specs, run a job spec locally."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diabetes_mlops.errors import ParameterError
from diabetes_mlops.job_specs import SpecError, check_spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="diabetes-mlops", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser(
        "validate", help="check job specs against JobSettings and notebooks"
    )
    validate.add_argument("specs", nargs="*", type=Path, help="default: job_specs/*.json")
    validate.add_argument("--notebooks-dir", type=Path, default=Path("orchestrator_notebooks"))

    run_local = commands.add_parser(
        "run-local", help="run a job spec's notebook tasks on this machine"
    )
    run_local.add_argument("spec", type=Path)
    run_local.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a notebook parameter in every task that declares it (repeatable)",
    )
    run_local.add_argument(
        "--local-root",
        type=Path,
        default=Path(".local"),
        help="folder for the sqlite MLflow store and dbfs:/, /Volumes/ paths",
    )
    run_local.add_argument("--notebooks-dir", type=Path, default=None)

    args = parser.parse_args(argv)
    if args.command == "validate":
        return _validate(args.specs or sorted(Path("job_specs").glob("*.json")), args.notebooks_dir)
    return _run_local(args)


def _validate(specs: list[Path], notebooks_dir: Path) -> int:
    if not specs:
        print("no job specs found (looked for job_specs/*.json)", file=sys.stderr)
        return 2
    failed = 0
    for path in specs:
        try:
            spec = check_spec(path, notebooks_dir)
        except SpecError as exc:
            failed += 1
            print(exc, file=sys.stderr)
            continue
        print(f"ok {path}: job '{spec.name}', tasks {' -> '.join(t.key for t in spec.tasks)}")
    return 1 if failed else 0


def _run_local(args: argparse.Namespace) -> int:
    from diabetes_mlops.local.runner import LocalRunner

    try:
        overrides = dict(_pair(p) for p in args.param)
        runner = LocalRunner(args.local_root)
        job = runner.run(args.spec, overrides, args.notebooks_dir)
    except (SpecError, ParameterError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state = "SUCCEEDED" if job.succeeded else "FAILED"
    tasks = ", ".join(f"{t.key} {t.status.lower()} ({t.seconds:.1f} s)" for t in job.tasks)
    print(f"job '{job.name}' {state} in {job.seconds:.1f} s: {tasks}")
    for task in job.tasks:
        if task.error is not None:
            print(f"task {task.key} ({task.notebook}): {task.error_line}", file=sys.stderr)
    print(f"MLflow: {runner.tracking_uri}")
    return 0 if job.succeeded else 1


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ParameterError(f"--param expects NAME=VALUE, got {text!r}")
    return name.strip(), value


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
