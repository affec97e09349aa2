"""`coalmine worker`: hosts CanaryWorkflow and the rollout activities on task queue `coalmine`.

SIGTERM and SIGINT stop polling and give in-flight activities time to finish; what does not
finish in that time is retried on another worker.
"""

import asyncio
import concurrent.futures
import logging
import signal
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.kube_client import api_client_from_environment
from activities.rollout import RolloutActivities
from canary.contract import TASK_QUEUE
from workflows.canary_workflow import CanaryWorkflow

SHUTDOWN_GRACE = timedelta(seconds=30)
ACTIVITY_THREADS = 16


def build_worker(
    client: Client,
    activities: RolloutActivities,
    executor: concurrent.futures.Executor,
    task_queue: str = TASK_QUEUE,
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[CanaryWorkflow],
        activities=activities.all(),
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
    activities = RolloutActivities(api_client_from_environment, metrics_server)
    with concurrent.futures.ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        worker = build_worker(client, activities, executor, task_queue)
        async with worker:
            logging.getLogger(__name__).info(
                "coalmine worker polling task queue %s on %s", task_queue, client.namespace
            )
            await stop.wait()
            logging.getLogger(__name__).info("stopping: letting in-flight activities finish")
