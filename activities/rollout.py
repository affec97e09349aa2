"""The activities of a rollout: thin shells that pick a provider and call it.

Kubernetes calls block, so those activities are sync and run on the worker's thread pool;
the webhook and observation activities are async. A provider's `PermanentError` becomes a
non-retryable failure; anything else is retried by the policy set at the call site.
"""

import asyncio
import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import kubernetes
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import errors, providers
from activities.prometheus_metrics import PrometheusMetrics, builtin_query, render_query
from activities.scope import WorkerScope
from activities.webhooks import call_webhook, webhook_payload
from canary import contract
from canary.decision import StepObservation
from canary.durations import format_duration
from canary.spec import Canary, Metric, Webhook, WebhookType
from canary.status import MetricObservation, Phase, WebhookObservation

PROMETHEUS_TIMEOUT_SECONDS = 10.0


@contextmanager
def permanent_errors() -> Iterator[None]:
    try:
        yield
    except errors.PermanentError as error:
        raise ApplicationError(str(error), type="PermanentError", non_retryable=True) from error


class RolloutActivities:
    """Holds the worker's clients and scope; each method is one activity.

    The default scope refuses local targets and allows every Kubernetes namespace."""

    def __init__(
        self,
        kube_api: Callable[[], kubernetes.client.ApiClient],
        metrics_server: str,
        scope: WorkerScope | None = None,
    ) -> None:
        self._scope = scope or WorkerScope()
        self._kube_api_factory = kube_api
        self._kube_api: kubernetes.client.ApiClient | None = None
        self._lock = threading.Lock()
        self._metrics_server = metrics_server

    def all(self) -> list[Callable[..., object]]:
        return [
            self.initialize,
            self.set_canary_image,
            self.scale_canary,
            self.readiness,
            self.promote_primary,
            self.set_routes,
            self.observe,
            self.call_webhooks,
        ]

    def _api(self) -> kubernetes.client.ApiClient:
        with self._lock:
            if self._kube_api is None:
                self._kube_api = self._kube_api_factory()
            return self._kube_api

    def _target(self, canary: Canary) -> providers.Target:
        return providers.target_for(canary, self._api, self._scope)

    def _router(self, canary: Canary) -> providers.Router:
        return providers.router_for(canary, self._api, self._scope)

    @activity.defn(name=contract.INITIALIZE)
    def initialize(self, request: contract.CanaryRequest) -> contract.TargetState:
        with permanent_errors():
            state = self._target(request.canary).initialize()
            self._router(request.canary).reconcile()
            return state

    @activity.defn(name=contract.SET_CANARY_IMAGE)
    def set_canary_image(self, request: contract.ImageRequest) -> str:
        """Set the canary's image; answers the canary's new revision."""
        with permanent_errors():
            target = self._target(request.canary)
            target.set_image(request.image)
            return target.canary_revision()

    @activity.defn(name=contract.SCALE_CANARY)
    def scale_canary(self, request: contract.ScaleRequest) -> None:
        with permanent_errors():
            self._target(request.canary).scale_canary(request.replicas)

    @activity.defn(name=contract.READINESS)
    def readiness(self, request: contract.ReadinessRequest) -> contract.Readiness:
        with permanent_errors():
            target = self._target(request.canary)
            return target.primary_readiness() if request.primary else target.canary_readiness()

    @activity.defn(name=contract.PROMOTE_PRIMARY)
    def promote_primary(self, request: contract.CanaryRequest) -> None:
        with permanent_errors():
            self._target(request.canary).promote()

    @activity.defn(name=contract.SET_ROUTES)
    def set_routes(self, request: contract.RoutesRequest) -> None:
        with permanent_errors():
            self._router(request.canary).set_routes(request.routes)

    @activity.defn(name=contract.CALL_WEBHOOKS)
    async def call_webhooks(self, request: contract.WebhooksRequest) -> contract.WebhooksResult:
        hooks = [
            hook for hook in request.canary.spec.analysis.webhooks if hook.type in request.kinds
        ]
        results = [
            await _call(request.canary, hook, request.phase, request.checksum) for hook in hooks
        ]
        return contract.WebhooksResult(webhooks=results)

    @activity.defn(name=contract.OBSERVE)
    async def observe(self, request: contract.ObserveRequest) -> StepObservation:
        """Run the rollout hooks (they may drive load), ask the traffic gates, read metrics."""
        canary = request.canary
        analysis = canary.spec.analysis
        webhooks = [
            await _call(canary, hook, request.phase, request.checksum)
            for hook in analysis.webhooks_of(WebhookType.ROLLOUT)
        ]
        gates = [
            await _call(canary, hook, request.phase, request.checksum)
            for hook in analysis.webhooks_of(WebhookType.CONFIRM_TRAFFIC_INCREASE)
        ]
        metrics = [
            await asyncio.to_thread(self._measure, canary, metric) for metric in analysis.metrics
        ]
        return StepObservation(webhooks=webhooks, traffic_gates=gates, metrics=metrics)

    def _measure(self, canary: Canary, metric: Metric) -> MetricObservation:
        address = metric.metrics_server or canary.spec.analysis.metrics_server
        prometheus = _prometheus(address or self._metrics_server)
        try:
            value = prometheus.query_value(_query(canary, metric))
        except (errors.MetricsUnavailableError, errors.PermanentError, ValueError) as error:
            return MetricObservation(name=metric.name, error=str(error))
        return MetricObservation(name=metric.name, value=value)


@functools.lru_cache(maxsize=16)
def _prometheus(address: str) -> PrometheusMetrics:
    return PrometheusMetrics(address, timeout_seconds=PROMETHEUS_TIMEOUT_SECONDS)


def _query(canary: Canary, metric: Metric) -> str:
    namespace = canary.metadata.namespace
    target = canary.spec.target_ref.name
    interval = format_duration(metric.interval)
    if metric.query is None:
        return builtin_query(
            canary.spec.provider, metric.name, namespace=namespace, target=target, interval=interval
        )
    return render_query(
        metric.query,
        namespace=namespace,
        target=target,
        interval=interval,
        service=canary.spec.service.name or target,
        variables=metric.template_variables,
    )


async def _call(canary: Canary, hook: Webhook, phase: Phase, checksum: str) -> WebhookObservation:
    payload = webhook_payload(
        name=canary.metadata.name,
        namespace=canary.metadata.namespace,
        phase=phase.value,
        checksum=checksum,
        metadata=hook.metadata,
    )
    outcome = await call_webhook(hook.url, payload, hook.timeout)
    return WebhookObservation(name=hook.name, ok=outcome.ok, message=outcome.message)
