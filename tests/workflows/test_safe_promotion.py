"""Promotion and analysis integrity, one scenario each, on the time-skipping server."""

import uuid

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from canary import contract
from canary.spec import LOCAL_KIND
from canary.status import CanaryStatus, EventKind, Phase
from starter.verdict import final_status
from tests.workflows.test_safety_properties import Case, canary_for
from tests.workflows.world import Script, ScriptedPlatform, World
from workflows.canary_workflow import CanaryWorkflow


async def roll_out(
    env: WorkflowEnvironment, script: Script, kind: str = "Deployment"
) -> tuple[CanaryStatus, World]:
    platform = ScriptedPlatform()
    queue = f"promotion-{uuid.uuid4()}"
    canary = canary_for(Case("canary", kind, 2, script, ()))
    workflow_id = f"{canary.workflow_id}-{uuid.uuid4()}"
    world = platform.add(workflow_id, script, kind)
    async with Worker(
        env.client, task_queue=queue, workflows=[CanaryWorkflow], activities=platform.activities()
    ):
        handle = await env.client.start_workflow(
            CanaryWorkflow.run,
            contract.RolloutRequest(canary=canary, image="v2"),
            id=workflow_id,
            task_queue=queue,
        )
        status = await final_status(handle)
    return status, world


def routes(world: World) -> list[tuple[int, int]]:
    return [(entry.primary, entry.canary) for entry in world.log if entry.what == "routes"]


def calls(world: World) -> list[str]:
    return [entry.what for entry in world.log if entry.what in ("routes", "promote", "scale")]


async def test_a_local_primary_is_replaced_only_after_its_traffic_moved_to_the_canary(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    status, world = await roll_out(time_skipping_env, Script(), LOCAL_KIND)
    assert status.phase == Phase.SUCCEEDED
    assert routes(world) == [(100, 0), (80, 20), (60, 40), (40, 60), (0, 100), (100, 0)]
    assert calls(world)[-4:] == ["routes", "promote", "routes", "scale"]
    assert world.primary_revision == status.revision == "r1"


async def test_a_deployment_primary_keeps_its_share_during_its_rolling_update(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    status, world = await roll_out(time_skipping_env, Script())
    assert status.phase == Phase.SUCCEEDED
    assert routes(world) == [(100, 0), (80, 20), (60, 40), (40, 60), (100, 0)]


async def test_a_primary_that_never_gets_ready_leaves_the_analysed_canary_serving(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    status, world = await roll_out(time_skipping_env, Script(primary_never_ready=True))
    assert status.phase == Phase.FAILED
    assert routes(world)[-1] == (0, 100)
    assert [e.replicas for e in world.log if e.what == "scale"] == [2]
    assert status.reason is not None
    assert status.reason.startswith(
        "Promotion of podinfo.test failed: the primary is not ready: 0 of 2 ready;"
    )
    assert status.reason.endswith("the canary podinfo.test (v2) serves all traffic")
    failed = [event for event in status.events if event.kind == EventKind.PROMOTION_FAILED]
    assert [event.message for event in failed] == [status.reason]
    assert EventKind.PROMOTION_FAILED.severity == "error"


async def test_a_new_revision_during_the_analysis_restarts_it_and_is_the_one_promoted(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    status, world = await roll_out(time_skipping_env, Script(new_revision_at=frozenset({1})))
    assert status.phase == Phase.SUCCEEDED
    assert routes(world) == [
        (100, 0),
        (80, 20),
        (60, 40),
        (100, 0),  # New revision detected
        (80, 20),
        (60, 40),
        (40, 60),
        (100, 0),
    ]
    assert [e.revision for e in world.log if e.what == "promote"] == ["r2"]
    assert world.primary_revision == status.revision == "r2"
    text = [event.message for event in status.events]
    assert text.count("New revision detected! Restarting analysis for podinfo.test") == 1
    assert text.count("Starting canary analysis for podinfo.test") == 2
