"""`coalmine worker`: its options and how the process runs and ends.

The process ends with `os._exit` once the worker has shut down and the logs are flushed. A
normal interpreter exit tears down the Temporal runtime's core threads while they may still
run, which aborts the process now and then (SIGABRT, exit -6) instead of exiting 0.
"""

import argparse
import asyncio
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from activities import scope
from canary import contract, providers
from worker.connection import connect

if TYPE_CHECKING:
    from worker.main import WorkerTuning

METRICS_ADDRESS_ENV = "COALMINE_WORKER_METRICS_ADDRESS"
DEFAULT_METRICS_ADDRESS = "127.0.0.1:9464"
"""Where `coalmine worker` serves /metrics unless told otherwise: this machine only. In a pod
the Deployment sets `0.0.0.0:9464` so Prometheus can scrape it."""
METRICS_SERVER_ENV = "COALMINE_METRICS_SERVER"
MESH_PROVIDER_OPTION = "--mesh-provider"
MESH_PROVIDER_ENV = "COALMINE_MESH_PROVIDER"
QUIET_LOGGERS = ("httpx", "httpcore")
"""Loggers kept to warnings: httpx logs every request's URL at INFO, and an alert provider's
URL is a secret."""
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
ACTIVITY_THREADS = 16
"""The default of `--max-concurrent-activities`, here rather than in worker.main: the CLI
imports this module for every command, and worker.main imports every activity."""
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class WorkerConfigError(Exception):
    """The worker cannot start as configured; the message names the option."""


def add_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    worker = commands.add_parser("worker", help="run a worker (workflows and activities)")
    worker.add_argument(
        "--metrics-server",
        default=os.environ.get(METRICS_SERVER_ENV, "http://prometheus:9090"),
        help=f"default Prometheus address (env {METRICS_SERVER_ENV})",
    )
    worker.add_argument("--task-queue", default=contract.TASK_QUEUE)
    add_mesh_provider_argument(worker, "the router of a rollout whose input names none")
    worker.add_argument(
        "--metrics-address",
        default=os.environ.get(METRICS_ADDRESS_ENV),
        metavar="IP:PORT",
        help="serve the worker's Prometheus metrics on http://IP:PORT/metrics, or `off` "
        f"(env {METRICS_ADDRESS_ENV}, default {DEFAULT_METRICS_ADDRESS}: when that is "
        "busy, the worker runs without metrics)",
    )
    worker.add_argument(
        scope.ALLOW_LOCAL_OPTION,
        action="store_true",
        default=None,
        help="run LocalProcess targets and the traefik file router (the embedded platform): "
        "their commands and files are on this machine, so only for a worker whose Temporal "
        f"users may run commands here (env {scope.ALLOW_LOCAL_ENV}=1)",
    )
    worker.add_argument(
        scope.LOCAL_ROOT_OPTION,
        default=os.environ.get(scope.LOCAL_ROOT_ENV),
        metavar="DIR",
        help="the folder local targets' state and traefik config files must lie in; relative "
        f"paths in specs are taken under it (env {scope.LOCAL_ROOT_ENV}, "
        f"default {scope.DEFAULT_LOCAL_ROOT} in the current directory)",
    )
    worker.add_argument(
        scope.NAMESPACES_OPTION,
        default=os.environ.get(scope.NAMESPACES_ENV),
        metavar="A,B",
        help="the only Kubernetes namespaces rollouts may touch "
        f"(env {scope.NAMESPACES_ENV}, default: every namespace)",
    )
    add_tuning_arguments(worker)


def add_tuning_arguments(parser: argparse.ArgumentParser) -> None:
    """How much the worker takes on at once; see the README's Scale section."""
    tuning = parser.add_argument_group("tuning")
    tuning.add_argument(
        "--max-cached-workflows",
        type=positive,
        default=1000,
        metavar="N",
        help="rollouts kept in memory between steps (default 1000); keep it at or above the "
        "rollouts this worker carries, or evicted ones are replayed at every step",
    )
    tuning.add_argument(
        "--max-concurrent-workflow-tasks",
        type=positive,
        metavar="N",
        help="workflow tasks run at once (default: the SDK's)",
    )
    tuning.add_argument(
        "--workflow-pollers",
        type=positive,
        metavar="N",
        help="concurrent long polls for workflow tasks (default: the SDK's)",
    )
    tuning.add_argument(
        "--activity-pollers",
        type=positive,
        metavar="N",
        help="concurrent long polls for activity tasks (default: the SDK's)",
    )
    tuning.add_argument(
        "--max-concurrent-activities",
        type=positive,
        default=ACTIVITY_THREADS,
        metavar="N",
        help=f"activities (and their threads) run at once (default {ACTIVITY_THREADS})",
    )


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not at least 1")
    return value


