"""`diabetes-mlops`: validate job specs, run them locally, deploy them, run them remotely."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from databricks.sdk.errors import DatabricksError

from diabetes_mlops.deploy.reachability import Unreachable
from diabetes_mlops.jobs.specs import (
    NOTEBOOKS_FOLDER,
    SPECS_FOLDER,
    SpecError,
    check_job_references,
    check_spec,
    load_specs,
)
from diabetes_mlops.jobs.targets import (
    APPROVAL_PARAMETER,
    DEFAULT_CONFIG,
    LOCAL,
    OWNER_PARAMETER,
    ConfigError,
    Target,
    load_target,
)
from diabetes_mlops.runtime.errors import ParameterError, UserError, sdk_error_line
from diabetes_mlops.tracking.approvals import APPROVED, REJECTED, record_decision

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from diabetes_mlops.local.databricks_connect import RemoteCompute
    from diabetes_mlops.local.runner import JobRun, LocalRunner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="diabetes-mlops", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser(
        "validate", help="check job specs against JobSettings and notebooks"
    )
    validate.add_argument("specs", nargs="*", type=Path, help="default: job_specs/*.json")
    validate.add_argument("--notebooks-dir", type=Path, default=Path(NOTEBOOKS_FOLDER))
    validate.add_argument(
        "--config",
        type=Path,
        default=None,
        help="deploy.yml whose targets' parameters are checked too (default: ./deploy.yml if any)",
    )

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
    run_local.add_argument(
        "--target", default=LOCAL, help="deploy.yml target whose parameters apply"
    )
    run_local.add_argument("--config", type=Path, default=None, help="default: <repo>/deploy.yml")
    run_local.add_argument(
        "--spark-target",
        default=None,
        help="take Spark from this deploy.yml target's compute through Databricks Connect",
    )

    wheels = commands.add_parser(
        "wheels", help="build both wheels, versioned by content, into --out"
    )
    wheels.add_argument("--repo", type=Path, default=Path("."))
    wheels.add_argument("--out", type=Path, default=Path("dist"))

    serve = commands.add_parser(
        "serve", help="serve the local champion with MLflow's scoring server (foreground)"
    )
    serve_check = commands.add_parser(
        "serve-check", help="check the local server against the batch-scoring output"
    )
    for sub in (serve, serve_check):
        sub.add_argument("--local-root", type=Path, default=Path(".local"))
    serve.add_argument("--model-name", default=None, help="default: the local target's model_name")
    serve.add_argument("--port", type=int, default=5001)
    serve.add_argument("--workers", type=int, default=1)
    serve_check.add_argument(
        "--batch-output",
        type=Path,
        default=Path(".local/Volumes/main/diabetes/data/predictions/diabetes"),
    )

    demo_drift = commands.add_parser(
        "demo-drift",
        help="train, score the sample and two drifted batches locally; show drift and retraining",
    )
    demo_drift.add_argument("--local-root", type=Path, default=Path(".local"))
    demo_drift.add_argument("--repo", type=Path, default=Path("."))

    ui_url = commands.add_parser(
        "ui-url", help="the MLflow UI's address of the local target's experiment, on its runs"
    )
    ui_url.add_argument("--local-root", type=Path, default=Path(".local"))

    history = commands.add_parser(
        "history",
        help="every version of a target's model: training, validation, approval,"
        " champion periods, serving",
    )
    history.add_argument("target", help="the deploy.yml target whose model it is")
    history.add_argument("--local", action="store_true", help="the local store")
    history.add_argument("--local-root", type=Path, default=Path(".local"))
    history.add_argument("--config", type=Path, default=DEFAULT_CONFIG)

    for verdict in ("approve", "reject"):
        decide = commands.add_parser(
            verdict,
            help=f"{verdict} a validated model version in a target (recorded on the version);"
            " approve repairs the run that waits for it",
        )
        decide.add_argument("target", help="the deploy.yml target the decision is for")
        decide.add_argument("version", help="the model version number")
        decide.add_argument("--reason", required=True, help="why; recorded with your name")
        decide.add_argument(
            "--local", action="store_true", help="the local store and the local runner's run"
        )
        decide.add_argument("--local-root", type=Path, default=Path(".local"))
        decide.add_argument("--config", type=Path, default=DEFAULT_CONFIG)

    for command, text in (
        ("deploy", "build, upload and create/reset the jobs in a target workspace"),
        (
            "databricks-init",
            "create what a target needs: schemas, volumes, folders, experiment, secret scope,"
            " cluster, grants",
        ),
        ("databricks-upload-data", "put ml_data/'s sample CSVs where a target's jobs read them"),
        ("run", "run a deployed job now and follow it to its end"),
    ):
        sub = commands.add_parser(command, help=text)
        sub.add_argument("--target", default="dev")
        sub.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
        sub.add_argument("--repo", type=Path, default=Path("."))
        if command == "deploy":
            sub.add_argument(
                "--plan", action="store_true", help="print what would change; change nothing"
            )
            sub.add_argument(
                "--dist", type=Path, default=None, help="where to build the wheels (<repo>/dist)"
            )
        if command == "databricks-upload-data":
            sub.add_argument(
                "--overwrite", action="store_true", help="replace a different file already there"
            )
        if command == "run":
            sub.add_argument("job", help="job name as in its spec, e.g. diabetes-model-training")
            sub.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
            sub.add_argument("--no-wait", action="store_true")
            sub.add_argument("--poll-seconds", type=float, default=10.0)

    args = parser.parse_args(argv)
    try:
        return _command(args)
    except UserError as exc:  # every error a user can fix: its lines, no traceback
        _print_error(exc)
        return exc.exit_code


def _command(args: argparse.Namespace) -> int:
    if args.command == "validate":
        config = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
        specs = args.specs or sorted(Path(SPECS_FOLDER).glob("*.json"))
        return _validate(specs, args.notebooks_dir, config)
    if args.command == "run-local":
        return _run_local(args)
    if args.command in ("approve", "reject") and args.local:
        return _decide_local(args)
    if args.command == "history" and args.local:
        return _history_local(args)
    if args.command in ("serve", "serve-check"):
        return _serve(args)
    if args.command == "ui-url":
        from diabetes_mlops.local.store import ui_url

        print(ui_url(args.local_root, load_target(LOCAL).experiment_name or ""))
        return 0
    if args.command == "demo-drift":
        return _demo_drift(args)
    if args.command == "wheels":
        from diabetes_mlops.deploy.wheels import build_wheels

        for wheel in build_wheels(args.repo, args.out):
            print(wheel.path)
        return 0
    return _remote(args)


def _remote(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from diabetes_mlops.deploy.deployer import Deployer
    from diabetes_mlops.deploy.runs import run_job
    from diabetes_mlops.deploy.workspace import connect

    try:
        target = load_target(args.target, args.config)
        if target.name == LOCAL and args.command in ("approve", "reject", "history"):
            raise ConfigError(
                f"target '{LOCAL}' is the local runner's: add --local (its store and its runs)"
            )
        if target.name == LOCAL:
            raise ConfigError(
                f"target '{LOCAL}' holds the local runner's parameters; deploy to dev, staging"
                " or prod"
            )
        if args.command == "history":
            from diabetes_mlops.deploy.workspace_registry import registry_client

            connect(target)  # reachable and signed in: one line, not MLflow's minutes of retries
            with registry_client(target) as client:
                _print_history(client, target)
            return 0
        if args.command in ("approve", "reject"):
            from diabetes_mlops.deploy.approvals import decide

            verdict = APPROVED if args.command == "approve" else REJECTED
            decide(connect(target), target, args.version, verdict, args.reason)
            return 0
        parameters = dict(_pair(p) for p in args.param) if args.command == "run" else {}
        _preflight(args, target, parameters)
        w = connect(target)
        if args.command == "run":
            return run_job(w, target, args.job, parameters, not args.no_wait, args.poll_seconds)
        if args.command == "databricks-upload-data":
            from diabetes_mlops.deploy.sample_data import upload_sample_data
            from diabetes_mlops.deploy.workspace import for_current_user

            resolved = for_current_user(w, target)  # as a deploy resolves it
            upload_sample_data(w, resolved, args.repo / "ml_data", args.overwrite)
            return 0
        deployer = Deployer(w, target, args.repo, dist=getattr(args, "dist", None))
        if args.command == "databricks-init":
            deployer.init()
        elif args.plan:
            deployer.describe(deployer.plan())
        else:
            deployer.deploy()
        return 0
    except DatabricksError as exc:
        print(f"error: {sdk_error_line(exc)}", file=sys.stderr)
        return 1
    except MlflowException as exc:  # the registry (approve, reject, history): its first line
        print(f"error: model registry: {exc.message.splitlines()[0]}", file=sys.stderr)
        return 1
    except Unreachable as exc:  # found in seconds, before the SDK's minutes of retries
        print(
            f"error: {exc} (target '{args.target}': check DATABRICKS_HOST, or the host or"
            " profile in deploy.yml)",
            file=sys.stderr,
        )
        return 1
    except TimeoutError as exc:  # the SDK gave up retrying (throttling, outage, no network)
        print(
            f"error: the workspace did not answer in time, even with retries: {exc}",
            file=sys.stderr,
        )
        return 1


def _validate(specs: list[Path], notebooks_dir: Path, config: Path | None) -> int:
    """Each spec (its fields, notebooks, widgets, and the parameter values its tasks receive),
    then the specs together (the jobs run_job tasks name: checked once every spec is valid, as a
    name is known only from a valid spec), then, with a deploy config, each target's parameters
    applied to the specs, and that the targets keep their data apart."""
    from diabetes_mlops.jobs.preflight import check_job_parameters, check_targets

    if not specs:
        print("no job specs found (looked for job_specs/*.json)", file=sys.stderr)
        return 2
    failed = 0
    checked = []
    for path in specs:
        try:
            spec = check_spec(path, notebooks_dir)
        except SpecError as exc:
            failed += 1
            print(exc, file=sys.stderr)
            continue
        checked.append(spec)
        problems = check_job_parameters(spec)
        for problem in problems:
            print(f"{path}: {problem}", file=sys.stderr)
        failed += bool(problems)
        if not problems:
            tasks = " -> ".join(t.key for t in spec.all_tasks)
            print(f"ok {path}: job '{spec.name}', tasks {tasks}")
    if len(checked) == len(specs):
        try:
            check_job_references(checked)
        except SpecError as exc:
            failed += 1
            print(exc, file=sys.stderr)
    if config is not None:
        try:
            problems = check_targets(config, checked)
        except ConfigError as exc:
            problems = [str(exc)]
        for problem in problems:
            print(problem, file=sys.stderr)
        failed += bool(problems)
        if not problems:
            print(
                f"ok {config}: every target's parameters, the specs on each target's compute"
                " (and serverless), data locations apart"
            )
    return 1 if failed else 0


def _preflight(args: argparse.Namespace, target: Target, parameters: dict[str, str]) -> None:
    """Before any request to the workspace: deploy checks that the targets keep their data
    apart; run checks the values the job will run with. Deploy checks the target's parameter
    values itself (Deployer.plan)."""
    from diabetes_mlops.jobs.preflight import check_job_parameters, data_location_clashes

    if args.command == "databricks-init":
        return
    specs = load_specs(args.repo)
    if args.command in ("deploy", "databricks-upload-data"):
        problems = data_location_clashes(args.config, specs)
    else:
        problems = [
            problem
            for spec in specs
            if spec.name == args.job
            for problem in check_job_parameters(spec, {**target.parameters, **parameters})
        ]
    for name in (APPROVAL_PARAMETER, OWNER_PARAMETER):
        if name in parameters and parameters[name] != target.parameters.get(name):
            problems.append(
                f"parameter '{name}' is target '{target.name}''s setting"
                f" ({target.parameters.get(name)!r} from deploy.yml); a run cannot change it"
            )
    if problems:
        raise ParameterError("\n".join(problems))


def _print_error(exc: Exception) -> None:
    """One `error:` line per problem (a spec or a set of parameters may have several)."""
    for line in str(exc).splitlines() or [type(exc).__name__]:
        print(f"error: {line}", file=sys.stderr)


def _run_local(args: argparse.Namespace) -> int:
    from diabetes_mlops.local.runner import LocalRunner

    overrides = dict(_pair(p) for p in args.param)
    config = args.config or args.spec.absolute().parent.parent / "deploy.yml"
    defaults = load_target(args.target, config).parameters if config.exists() else {}
    compute = _remote_compute(args.spark_target, config) if args.spark_target else None
    runner = LocalRunner(args.local_root, compute=compute)
    job = runner.run(args.spec, overrides, args.notebooks_dir, defaults)
    return _summary(job, runner)


def _summary(job: JobRun, runner: LocalRunner) -> int:
    """A local run's last lines: the job's state and each task's, the failures, the store."""
    state = "SUCCEEDED" if job.succeeded else "FAILED"  # EXCLUDED tasks are no failure
    tasks = ", ".join(f"{t.key} {t.status.lower()} ({t.seconds:.1f} s)" for t in job.tasks)
    print(f"job '{job.name}' {state} in {job.seconds:.1f} s: {tasks}")
    for task in job.tasks:
        if task.error is not None:
            print(f"task {task.key} ({task.source}): {task.error_line}", file=sys.stderr)
    print(f"MLflow: {runner.tracking_uri}")
    return 0 if job.succeeded else 1


