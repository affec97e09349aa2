"""End to end on the embedded platform, no fakes: the Temporal dev server (SQLite), Prometheus,
Traefik, a `coalmine worker` process and demo apps as local processes, with load through
Traefik. Each test rolls out its own target behind its own Host rule."""

import asyncio
import subprocess
from pathlib import Path

from temporalio.client import Client

from canary.status import Phase
from demo.platform import SCRAPING, Platform
from starter.cli import start_rollout
from starter.verdict import final_status
from tests.e2e.rollouts import (
    Handle,
    canary_for,
    connect,
    target_under_load,
    unique,
    versions,
    wait_for_weight,
    weights_set,
)
from workflows.canary_workflow import CanaryWorkflow

PROMOTED_WEIGHTS = [0, 25, 50, 75, 100, 0]
"""The canary's weights: the steps, then the primary's share while the primary is replaced."""


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
    assert await weights_set(handle) == PROMOTED_WEIGHTS


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
    assert await weights_set(handle) == PROMOTED_WEIGHTS
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
    assert await weights_set(resumed) == PROMOTED_WEIGHTS


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
