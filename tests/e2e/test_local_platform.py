"""End to end on the embedded platform, no fakes: the Temporal dev server (SQLite), Prometheus,
Traefik, a `coalmine worker` process and demo apps as local processes, with load through
Traefik. Each test rolls out its own target behind its own Host rule."""

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.local_target import LocalTarget
from canary.spec import Canary
from canary.status import CanaryStatus, Phase
from demo.load import BackgroundLoad, generate_load
from demo.platform import SCRAPING, Platform, Ports, free_port
from starter.cli import start_rollout
from starter.verdict import final_status
from workflows.canary_workflow import CanaryWorkflow

Handle = WorkflowHandle[CanaryWorkflow, CanaryStatus]
LOAD_RATE = 30.0


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with Platform(state_dir=tmp_path_factory.mktemp("platform"), ports=Ports.free()) as started:
        started.start_temporal()
        started.start_prometheus()
        started.start_traefik()
        started.start_worker()
        yield started


async def connect(platform: Platform) -> Client:
    return await Client.connect(platform.temporal_address, data_converter=pydantic_data_converter)


@pytest.fixture(scope="module")
async def client(platform: Platform) -> AsyncIterator[Client]:
    yield await connect(platform)


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


@contextmanager
def target_under_load(platform: Platform, canary: Canary) -> Iterator[None]:
    """Load through Traefik for the target's Host while the test runs; its apps stopped after."""
    host = f"{canary.metadata.name}.test"
    try:
        with BackgroundLoad(
            platform.web_url + "/", rate=LOAD_RATE, duration=120, headers={"Host": host}
        ):
            yield
    finally:
        LocalTarget.for_canary(canary).shutdown()


def versions(platform: Platform, canary: Canary) -> set[str]:
    host = f"{canary.metadata.name}.test"
    result = generate_load(
        platform.web_url + "/", rate=50, duration=2, max_requests=40, headers={"Host": host}
    )
    assert result.sent == 40
    return set(result.versions)


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


async def test_healthy_version_is_promoted_and_then_serves_all_requests(
    platform: Platform, client: Client
) -> None:
    canary = canary_for(platform, unique("healthy"))
    with target_under_load(platform, canary):
        platform.wait_for_metric(SCRAPING)
        handle = await start_rollout(client, canary, "v2")
        result = await handle.result()
        assert result.phase == Phase.SUCCEEDED, [event.message for event in result.events]
        assert versions(platform, canary) == {"v2"}
    assert await weights_set(handle) == [0, 25, 50, 75, 0]


async def test_faulty_version_is_rolled_back_and_the_old_one_serves_all_requests(
    platform: Platform, client: Client
) -> None:
    canary = canary_for(platform, unique("faulty"))
    with target_under_load(platform, canary):
        handle = await start_rollout(client, canary, "v2 --error-rate 0.5")
        result = await final_status(handle)
        assert result.phase == Phase.FAILED
        assert result.reason == (f"Rolling back {canary.target} failed checks threshold reached 2")
        halts = [e.message for e in result.events if e.message.startswith("Halt")]
        assert len(halts) == 2
        assert f"Halt {canary.target} advancement success rate" in halts[-1]
        assert halts[-1].endswith("% < 99%")
        assert versions(platform, canary) == {"v1"}


async def test_a_killed_worker_is_replaced_and_no_step_repeats_or_is_skipped(
    platform: Platform, client: Client
) -> None:
    canary = canary_for(platform, unique("worker-kill"))
    with target_under_load(platform, canary):
        handle = await start_rollout(client, canary, "v2")
        await wait_for_weight(handle, 25)
        platform.processes["worker"].kill()
        await asyncio.sleep(4)
        platform.restart("worker")
        result = await handle.result()
        assert result.phase == Phase.SUCCEEDED, [event.message for event in result.events]
        assert versions(platform, canary) == {"v2"}
    assert await weights_set(handle) == [0, 25, 50, 75, 0]
    advances = [e.message for e in result.events if e.message.startswith("Advance")]
    assert advances == [f"Advance {canary.target} canary weight {w}" for w in (25, 50, 75)]


async def test_a_killed_temporal_server_restarts_on_its_database_and_the_rollout_completes(
    platform: Platform,
) -> None:
    canary = canary_for(platform, unique("server-kill"))
    with target_under_load(platform, canary):
        handle = await start_rollout(await connect(platform), canary, "v2")
        await wait_for_weight(handle, 25)
        platform.processes["temporal"].kill()
        await asyncio.sleep(2)
        platform.restart("temporal")
        fresh = await connect(platform)
        resumed: Handle = fresh.get_workflow_handle_for(CanaryWorkflow.run, handle.id)
        result = await resumed.result()
        assert result.phase == Phase.SUCCEEDED, [event.message for event in result.events]
        assert versions(platform, canary) == {"v2"}
    assert await weights_set(resumed) == [0, 25, 50, 75, 0]


async def test_prometheus_down_halts_with_metrics_unavailable_and_rolls_back_at_threshold(
    platform: Platform, client: Client
) -> None:
    canary = canary_for(platform, unique("prom-down"))
    try:
        with target_under_load(platform, canary):
            handle = await start_rollout(client, canary, "v2")
            await wait_for_weight(handle, 25)
            platform.processes["prometheus"].stop()
            result = await final_status(handle)
    finally:
        platform.restart("prometheus")
    assert result.phase == Phase.FAILED
    assert result.reason == f"Rolling back {canary.target} failed checks threshold reached 2"
    unavailable = [e.message for e in result.events if "metrics unavailable" in e.message]
    assert len(unavailable) == 2
    assert f"metrics unavailable: prometheus at {platform.prometheus_url}" in unavailable[0]


async def test_prometheus_back_in_time_lets_the_rollout_go_on(
    platform: Platform, client: Client
) -> None:
    canary = canary_for(platform, unique("prom-back"), threshold=8)
    try:
        with target_under_load(platform, canary):
            handle = await start_rollout(client, canary, "v2")
            await wait_for_weight(handle, 25)
            platform.processes["prometheus"].stop()
            for _ in range(100):
                if (await handle.query(CanaryWorkflow.status)).failed_checks >= 1:
                    break
                await asyncio.sleep(0.1)
            platform.restart("prometheus")
            result = await handle.result()
    finally:
        if not platform.processes["prometheus"].running:
            platform.restart("prometheus")
    assert result.phase == Phase.SUCCEEDED, [event.message for event in result.events]
    assert 1 <= result.failed_checks < 8


async def test_an_unwritable_traefik_config_fails_set_weight_and_the_rollout_ends(
    platform: Platform, client: Client
) -> None:
    canary = canary_for(platform, unique("unwritable"))
    assert canary.spec.traefik is not None
    config = Path(canary.spec.traefik.config_file)
    try:
        with target_under_load(platform, canary):
            handle = await start_rollout(client, canary, "v2")
            await wait_for_weight(handle, 25)
            # Permission bits do not stop root; the immutable flag does (ext4 and most others).
            subprocess.run(["chattr", "+i", str(config)], check=True)
            result = await final_status(handle)
    finally:
        subprocess.run(["chattr", "-i", str(config)], check=False)
    assert result.phase == Phase.FAILED
    assert result.reason is not None
    assert result.reason.startswith(
        f"Rolling back {canary.target} set_routes failed: Traefik config unwritable: {config}"
    )
    assert any("Rollback of" in e.message and "incomplete" in e.message for e in result.events)