def _decide_local(args: argparse.Namespace) -> int:
    """approve|reject --local: the decision in the local store; an approval repairs the local
    run that waits for it, which goes on from its approval task."""
    import getpass

    from diabetes_mlops.local.runner import LocalRunner

    target = _local_registry_target(args)
    verdict = APPROVED if args.command == "approve" else REJECTED
    runner = LocalRunner(args.local_root)
    model_name = target.parameters["model_name"]
    registry = target.parameters.get("registry", "workspace")
    with runner.registry(model_name, registry) as client:
        found = record_decision(
            client, model_name, args.version, target.name, verdict, args.reason, getpass.getuser()
        )
    print(
        f"model {model_name} version {args.version} in target '{target.name}': {found.describe()}"
    )
    if verdict == REJECTED or not found.run:
        if verdict == APPROVED:
            print("no local run waits for it: the approval task will pass when a run reaches it")
        return 0
    job = runner.repair(found.run)
    return _summary(job, runner)


def _local_registry_target(args: argparse.Namespace) -> Target:
    """The target of an --local command: one whose model lives in the local store's registry
    (a Unity Catalog model is the workspace's, never the local store's)."""
    target = load_target(args.target, args.config)
    if target.parameters.get("registry") == "unity_catalog":
        raise ConfigError(
            f"--local uses the local store, and target '{target.name}' registers its model in"
            f" Unity Catalog: leave out --local (the workspace), or name the {LOCAL} target"
        )
    return target


