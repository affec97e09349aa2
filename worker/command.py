"""`coalmine worker`: its options and how the process runs and ends.

The process ends with `os._exit` once the worker has shut down and the logs are flushed. A
normal interpreter exit tears down the Temporal runtime's core threads while they may still
run, which aborts the process now and then (SIGABRT, exit -6) instead of exiting 0.
"""

import argparse
import asyncio
import logging
import os

from canary import contract
from worker.connection import connect

METRICS_ADDRESS_ENV = "COALMINE_WORKER_METRICS_ADDRESS"
DEFAULT_METRICS_ADDRESS = "0.0.0.0:9464"
"""Where `coalmine worker` serves /metrics unless told otherwise."""
METRICS_SERVER_ENV = "COALMINE_METRICS_SERVER"
QUIET_LOGGERS = ("httpx", "httpcore")
"""Loggers kept to warnings: httpx logs every request's URL at INFO, and an alert provider's
URL is a secret."""


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
    worker.add_argument(
        "--metrics-address",
        default=os.environ.get(METRICS_ADDRESS_ENV),
        metavar="IP:PORT",
        help="serve the worker's Prometheus metrics on http://IP:PORT/metrics, or `off` "
        f"(env {METRICS_ADDRESS_ENV}, default {DEFAULT_METRICS_ADDRESS}: when that is "
        "busy, the worker runs without metrics)",
    )


def run(args: argparse.Namespace) -> None:
    """Run the worker until SIGTERM or SIGINT; WorkerConfigError when it cannot start."""
    from activities.alerts import AlertError
    from worker.main import metrics_runtime, run_worker

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
            metrics_address=address,
            metrics_problem=problem,
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
