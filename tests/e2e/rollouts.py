"""Rollouts on the embedded platform: specs, load through Traefik and what the history says."""

import asyncio
import json
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.local_target import LocalTarget
from canary.spec import Canary
from canary.status import CanaryStatus
from demo.load import BackgroundLoad, generate_load
from demo.platform import Platform, free_port
from workflows.canary_workflow import CanaryWorkflow

Handle = WorkflowHandle[CanaryWorkflow, CanaryStatus]
LOAD_RATE = 30.0


def canary_for(platform: Platform, name: str, interval: str = "3s", threshold: int = 2) -> Canary:
    return Canary.model_validate(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": name, "namespace": "e2e"},
            "spec": {
                "provider": "traefik",
                "targetRef": {"kind": "LocalProcess", "name": name},
                "progressDeadlineSeconds": 20,
                "service": {"port": platform.ports.web},
                "local": {
                    "command": f"{sys.executable} -m demo.app "
                    "--port {{ port }} --version {{ image }}",
                    "image": "v1",
                    "primaryPort": free_port(),
                    "canaryPort": free_port(),
                    "stateDir": str(platform.state_dir / "targets"),
                },
                "traefik": {
                    "configFile": str(platform.dynamic_dir / f"{name}.yaml"),
                    "rule": f"Host(`{name}.test`)",
                    "apiUrl": f"http://127.0.0.1:{platform.ports.traefik_admin}",
                },
                "analysis": {
                    "interval": interval,
                    "threshold": threshold,
                    "maxWeight": 75,
                    "stepWeight": 25,
                    "metricsServer": platform.prometheus_url,
                    "metrics": [
                        {
                            "name": "request-success-rate",
                            "thresholdRange": {"min": 99},
                            "interval": "10s",
                        },
                        {
                            "name": "request-duration",
                            "thresholdRange": {"max": 500},
                            "interval": "10s",
                        },
                    ],
                },
            },
        }
    )


async def connect(platform: Platform) -> Client:
    return await Client.connect(platform.temporal_address, data_converter=pydantic_data_converter)


@contextmanager
def target_under_load(platform: Platform, canary: Canary) -> Iterator[BackgroundLoad]:
    """Load through Traefik for the target's Host while the test runs; its apps stopped after."""
    host = f"{canary.metadata.name}.test"
    try:
        with BackgroundLoad(
            platform.web_url + "/", rate=LOAD_RATE, duration=120, headers={"Host": host}
        ) as load:
            yield load
    finally:
        LocalTarget.for_canary(canary).shutdown()


def versions(platform: Platform, canary: Canary) -> set[str]:
    host = f"{canary.metadata.name}.test"
    result = generate_load(
        platform.web_url + "/", rate=50, duration=2, max_requests=40, headers={"Host": host}
    )
    assert result.sent == 40
    return set(result.versions)


async def wait_until_routed(platform: Platform, canary: Canary) -> None:
    """Until Traefik answers for the target's Host: coalmine writes its route when the rollout
    starts, and Traefik applies a new file a moment later (seconds when its cores are busy)."""
    host = f"{canary.metadata.name}.test"
    for _ in range(300):
        result = await asyncio.to_thread(
            generate_load,
            platform.web_url + "/",
            rate=10,
            duration=1,
            max_requests=1,
            headers={"Host": host},
        )
        if result.statuses[200]:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"Traefik never routed {host}")


async def wait_for_weight(handle: Handle, weight: int) -> None:
    for _ in range(300):
        if (await handle.query(CanaryWorkflow.status)).canary_weight >= weight:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the canary never reached weight {weight}")


async def weights_set(handle: Handle) -> list[int]:
    """The weights of every set_routes call, from the summaries in the event history."""
    history = await handle.fetch_history()
    found = []
    for event in history.events:
        summary = event.user_metadata.summary.data
        if event.HasField("marker_recorded_event_attributes") and summary:
            text = json.loads(summary)
            if text.startswith("set weight "):
                found.append(int(text.removeprefix("set weight ")))
    return found


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"