def _history_local(args: argparse.Namespace) -> int:
    from diabetes_mlops.local.runner import LocalRunner

    target = _local_registry_target(args)
    registry = target.parameters.get("registry", "workspace")
    with LocalRunner(args.local_root).registry(target.parameters["model_name"], registry) as client:
        _print_history(client, target)
    return 0


def _print_history(client: MlflowClient, target: Target) -> None:
    from diabetes_mlops.tracking.history import model_history

    model_name = target.parameters["model_name"]
    versions = model_history(client, model_name, target.name, target.approval)
    print(f"model {model_name}, target '{target.name}': {len(versions)} version(s), newest first")
    for version in versions:
        print("\n".join(version.lines()))


def _remote_compute(name: str, config: Path) -> RemoteCompute:
    """The compute a deploy target's jobs run on, as Databricks Connect reaches it: its
    cluster, found by cluster_name (read only: nothing is started or created), or serverless."""
    from diabetes_mlops.deploy.bootstrap import find_cluster
    from diabetes_mlops.deploy.jobs import DeployError
    from diabetes_mlops.deploy.workspace import connect
    from diabetes_mlops.jobs.compute import SERVERLESS
    from diabetes_mlops.local.databricks_connect import RemoteCompute, require_databricks_connect

    if name == LOCAL:
        raise ConfigError(
            f"--spark-target {LOCAL}: the local target has no compute; name a workspace target"
        )
    target = load_target(name, config)
    w = connect(target)
    if target.compute == SERVERLESS:
        require_databricks_connect()
        return RemoteCompute(target.name, w.config)
    try:
        cluster = find_cluster(w, target.cluster_name)
    except DatabricksError as exc:
        raise DeployError(f"--spark-target {name}: {sdk_error_line(exc)}") from None
    if cluster is None:
        raise DeployError(
            f"--spark-target {name}: no cluster named '{target.cluster_name}' in {w.config.host}"
            f" (`make databricks-init TARGET={name}` creates it)"
        )
    require_databricks_connect()
    return RemoteCompute(target.name, w.config, target.cluster_name, cluster.cluster_id)


def _demo_drift(args: argparse.Namespace) -> int:
    from diabetes_mlops.local.drift_demo import run_demo

    run_demo(args.repo, args.local_root)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from diabetes_mlops.local import serving

    if args.command == "serve-check":
        served = serving.read_served(args.local_root)
        serving.serve_check(served, args.batch_output)
        print("serve-check passed")
        return 0
    model_name = args.model_name or load_target(LOCAL).parameters["model_name"]
    return serving.serve(args.local_root, model_name, args.port, args.workers)


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ParameterError(f"--param expects NAME=VALUE, got {text!r}")
    return name.strip(), value


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
