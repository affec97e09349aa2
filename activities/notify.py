"""The `notify` activity: a rollout's notifications to its alert providers and as Kubernetes
Events on the target. Best effort: every failure is logged with a one-line reason and reported,
none is raised, so a notification can never fail or stall a rollout."""

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import kubernetes
from temporalio import activity

from activities import alerts, errors, kube_events
from activities.scope import WorkerScope
from activities.webhooks import call_webhook, webhook_payload
from canary import contract
from canary.spec import WebhookType


@dataclass(frozen=True)
class NotifyReport:
    delivered: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    """One line per notification that did not reach an alert or become an Event."""


class NotifyActivities:
    """Holds the worker's alert provider registry and (lazily) its Kubernetes client."""

    def __init__(
        self,
        providers: alerts.AlertProviders,
        kube_api: Callable[[], kubernetes.client.ApiClient] | None,
        scope: WorkerScope | None = None,
    ) -> None:
        self._providers = providers
        self._scope = scope or WorkerScope()
        self._kube_api_factory = kube_api
        self._kube_api: kubernetes.client.ApiClient | None = None
        self._lock = threading.Lock()

    def all(self) -> list[Callable[..., object]]:
        return [self.notify]

    @activity.defn(name=contract.NOTIFY)
    async def notify(self, request: contract.NotifyRequest) -> None:
        report = await self.deliver(request)
        target = request.canary.target
        for failure in report.failures:
            activity.logger.warning("notification for %s failed: %s", target, failure)
        activity.logger.info(
            "notifications for %s: %d delivered, %d failed",
            target,
            len(report.delivered),
            len(report.failures),
        )

    async def deliver(self, request: contract.NotifyRequest) -> NotifyReport:
        """Send to the alerts and record the Events concurrently; report what happened."""
        sent, recorded, hooked = await asyncio.gather(
            alerts.send_alerts(self._providers, request.canary, request.notifications),
            asyncio.to_thread(self._record_events, request),
            _call_event_hooks(request),
        )
        report = NotifyReport()
        for line, ok in hooked:
            (report.delivered if ok else report.failures).append(line)
        for delivery in sent:
            (report.delivered if delivery.ok else report.failures).append(delivery.describe())
        for line, ok in recorded:
            (report.delivered if ok else report.failures).append(line)
        return report

    def _record_events(self, request: contract.NotifyRequest) -> list[tuple[str, bool]]:
        canary = request.canary
        if not kube_events.applies_to(canary) or not request.notifications:
            return []
        try:
            self._scope.require_namespace(canary.metadata.namespace)
        except errors.PermanentError as error:
            return [(f"events: {error}", False)]
        try:
            api = self._api()
        except kube_events.KUBE_FAILURES as error:
            return [(f"events: no Kubernetes client: {kube_events.failure_reason(error)}", False)]
        if api is None:
            return [("events: this worker has no Kubernetes client", False)]
        events = kube_events.KubeEvents.for_canary(canary, api)
        outcomes = kube_events.record_events(events, request.notifications)
        return [(outcome.describe(), outcome.ok) for outcome in outcomes]

    def _api(self) -> kubernetes.client.ApiClient | None:
        with self._lock:
            if self._kube_api is None and self._kube_api_factory is not None:
                self._kube_api = self._kube_api_factory()
            return self._kube_api


async def _call_event_hooks(request: contract.NotifyRequest) -> list[tuple[str, bool]]:
    """POST each event, in order, to every `event` hook of the spec."""
    canary = request.canary
    outcomes = []
    for event in request.events:
        for hook in canary.spec.analysis.webhooks_of(WebhookType.EVENT):
            payload = webhook_payload(
                name=canary.metadata.name,
                namespace=canary.metadata.namespace,
                phase=request.phase.value,
                checksum=request.checksum,
                metadata=hook.metadata,
                event_type="Warning" if event.warning else "Normal",
                event_message=event.message,
            )
            outcome = await call_webhook(
                hook.url, payload, hook.timeout, verify_tls=not hook.disable_tls
            )
            outcomes.append((f"event hook {hook.name}: {outcome.message}", outcome.ok))
    return outcomes
