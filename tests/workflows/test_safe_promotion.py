"""Promotion and analysis integrity, one scenario each, on the time-skipping server."""

import uuid

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from canary import contract
from canary.spec import LOCAL_KIND
from canary.status import CanaryStatus, EventKind, Phase
from starter.verdict import final_status
from tests.workflows.test_safety_properties import Case, canary_for
from tests.workflows.world import HEALTHY, Script, ScriptedPlatform, World
from workflows.canary_workflow import CanaryWorkflow


async def roll_out(
    env: WorkflowEnvironment,
    script: Script,
    kind: str = "Deployment",
    step_weight_promotion: int | None = None,
) -> tuple[CanaryStatus, World]:
    platform = ScriptedPlatform()
    queue = f"promotion-{uuid.uuid4()}"
    canary = canary_for(Case("canary", kind, 2, script, (), step_weight_promotion))
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


def after_promotion(world: World) -> list[str]:
    """What the workflow did from the promotion on, readiness reads and analyses included."""
    start = next(i for i, entry in enumerate(world.log) if entry.what == "promote")
    shown = []
    for entry in world.log[start:]:
        if entry.what == "routes":
            shown.append(f"routes {entry.primary}/{entry.canary}")
        elif entry.what.endswith("-ready"):
            shown.append(f"{entry.what} {entry.ready}")
        elif entry.what == "observe":
            shown.append("observe " + ("passed" if entry.passed else "failed"))
        elif entry.what in ("scale", "restore"):
            shown.append(
                f"{entry.what} {entry.replicas if entry.what == 'scale' else entry.revision}"
            )
        else:
            shown.append(entry.what)
    return shown


FAILS_AFTER_PROMOTION = (HEALTHY, HEALTHY, HEALTHY, 50.0, 50.0)
"""Three passed analysis steps, then every promotion step fails (threshold 2)."""


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


async def test_step_weight_promotion_moves_the_traffic_back_in_analysed_steps(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    status, world = await roll_out(time_skipping_env, Script(), step_weight_promotion=30)
    assert status.phase == Phase.SUCCEEDED
    assert routes(world) == [(100, 0), (80, 20), (60, 40), (40, 60), (70, 30), (100, 0)]
    assert after_promotion(world) == [
        "promote",
        "primary-ready True",
        "canary-ready True",
        "observe passed",
        "routes 70/30",
        "canary-ready True",
        "observe passed",
        "routes 100/0",
        "scale 0",
    ]
    text = [event.message for event in status.events]
    assert "Advance podinfo.test primary weight 70" in text
    assert text.count("Routing all traffic to primary of podinfo.test") == 1
    assert world.restored == []


async def test_step_weight_promotion_of_a_local_primary_starts_from_the_canary(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    status, world = await roll_out(
        time_skipping_env, Script(), LOCAL_KIND, step_weight_promotion=50
    )
    assert status.phase == Phase.SUCCEEDED
    assert routes(world)[-4:] == [(40, 60), (0, 100), (50, 50), (100, 0)]
    assert calls(world)[-5:] == ["routes", "promote", "routes", "routes", "scale"]
    assert world.primary_revision == status.revision == "r1"


async def test_a_failed_promotion_step_restores_the_primary_before_it_gets_traffic_back(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    status, world = await roll_out(
        time_skipping_env,
        Script(success_rates=FAILS_AFTER_PROMOTION),
        step_weight_promotion=30,
    )
    assert status.phase == Phase.FAILED
    assert status.reason == "Rolling back podinfo.test failed checks threshold reached 2"
    assert after_promotion(world) == [
        "promote",
        "primary-ready True",
        "canary-ready True",
        "observe failed",
        "canary-ready True",
        "observe failed",
        "canary-ready True",  # the canary can serve while the primary is restored
        "routes 0/100",
        "restore r0",
        "primary-ready True",
        "routes 100/0",
        "scale 0",
    ]
    assert world.restored == ["r0"]
    assert world.primary_revision == "r0"
    text = [event.message for event in status.events]
    assert (
        "Restoring podinfo-primary.test to its template from before the rollout of podinfo.test"
        in text
    )


async def test_a_local_primary_is_restored_with_all_traffic_on_the_canary(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    status, world = await roll_out(
        time_skipping_env,
        Script(success_rates=FAILS_AFTER_PROMOTION),
        LOCAL_KIND,
        step_weight_promotion=50,
    )
    assert status.phase == Phase.FAILED
    assert after_promotion(world) == [
        "promote",  # with all traffic on the canary, where it stays until the primary is back
        "primary-ready True",
        "canary-ready True",
        "observe failed",
        "canary-ready True",
        "observe failed",
        "canary-ready True",
        "restore r0",
        "primary-ready True",
        "routes 100/0",
        "scale 0",
    ]
    assert world.restored == ["r0"]
    assert world.primary_revision == "r0"


async def test_a_restored_primary_that_never_gets_ready_leaves_the_canary_serving(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    status, world = await roll_out(
        time_skipping_env,
        Script(success_rates=FAILS_AFTER_PROMOTION, restored_never_ready=True),
        step_weight_promotion=30,
    )
    assert status.phase == Phase.FAILED
    assert status.reason == (
        "Rollback of podinfo.test incomplete: podinfo-primary.test is not ready with its "
        "previous template: 0 of 2 ready; the canary podinfo.test (v2) serves all traffic"
    )
    assert routes(world)[-1] == (0, 100)
    assert [entry.replicas for entry in world.log if entry.what == "scale"] == [2]
    assert world.restored == ["r0"]


async def test_a_local_primary_is_not_restarted_when_the_canary_cannot_serve_meanwhile(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    # ready for the scale-up, three analysis steps and the promotion; then never again
    script = Script(canary_ready=(True,) * 5 + (False,) * 10)
    status, world = await roll_out(time_skipping_env, script, LOCAL_KIND, step_weight_promotion=50)
    assert status.phase == Phase.FAILED
    assert status.reason == (
        "Rollback of podinfo.test incomplete: the canary is not ready to serve while "
        "podinfo-primary.test restarts: it keeps v2; the primary of podinfo.test serves all "
        "traffic"
    )
    assert routes(world)[-1] == (100, 0)
    assert world.restored == []
    assert world.primary_revision == status.revision == "r1"
