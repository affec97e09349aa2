"""The safety invariants end to end, under load through Traefik: a healthy promotion loses no
request, a primary that never gets ready leaves the analysed canary serving, and a canary that
dies mid-analysis loses its traffic at the next step and is rolled back."""

import asyncio
import os
import signal

from temporalio.client import Client

from activities.local_target import LocalTarget, Role
from canary.spec import Canary
from canary.status import Phase
from demo.load import BackgroundLoad
from demo.platform import SCRAPING, Platform
from starter.cli import start_rollout, supersede_rollout
from starter.verdict import final_status
from tests.e2e.rollouts import (
    LOAD_RATE,
    canary_for,
    target_under_load,
    unique,
    versions,
    wait_for_weight,
    wait_until_routed,
    weights_set,
)

AFTER_VERDICT_SECONDS = 3.0


def measured_load(platform: Platform, canary: Canary) -> BackgroundLoad:
    host = f"{canary.metadata.name}.test"
    return BackgroundLoad(
        platform.web_url + "/", rate=LOAD_RATE, duration=120, headers={"Host": host}
    )


async def test_a_healthy_promotion_loses_no_request(platform: Platform, client: Client) -> None:
    canary = canary_for(platform, unique("lossless"))
    with target_under_load(platform, canary):
        platform.wait_for_metric(SCRAPING)
        handle = await start_rollout(client, canary, "v2")
        await wait_for_weight(handle, 25)
        await wait_until_routed(platform, canary)
        with measured_load(platform, canary) as load:
            result = await final_status(handle)
            await asyncio.sleep(AFTER_VERDICT_SECONDS)
        assert result.phase == Phase.SUCCEEDED, [event.message for event in result.events]
    assert load.result.sent > LOAD_RATE * AFTER_VERDICT_SECONDS
    assert dict(load.result.statuses) == {200: load.result.sent}, load.result.summary()
    assert set(load.result.versions) == {"v1", "v2"}


async def test_a_primary_that_never_gets_ready_leaves_the_canary_serving(
    platform: Platform, client: Client
) -> None:
    canary = canary_for(platform, unique("stuck-primary"))
    assert canary.spec.local is not None
    image = f"v2 --unready-on-port {canary.spec.local.primary_port}"
    with target_under_load(platform, canary):
        handle = await start_rollout(client, canary, image)
        result = await final_status(handle)
        with measured_load(platform, canary) as load:
            await asyncio.sleep(AFTER_VERDICT_SECONDS)
        assert versions(platform, canary) == {"v2"}
        assert LocalTarget.for_canary(canary).running(Role.CANARY) is not None
    assert result.phase == Phase.FAILED
    assert result.reason is not None
    assert result.reason.startswith(
        f"Promotion of {canary.target} failed: the primary is not ready: primary of "
    )
    assert result.reason.endswith(f"the canary {canary.target} ({image}) serves all traffic")
    assert load.result.success_rate is not None and load.result.success_rate >= 99.0
    assert set(load.result.versions) == {"v2"}
    assert (await weights_set(handle))[-1] == 100


async def test_a_canary_killed_mid_analysis_loses_its_traffic_and_is_rolled_back(
    platform: Platform, client: Client
) -> None:
    canary = canary_for(platform, unique("killed-canary"))
    with target_under_load(platform, canary):
        platform.wait_for_metric(SCRAPING)
        handle = await start_rollout(client, canary, "v2")
        await wait_for_weight(handle, 25)
        process = LocalTarget.for_canary(canary).running(Role.CANARY)
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
        result = await final_status(handle)
        assert versions(platform, canary) == {"v1"}
    assert result.phase == Phase.FAILED
    halts = [event.message for event in result.events if event.message.startswith("Halt")]
    assert halts, [event.message for event in result.events]
    assert all(
        halt.startswith(f"Halt {canary.target} advancement canary not ready: ") for halt in halts
    )
    weights = await weights_set(handle)
    assert weights[-1] == 0
    assert 0 not in weights[1:-1], f"the canary lost its traffic only at the end: {weights}"


async def test_a_new_image_mid_analysis_restarts_it_and_is_the_one_promoted(
    platform: Platform, client: Client
) -> None:
    canary = canary_for(platform, unique("superseded"))
    with target_under_load(platform, canary):
        platform.wait_for_metric(SCRAPING)
        handle = await start_rollout(client, canary, "v2")
        await wait_for_weight(handle, 25)
        await supersede_rollout(client, handle.id, "v3")
        result = await final_status(handle)
        assert result.phase == Phase.SUCCEEDED, [event.message for event in result.events]
        assert versions(platform, canary) == {"v3"}
    texts = [event.message for event in result.events]
    assert texts.count(f"New revision detected! Restarting analysis for {canary.target}") == 1
    assert result.image == "v3"
    weights = await weights_set(handle)
    restart = weights.index(0, 1)
    assert weights[restart:] == [0, 25, 50, 75, 100, 0], weights
