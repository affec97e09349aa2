"""`coalmine worker`: hosts CanaryWorkflow and the rollout activities on task queue `coalmine`.

SIGTERM and SIGINT stop polling and give in-flight activities time to finish; what does not
finish in that time is retried on another worker.

Metrics: the Temporal runtime of `metrics_runtime` serves Prometheus metrics on
`http://<address>/metrics`: the SDK's own (`temporal_*`) and the rollouts' (`coalmine_*`, recorded
by the workflow, see `workflows.rollout_metrics`).
"""

import asyncio
import concurrent.futures
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import alerts
from activities.kube_client import api_client_from_environment
from activities.notify import NotifyActivities
from activities.rollout import RolloutActivities
from activities.routes_and_notify import RoutesAndNotifyActivities
from activities.scope import WorkerScope
from canary.contract import TASK_QUEUE
from canary.providers import DEFAULT_PROVIDER
from worker.command import ACTIVITY_THREADS as ACTIVITY_THREADS
from worker.sandbox import LeanSandboxedWorkflowRunner
from workflows import rollout_metrics
from workflows.canary_workflow import CanaryWorkflow

SHUTDOWN_GRACE = timedelta(seconds=30)
PASSTHROUGH_MODULES = ("canary", "yaml")
"""Modules the workflow sandbox shares with the worker instead of importing them again for
every workflow run (the SDK already shares pydantic): the domain is pure and deterministic and
keeps no state a workflow could change. The sandbox stays on for the workflow code itself."""
ROLLOUT_DURATION_BUCKETS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400)
"""Seconds: a rollout takes at least `interval * maxWeight / stepWeight`, often minutes to hours."""


def metrics_runtime(bind_address: str) -> Runtime:
    """A Temporal runtime serving Prometheus metrics at `http://<bind_address>/metrics`.

    Names follow Prometheus conventions: counters end in `_total`, durations are in seconds with
    a `_seconds` suffix (e.g. `temporal_workflow_task_execution_latency_seconds`). ValueError
    when the address is not `ip:port` (no host names) or cannot be bound.
    """
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=bind_address,
                counters_total_suffix=True,
                unit_suffix=True,
                durations_as_seconds=True,
                histogram_bucket_overrides={
                    rollout_metrics.DURATION: [float(b) for b in ROLLOUT_DURATION_BUCKETS]
                },
            )
        )
    )


def worker_activities(
    metrics_server: str, worker_scope: WorkerScope, mesh_provider: str = DEFAULT_PROVIDER
) -> list[Callable[..., object]]:
    """The activities of a production worker; alert providers are read (and checked) here."""
    providers = alerts.AlertProviders.from_environment(
        secret_reader=alerts.KubernetesSecretReader(api_client_from_environment)
    )
    rollout = RolloutActivities(
        api_client_from_environment, metrics_server, worker_scope, mesh_provider=mesh_provider
    )
    notify = NotifyActivities(providers, api_client_from_environment, worker_scope)
    return rollout_activities(rollout, notify)


def rollout_activities(
    rollout: RolloutActivities, notify: NotifyActivities
) -> list[Callable[..., object]]:
    """Every activity a rollout calls, from its two halves."""
    routes_and_notify = RoutesAndNotifyActivities(rollout, notify)
    return [*rollout.all(), *notify.all(), *routes_and_notify.all()]


@dataclass(frozen=True)
class WorkerTuning:
    """How much one worker process takes on at once (see the README's Scale section).

    None leaves the SDK's default (1000 cached workflows is the SDK's too). Keep
    `max_cached_workflows` at or above the number of rollouts the worker carries: an evicted
    rollout is replayed from its whole history at its next step."""

    max_cached_workflows: int = 1000
    max_concurrent_workflow_tasks: int | None = None
    workflow_task_pollers: int | None = None
    activity_task_pollers: int | None = None
    max_concurrent_activities: int = ACTIVITY_THREADS
    sandbox_passthrough: bool = True
    """Share `PASSTHROUGH_MODULES` with the sandbox (False only to measure what it saves)."""
    lean_sandbox: bool = True
    """Enter the sandbox at less cost (`worker.sandbox`; False only to measure what it
    saves)."""


def workflow_runner(passthrough: bool, lean: bool = True) -> SandboxedWorkflowRunner:
    restrictions = SandboxRestrictions.default
    if passthrough:
        restrictions = restrictions.with_passthrough_modules(*PASSTHROUGH_MODULES)
    if lean:
        return LeanSandboxedWorkflowRunner(restrictions=restrictions)
    return SandboxedWorkflowRunner(restrictions=restrictions)


def build_worker(
    client: Client,
    activities: Sequence[Callable[..., object]],
    executor: concurrent.futures.Executor,
    task_queue: str = TASK_QUEUE,
    tuning: WorkerTuning | None = None,
    workflows: Sequence[type] = (CanaryWorkflow,),
) -> Worker:
    """A worker hosting `workflows` (the bench's floor hosts another) and `activities`."""
    tuning = tuning or WorkerTuning()
    return Worker(
        client,
        task_queue=task_queue,
        workflows=workflows,
        activities=activities,
        activity_executor=executor,
        max_concurrent_activities=tuning.max_concurrent_activities,
        graceful_shutdown_timeout=SHUTDOWN_GRACE,
        workflow_runner=workflow_runner(tuning.sandbox_passthrough, tuning.lean_sandbox),
        max_cached_workflows=tuning.max_cached_workflows,
        max_concurrent_workflow_tasks=tuning.max_concurrent_workflow_tasks,
        max_concurrent_workflow_task_polls=tuning.workflow_task_pollers,
        max_concurrent_activity_task_polls=tuning.activity_task_pollers,
    )


async def run_worker(
    client: Client,
    metrics_server: str,
    task_queue: str = TASK_QUEUE,
    worker_scope: WorkerScope | None = None,
    metrics_address: str | None = None,
    metrics_problem: str | None = None,
    mesh_provider: str = DEFAULT_PROVIDER,
    tuning: WorkerTuning | None = None,
) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully.

    `metrics_address` (served by the client's runtime) and `metrics_problem` (why there are no
    metrics) are only logged, after the line that says the worker polls.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    worker_scope = worker_scope or WorkerScope()
    activities = worker_activities(metrics_server, worker_scope, mesh_provider)
    tuning = tuning or WorkerTuning()
    threads = tuning.max_concurrent_activities
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as executor:
        worker = build_worker(client, activities, executor, task_queue, tuning)
        async with worker:
            logging.getLogger(__name__).info(
                "coalmine worker polling task queue %s on %s; metrics %s",
                task_queue,
                client.namespace,
                f"on http://{metrics_address}/metrics" if metrics_address else "off",
            )
            logging.getLogger(__name__).info("%s", describe_scope(worker_scope))
            if metrics_problem:
                logging.getLogger(__name__).warning("%s", metrics_problem)
            await stop.wait()
            logging.getLogger(__name__).info("stopping: letting in-flight activities finish")


def describe_scope(worker_scope: WorkerScope) -> str:
    """One log line: what this worker's rollouts may touch."""
    local = (
        f"local targets allowed under {worker_scope.local_root}"
        if worker_scope.allow_local_targets
        else "local targets refused"
    )
    namespaces = worker_scope.namespaces
    kube = "every namespace" if namespaces is None else ",".join(sorted(namespaces))
    return f"scope: {local}; Kubernetes namespaces: {kube}"
