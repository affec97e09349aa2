"""A scripted platform for property-based tests: same-name activities that answer from a
script (readiness flaps, metric values, revision changes) and log everything the workflow did.

One set of activities serves many rollouts at once: each call finds its rollout's `World` by
the workflow id it runs for. The log is what the invariants are checked on.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from temporalio import activity

from canary import contract
from canary.decision import StepObservation
from canary.spec import LOCAL_KIND
from canary.status import MetricObservation

HEALTHY = 99.9


@dataclass(frozen=True)
class Script:
    """What the platform answers, in call order; past the end of a list it is healthy."""

    canary_ready: tuple[bool, ...] = ()
    """One answer per canary readiness read (a readiness call or an analysis step)."""
    primary_ready: tuple[bool, ...] = ()
    """One answer per primary readiness read after the primary took the new version."""
    primary_never_ready: bool = False
    """Past `primary_ready`: the new primary never gets ready."""
    restored_ready: tuple[bool, ...] = ()
    """One answer per primary readiness read after the primary got its old template back."""
    restored_never_ready: bool = False
    """Past `restored_ready`: the restored primary never gets ready."""
    success_rates: tuple[float | None, ...] = ()
    """One request-success-rate per analysis step that reads metrics (None: no values)."""
    new_revision_at: frozenset[int] = frozenset()
    """Analysis steps (0-based) before which someone changes the canary's template."""


@dataclass
class Entry:
    what: str
    """`canary-ready`, `primary-ready`, `routes`, `scale`, `observe`, `promote`, `restore`."""
    ready: bool = False
    primary: int = 100
    canary: int = 0
    mirror: bool = False
    replicas: int = 0
    revision: str = ""
    passed: bool = False
    copied: bool = False


@dataclass
class World:
    script: Script
    in_place: bool
    primary_revision: str = "r0"
    canary_revision: str = "r0"
    revisions: int = 0
    log: list[Entry] = field(default_factory=list)
    steps: int = 0
    canary_answers: int = 0
    primary_answers: int = 0
    primary_replaced: bool = False
    restored: list[str] = field(default_factory=list)
    """The revisions `restore_primary` gave the primary back."""
    restored_answers: int = 0

    def next_canary_ready(self) -> bool:
        answers = self.script.canary_ready
        ready = answers[self.canary_answers] if self.canary_answers < len(answers) else True
        self.canary_answers += 1
        self.log.append(Entry("canary-ready", ready=ready))
        return ready

    def next_primary_ready(self) -> bool:
        if self.restored:
            answers = self.script.restored_ready
            if self.restored_answers < len(answers):
                ready = answers[self.restored_answers]
            else:
                ready = not self.script.restored_never_ready
            self.restored_answers += 1
        elif not self.primary_replaced:
            ready = True
        else:
            answers = self.script.primary_ready
            if self.primary_answers < len(answers):
                ready = answers[self.primary_answers]
            else:
                ready = not self.script.primary_never_ready
            self.primary_answers += 1
        self.log.append(Entry("primary-ready", ready=ready))
        return ready

    def change_template(self) -> None:
        self.revisions += 1
        self.canary_revision = f"r{self.revisions}"