def tuning_of(args: argparse.Namespace) -> "WorkerTuning":
    from worker.main import WorkerTuning

    return WorkerTuning(
        max_cached_workflows=args.max_cached_workflows,
        max_concurrent_workflow_tasks=args.max_concurrent_workflow_tasks,
        workflow_task_pollers=args.workflow_pollers,
        activity_task_pollers=args.activity_pollers,
        max_concurrent_activities=args.max_concurrent_activities,
    )


def add_mesh_provider_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """`--mesh-provider`, as Flagger's `-mesh-provider` flag: the router of a Canary without
    `spec.provider`."""
    parser.add_argument(
        MESH_PROVIDER_OPTION,
        default=os.environ.get(MESH_PROVIDER_ENV, providers.DEFAULT_PROVIDER),
        metavar="PROVIDER",
        help=f"{what} (env {MESH_PROVIDER_ENV}, default {providers.DEFAULT_PROVIDER}; "
        f"one of {', '.join(providers.router_names())})",
    )


def mesh_provider(value: str) -> str:
    """`--mesh-provider` checked against the routers coalmine has; WorkerConfigError if not."""
    if providers.router(value) is None:
        raise WorkerConfigError(
            f"{MESH_PROVIDER_OPTION} {value}: unknown provider "
            f"(supported: {', '.join(providers.router_names())})"
        )
    return value


def run(args: argparse.Namespace) -> None:
    """Run the worker until SIGTERM or SIGINT; WorkerConfigError when it cannot start."""
    from activities.alerts import AlertError
    from worker.main import metrics_runtime, run_worker

    worker_scope = scope_of(args)
    default_provider = mesh_provider(args.mesh_provider)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    configured: str | None = args.metrics_address or None
    address = metrics_address(configured or DEFAULT_METRICS_ADDRESS)
    runtime = None
    problem = None
    if address is not None:
        try:
            runtime = metrics_runtime(address)
        except ValueError as error:
            if configured is not None:
                raise WorkerConfigError(f"--metrics-address {configured}: {error}") from None
            # Only the default address: a second worker on one machine still starts.
            problem = (
                f"no metrics: the default address {address} is unusable ({error}); "
                f"choose one with --metrics-address or {METRICS_ADDRESS_ENV}"
            )
            address = None

    async def serve() -> None:
        client = await connect(runtime=runtime)
        await run_worker(
            client,
            args.metrics_server,
            args.task_queue,
            worker_scope=worker_scope,
            mesh_provider=default_provider,
            metrics_address=address,
            metrics_problem=problem,
            tuning=tuning_of(args),
        )

    try:
        asyncio.run(serve())
    except AlertError as error:
        raise WorkerConfigError(f"alert providers: {error}") from None
    logging.getLogger(__name__).info("coalmine worker stopped")


def metrics_address(value: str) -> str | None:
    """`--metrics-address`: `ip:port`, or None for `off`."""
    value = value.strip()
    return None if value.lower() == "off" else value


def scope_of(args: argparse.Namespace) -> scope.WorkerScope:
    """The worker's scope from its options (or their env variables); WorkerConfigError when
    one is malformed."""
    allow = args.allow_local_targets
    if allow is None:
        value = os.environ.get(scope.ALLOW_LOCAL_ENV, "").strip().lower()
        if value not in _TRUE + _FALSE:
            raise WorkerConfigError(
                f"{scope.ALLOW_LOCAL_ENV}={value}: expected 1/true/yes/on or 0/false/no/off"
            )
        allow = value in _TRUE
    root = Path(args.local_root) if args.local_root else scope.default_local_root()
    if root.exists() and not root.is_dir():
        raise WorkerConfigError(f"{scope.LOCAL_ROOT_OPTION} {root}: not a folder")
    return scope.WorkerScope(
        allow_local_targets=allow,
        local_root=root.resolve(),
        namespaces=namespaces(args.namespaces),
    )


def namespaces(value: str | None) -> frozenset[str] | None:
    """`--namespaces a,b` -> {a, b}; unset or blank -> None (every namespace)."""
    if value is None or not value.strip():
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    for name in names:
        if not _NAMESPACE.fullmatch(name):
            raise WorkerConfigError(
                f"{scope.NAMESPACES_OPTION} {value}: {name!r} is not a Kubernetes namespace name "
                "(lower-case letters, digits and '-', at most 63)"
            )
    return frozenset(names)
