"""Same-name stand-ins for the activities: they record what the workflow asked for."""

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from temporalio import activity
from temporalio.exceptions import ApplicationError

from canary import contract
from canary.decision import Routes, StepObservation
from canary.spec import Canary, WebhookType
from canary.status import MetricObservation, WebhookObservation

Metrics = Callable[[int], list[MetricObservation]]
"""Given the canary weight now routed, what the metrics say."""


def healthy(weight: int) -> list[MetricObservation]:
    return [
        MetricObservation(name="request-success-rate", value=99.9),
        MetricObservation(name="request-duration", value=120.0),
    ]


def failing(weight: int) -> list[MetricObservation]:
    return [
        MetricObservation(name="request-success-rate", value=61.5),
        MetricObservation(name="request-duration", value=120.0),
    ]


@dataclass
class FakePlatform:
    metrics: Metrics = healthy
    routes_fail_at: int | None = None
    """A canary weight that set_routes refuses, as an unwritable router config would."""
    failing_image: str | None = None
    """A canary image whose metrics fail whatever `metrics` says."""
    canary_ready: bool = True
    webhook_ok: Callable[[str], bool] = lambda name: True
    primary_revision: str = "rev-1"
    routes: list[Routes] = field(default_factory=list)
    scales: list[int] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    webhook_calls: list[str] = field(default_factory=list)
    hook_phases: list[tuple[str, str]] = field(default_factory=list)
    """(hook name, phase of its payload) for every call_webhooks call."""
    observed_weights: list[int] = field(default_factory=list)
    notifications: list[contract.Notification] = field(default_factory=list)
    promotions: int = 0
    canary_checks: int = 0
    """Readiness-only observations (while paused)."""
    canary_revision: str | None = None
    """What the canary runs now (set_canary_image sets it); None: the primary's revision."""
    task_queue: str = field(default_factory=lambda: f"test-{uuid.uuid4()}")
    deliver: Callable[[contract.NotifyRequest], Awaitable[None]] | None = None
    """A real `notify` that notifications are handed to as well."""

    def _weight(self) -> int:
        return self.routes[-1].canary_weight if self.routes else 0

    def activities(self) -> list[Callable[..., object]]:
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

    @activity.defn(name=contract.INITIALIZE)
    async def initialize(self, request: contract.CanaryRequest) -> contract.TargetState:
        return contract.TargetState(
            primary_replicas=2,
            created_primary=False,
            canary_revision=self.primary_revision,
            primary_revision=self.primary_revision,
        )

    @activity.defn(name=contract.SET_CANARY_IMAGE)
    async def set_canary_image(self, request: contract.ImageRequest) -> str:
        self.images.append(request.image)
        self.canary_revision = f"rev-{request.image}"
        return self.canary_revision

    @activity.defn(name=contract.SCALE_CANARY)
    async def scale_canary(self, request: contract.ScaleRequest) -> None:
        """Records each replica count the canary goes to: a local activity may run twice (a
        busy worker's task can time out before its result is recorded), to the same effect."""
        if not self.scales or self.scales[-1] != request.replicas:
            self.scales.append(request.replicas)

    @activity.defn(name=contract.READINESS)
    async def readiness(self, request: contract.ReadinessRequest) -> contract.Readiness:
        ready = request.primary or self.canary_ready
        return contract.Readiness(ready=ready, message="0 of 2 replicas ready")

    @activity.defn(name=contract.PROMOTE_PRIMARY)
    async def promote_primary(self, request: contract.PromoteRequest) -> contract.Promotion:
        found = self.canary_revision or self.primary_revision
        if request.revision is not None and request.revision != found:
            return contract.Promotion(copied=False, canary_revision=found)
        self.promotions += 1
        return contract.Promotion(copied=True, canary_revision=found)

    @activity.defn(name=contract.SET_ROUTES)
    async def set_routes(self, request: contract.RoutesRequest) -> None:
        if request.routes.canary_weight == self.routes_fail_at:
            raise ApplicationError("router config is not writable", non_retryable=True)
        self.routes.append(request.routes)

    @activity.defn(name=contract.SET_ROUTES_AND_NOTIFY)
    async def set_routes_and_notify(self, request: contract.RoutesAndNotifyRequest) -> None:
        await self.set_routes(request.routes)
        await self.notify(request.notify)

    @activity.defn(name=contract.OBSERVE)
    async def observe(self, request: contract.ObserveRequest) -> StepObservation:
        revision = self.canary_revision or self.primary_revision
        if request.canary_only:
            self.canary_checks += 1
            return StepObservation(canary_ready=self.canary_ready, canary_revision=revision)
        weight = self._weight()
        self.observed_weights.append(weight)
        analysis = request.canary.spec.analysis
        return StepObservation(
            rollback_gates=[self._hook(h.name) for h in analysis.webhooks_of(WebhookType.ROLLBACK)],
            webhooks=[self._hook(h.name) for h in analysis.webhooks_of(WebhookType.ROLLOUT)],
            traffic_gates=[
                self._hook(h.name)
                for h in analysis.webhooks_of(WebhookType.CONFIRM_TRAFFIC_INCREASE)
            ],
            metrics=self._metrics()(weight),
            canary_revision=self.canary_revision or self.primary_revision,
        )

    @activity.defn(name=contract.CALL_WEBHOOKS)
    async def call_webhooks(self, request: contract.WebhooksRequest) -> contract.WebhooksResult:
        hooks = [h for h in request.canary.spec.analysis.webhooks if h.type in request.kinds]
        self.hook_phases.extend((hook.name, request.phase.value) for hook in hooks)
        return contract.WebhooksResult(webhooks=[self._hook(hook.name) for hook in hooks])

    @activity.defn(name=contract.NOTIFY)
    async def notify(self, request: contract.NotifyRequest) -> None:
        self.notifications.extend(request.notifications)
        if self.deliver is not None:
            await self.deliver(request)

    def _metrics(self) -> Metrics:
        if self.images and self.images[-1] == self.failing_image:
            return failing
        return self.metrics

    def _hook(self, name: str) -> WebhookObservation:
        self.webhook_calls.append(name)
        ok = self.webhook_ok(name)
        return WebhookObservation(name=name, ok=ok, message="" if ok else "status 500")


def canary_spec(**analysis: object) -> Canary:
    """A Flagger-style canary with 1m intervals, 10% steps up to 50%, threshold 3."""
    settings: dict[str, object] = {
        "interval": "1m",
        "threshold": 3,
        "maxWeight": 50,
        "stepWeight": 10,
        "metrics": [
            {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"},
            {"name": "request-duration", "thresholdRange": {"max": 500}, "interval": "30s"},
        ],
    }
    settings.update(analysis)
    return Canary.model_validate(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "progressDeadlineSeconds": 120,
                "service": {"port": 9898},
                "analysis": settings,
            },
        }
    )
