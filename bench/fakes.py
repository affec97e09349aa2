"""Same-name no-op activities that answer at once and log when each call ran.

The log is what lateness, the start burst and detection are measured on: one `Call` per
activity, with the wall-clock time it was scheduled, started and finished.
"""

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from temporalio import activity

from canary import contract
from canary.decision import StepObservation
from canary.status import MetricObservation

FAILING_PREFIX = "failing-"
"""Canaries whose name starts with this fail every metric check."""
HEALTHY = [
    MetricObservation(name="request-success-rate", value=99.9),
    MetricObservation(name="request-duration", value=120.0),
]
FAILING = [
    MetricObservation(name="request-success-rate", value=61.5),
    MetricObservation(name="request-duration", value=120.0),
]


@dataclass(frozen=True)
class Call:
    workflow_id: str
    name: str
    scheduled: float
    started: float
    finished: float
    canary_weight: int | None = None
    """set_routes only: the canary weight asked for."""

    def as_json(self) -> dict[str, object]:
        return asdict(self)


class NoopActivities:
    """Every activity of the contract, doing nothing; `calls` logs them."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def all(self) -> list[Callable[..., object]]:
        return [
            self.initialize,
            self.set_canary_image,
            self.scale_canary,
            self.readiness,
            self.promote_primary,
            self.set_routes,
            self.set_routes_and_notify,
            self.observe,
            self.call_webhooks,
            self.notify,
        ]

    def floor(self) -> list[Callable[..., object]]:
        """The activities of `bench.floor.FloorWorkflow`."""
        return [self.floor_step, self.floor_routes]

    def _log(self, name: str, started: float, canary_weight: int | None = None) -> None:
        info = activity.info()
        self.calls.append(
            Call(
                workflow_id=info.workflow_id or "",
                name=name,
                scheduled=info.current_attempt_scheduled_time.timestamp(),
                started=started,
                finished=time.time(),
                canary_weight=canary_weight,
            )
        )

    @activity.defn(name=contract.INITIALIZE)
    async def initialize(self, request: contract.CanaryRequest) -> contract.TargetState:
        started = time.time()
        self._log(contract.INITIALIZE, started)
        return contract.TargetState(
            primary_replicas=1, created_primary=False, canary_revision="r1", primary_revision="r1"
        )

    @activity.defn(name=contract.SET_CANARY_IMAGE)
    async def set_canary_image(self, request: contract.ImageRequest) -> str:
        started = time.time()
        self._log(contract.SET_CANARY_IMAGE, started)
        return f"r-{request.image}"

    @activity.defn(name=contract.SCALE_CANARY)
    async def scale_canary(self, request: contract.ScaleRequest) -> None:
        self._log(contract.SCALE_CANARY, time.time())

    @activity.defn(name=contract.READINESS)
    async def readiness(self, request: contract.ReadinessRequest) -> contract.Readiness:
        self._log(contract.READINESS, time.time())
        return contract.Readiness(ready=True, message="ready")

    @activity.defn(name=contract.PROMOTE_PRIMARY)
    async def promote_primary(self, request: contract.PromoteRequest) -> contract.Promotion:
        self._log(contract.PROMOTE_PRIMARY, time.time())
        return contract.Promotion(copied=True, canary_revision=request.revision or "r1")

    @activity.defn(name=contract.SET_ROUTES)
    async def set_routes(self, request: contract.RoutesRequest) -> None:
        self._log(contract.SET_ROUTES, time.time(), request.routes.canary_weight)

    @activity.defn(name=contract.SET_ROUTES_AND_NOTIFY)
    async def set_routes_and_notify(self, request: contract.RoutesAndNotifyRequest) -> None:
        """Logged as set_routes: the bench reads the weights of set_routes calls."""
        self._log(contract.SET_ROUTES, time.time(), request.routes.routes.canary_weight)

    @activity.defn(name=contract.OBSERVE)
    async def observe(self, request: contract.ObserveRequest) -> StepObservation:
        started = time.time()
        failing = request.canary.metadata.name.startswith(FAILING_PREFIX)
        self._log(contract.OBSERVE, started)
        return StepObservation(
            metrics=FAILING if failing else HEALTHY, canary_revision=request.checksum or "r1"
        )

    @activity.defn(name=contract.OBSERVE)
    async def floor_step(self) -> None:
        self._log(contract.OBSERVE, time.time())

    @activity.defn(name=contract.SET_ROUTES)
    async def floor_routes(self) -> None:
        self._log(contract.SET_ROUTES, time.time())

    @activity.defn(name=contract.CALL_WEBHOOKS)
    async def call_webhooks(self, request: contract.WebhooksRequest) -> contract.WebhooksResult:
        self._log(contract.CALL_WEBHOOKS, time.time())
        return contract.WebhooksResult()

    @activity.defn(name=contract.NOTIFY)
    async def notify(self, request: contract.NotifyRequest) -> None:
        self._log(contract.NOTIFY, time.time())
