"""`coalmine worker`: hosts CanaryWorkflow and the rollout activities on task queue `coalmine`.

SIGTERM and SIGINT stop polling and give in-flight activities time to finish; what does not
finish in that time is retried on another worker.
"""

import asyncio
import concurrent.futures
import logging
import signal
from collections.abc import Callable, Sequence
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities import alerts
from activities.kube_client import api_client_from_environment
from activities.notify import NotifyActivities
from activities.rollout import RolloutActivities
from canary.contract import TASK_QUEUE
from workflows.canary_workflow import CanaryWorkflow

SHUTDOWN_GRACE = timedelta(seconds=30)
ACTIVITY_THREADS = 16


def worker_activities(metrics_server: str) -> list[Callable[..., object]]:
    """The activities of a production worker; alert providers are read (and checked) here."""
    providers = alerts.AlertProviders.from_environment(
        secret_reader=alerts.KubernetesSecretReader(api_client_from_environment)
    )
    rollout = RolloutActivities(api_client_from_environment, metrics_server)
    notify = NotifyActivities(providers, api_client_from_environment)
    return [*rollout.all(), *notify.all()]


def build_worker(
    client: Client,
    activities: Sequence[Callable[..., object]],
    executor: concurrent.futures.Executor,
    task_queue: str = TASK_QUEUE,
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[CanaryWorkflow],
        activities=activities,
        activity_executor=executor,
        max_concurrent_activities=ACTIVITY_THREADS,
        graceful_shutdown_timeout=SHUTDOWN_GRACE,
    )


async def run_worker(client: Client, metrics_server: str, task_queue: str = TASK_QUEUE) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    activities = worker_activities(metrics_server)
    with concurrent.futures.ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        worker = build_worker(client, activities, executor, task_queue)
        async with worker:
            logging.getLogger(__name__).info(
                "coalmine worker polling task queue %s on %s", task_queue, client.namespace
            )
            await stop.wait()
            logging.getLogger(__name__).info("stopping: letting in-flight activities finish")