@dataclass
class ScriptedPlatform:
    worlds: dict[str, World] = field(default_factory=dict)

    def add(self, workflow_id: str, script: Script, kind: str) -> World:
        world = World(script=script, in_place=kind == LOCAL_KIND)
        self.worlds[workflow_id] = world
        return world

    def activities(self) -> list[Callable[..., object]]:
        return [
            self.initialize,
            self.set_canary_image,
            self.scale_canary,
            self.readiness,
            self.promote_primary,
            self.restore_primary,
            self.set_routes,
            self.set_routes_and_notify,
            self.observe,
            self.call_webhooks,
            self.notify,
        ]

    def _world(self) -> World:
        workflow_id = activity.info().workflow_id
        assert workflow_id is not None, "only workflows call these activities"
        return self.worlds[workflow_id]

    @activity.defn(name=contract.INITIALIZE)
    async def initialize(self, request: contract.CanaryRequest) -> contract.TargetState:
        world = self._world()
        return contract.TargetState(
            primary_replicas=2,
            created_primary=False,
            canary_revision=world.canary_revision,
            primary_revision=world.primary_revision,
            primary_snapshot=world.primary_revision,
        )

    @activity.defn(name=contract.SET_CANARY_IMAGE)
    async def set_canary_image(self, request: contract.ImageRequest) -> str:
        world = self._world()
        world.change_template()
        return world.canary_revision

    @activity.defn(name=contract.SCALE_CANARY)
    async def scale_canary(self, request: contract.ScaleRequest) -> None:
        self._world().log.append(Entry("scale", replicas=request.replicas))

    @activity.defn(name=contract.READINESS)
    async def readiness(self, request: contract.ReadinessRequest) -> contract.Readiness:
        world = self._world()
        ready = world.next_primary_ready() if request.primary else world.next_canary_ready()
        return contract.Readiness(ready=ready, message="ready" if ready else "0 of 2 ready")

    @activity.defn(name=contract.PROMOTE_PRIMARY)
    async def promote_primary(self, request: contract.PromoteRequest) -> contract.Promotion:
        world = self._world()
        found = world.canary_revision
        copied = request.revision is None or request.revision == found
        if copied:
            world.primary_revision = found
            world.primary_replaced = True
        world.log.append(Entry("promote", revision=found, copied=copied))
        return contract.Promotion(copied=copied, canary_revision=found)

    @activity.defn(name=contract.RESTORE_PRIMARY)
    async def restore_primary(self, request: contract.RestoreRequest) -> None:
        world = self._world()
        world.primary_revision = request.snapshot
        world.restored.append(request.snapshot)
        world.log.append(Entry("restore", revision=request.snapshot))

    @activity.defn(name=contract.SET_ROUTES)
    async def set_routes(self, request: contract.RoutesRequest) -> None:
        routes = request.routes
        self._world().log.append(
            Entry(
                "routes",
                primary=routes.primary_weight,
                canary=routes.canary_weight,
                mirror=routes.mirror,
            )
        )

    @activity.defn(name=contract.SET_ROUTES_AND_NOTIFY)
    async def set_routes_and_notify(self, request: contract.RoutesAndNotifyRequest) -> None:
        await self.set_routes(request.routes)

    @activity.defn(name=contract.OBSERVE)
    async def observe(self, request: contract.ObserveRequest) -> StepObservation:
        world = self._world()
        step = world.steps
        world.steps += 1
        if step in world.script.new_revision_at:
            world.change_template()
        ready = world.next_canary_ready()
        revision = world.canary_revision
        if request.canary_only or not ready or revision != request.checksum:
            world.log.append(Entry("observe", ready=ready, revision=revision))
            return StepObservation(
                canary_ready=ready, canary_readiness="0 of 2 ready", canary_revision=revision
            )
        rates = world.script.success_rates
        metric_step = sum(1 for entry in world.log if entry.what == "observe" and entry.ready)
        rate = rates[metric_step] if metric_step < len(rates) else HEALTHY
        passed = rate is not None and rate >= 99
        world.log.append(Entry("observe", ready=True, revision=revision, passed=passed))
        return StepObservation(
            metrics=[
                MetricObservation(name="request-success-rate", value=rate),
                MetricObservation(name="request-duration", value=120.0),
            ],
            canary_revision=revision,
        )

    @activity.defn(name=contract.CALL_WEBHOOKS)
    async def call_webhooks(self, request: contract.WebhooksRequest) -> contract.WebhooksResult:
        return contract.WebhooksResult()

    @activity.defn(name=contract.NOTIFY)
    async def notify(self, request: contract.NotifyRequest) -> None:
        return None
