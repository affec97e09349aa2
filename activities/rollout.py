"""The activities of a rollout: thin shells that pick a provider and call it.

Kubernetes calls block, so those activities are sync and run on the worker's thread pool;
the webhook and observation activities are async. A provider's `PermanentError` becomes a
non-retryable failure; anything else is retried by the policy set at the call site.
"""

import asyncio
import contextlib
import threading
from collections.abc import Callable, Collection, Iterator

import httpx
import kubernetes
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import bounded_http, errors, metric_sources, providers
from activities.prometheus_metrics import builtin_query, render_query
from activities.scope import WorkerScope
from activities.webhooks import call_webhook, webhook_payload
from canary import contract
from canary.decision import StepObservation
from canary.durations import format_duration
from canary.providers import DEFAULT_PROVIDER, METRICS_PROVIDERS
from canary.spec import Canary, Metric, Webhook, WebhookType
from canary.status import MetricObservation, Phase, WebhookObservation

PROMETHEUS_TIMEOUT_SECONDS = 10.0
"""Deadline of one metric query, answer included."""
METRIC_QUERIES_AT_ONCE = 4
"""Bound on one observation's concurrent metric queries, so a spec with many metrics does not
open many connections at once."""


@contextlib.contextmanager
def permanent_errors() -> Iterator[None]:
    try:
        yield
    except errors.PermanentError as error:
        raise ApplicationError(str(error), type="PermanentError", non_retryable=True) from error


class RolloutActivities:
    """Holds the worker's clients and scope; each method is one activity.

    The default scope refuses local targets and allows every Kubernetes namespace;
    `mesh_provider` is the router of a spec that names none (only an input written by another
    Temporal client: the CLI names it)."""

    def __init__(
        self,
        kube_api: Callable[[], kubernetes.client.ApiClient],
        metrics_server: str,
        scope: WorkerScope | None = None,
        *,
        metrics_timeout_seconds: float = PROMETHEUS_TIMEOUT_SECONDS,
        mesh_provider: str = DEFAULT_PROVIDER,
    ) -> None:
        self._scope = scope or WorkerScope()
        self._kube_api_factory = kube_api
        self._kube_api: kubernetes.client.ApiClient | None = None
        self._lock = threading.Lock()
        self._metric_sources = metric_sources.MetricSources(self._api, self._scope, metrics_server)
        self._metrics_timeout_seconds = metrics_timeout_seconds
        self._mesh_provider = mesh_provider

    def all(self) -> list[Callable[..., object]]:
        return [
            self.initialize,
            self.set_canary_image,
            self.scale_canary,
            self.readiness,
            self.promote_primary,
            self.restore_primary,
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
        return providers.router_for(canary, self._api, self._scope, self._mesh_provider)

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
    def promote_primary(self, request: contract.PromoteRequest) -> contract.Promotion:
        with permanent_errors():
            found = self._target(request.canary).promote(request.revision)
            copied = request.revision is None or found == request.revision
            return contract.Promotion(copied=copied, canary_revision=found)

    @activity.defn(name=contract.RESTORE_PRIMARY)
    def restore_primary(self, request: contract.RestoreRequest) -> None:
        with permanent_errors():
            self._target(request.canary).restore_primary(request.snapshot)

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
        """Ask the rollback hooks, read the canary's readiness and revision; when nobody asked
        for a rollback and the canary is ready and still the revision under analysis, run the
        rollout hooks (they may drive load), ask the traffic gates and read the metrics."""
        canary = request.canary
        analysis = canary.spec.analysis
        rollback_gates = [
            await _call(canary, hook, request.phase, request.checksum)
            for hook in analysis.webhooks_of(WebhookType.ROLLBACK)
            if not request.canary_only
        ]
        ready, readiness, revision = await asyncio.to_thread(self._canary_state, canary)
        if (
            request.canary_only
            or any(gate.ok for gate in rollback_gates)
            or not ready
            or (request.checksum and revision != request.checksum)
        ):
            return StepObservation(
                canary_ready=ready,
                canary_readiness=readiness,
                canary_revision=revision,
                rollback_gates=rollback_gates,
            )
        webhooks = [
            await _call(canary, hook, request.phase, request.checksum)
            for hook in analysis.webhooks_of(WebhookType.ROLLOUT)
        ]
        gates = [
            await _call(canary, hook, request.phase, request.checksum)
            for hook in analysis.webhooks_of(WebhookType.CONFIRM_TRAFFIC_INCREASE)
        ]
        metrics = await self._measure_all(canary)
        return StepObservation(
            webhooks=webhooks,
            traffic_gates=gates,
            metrics=metrics,
            canary_ready=ready,
            canary_readiness=readiness,
            canary_revision=revision,
            rollback_gates=rollback_gates,
        )

    def _canary_state(self, canary: Canary) -> tuple[bool, str, str | None]:
        """Readiness, its message and the revision; a target that cannot be read counts as
        not ready (the canary loses its traffic until it can be read again)."""
        try:
            target = self._target(canary)
            readiness = target.canary_readiness()
            return readiness.ready, readiness.message, target.canary_revision()
        except Exception as error:
            return False, f"cannot read the canary: {error}", None

    async def _measure_all(self, canary: Canary) -> list[MetricObservation]:
        """Query every metric, a few at a time, on clients of this call's own: a rollout's
        slow metrics servers hold only its own observation, no pool or thread shared with
        other rollouts."""
        running = asyncio.Semaphore(METRIC_QUERIES_AT_ONCE)
        async with _Clients() as clients:

            async def measure(metric: Metric) -> MetricObservation:
                async with running:
                    return await self._measure(clients, canary, metric)

            return list(await asyncio.gather(*map(measure, canary.spec.analysis.metrics)))

    async def _measure(
        self, clients: "_Clients", canary: Canary, metric: Metric
    ) -> MetricObservation:
        """The metric's value, or its error naming its MetricTemplate (if any) and never
        quoting the template's credentials."""
        credentials: Collection[str] = ()
        try:
            if metric_sources.needs_cluster(metric):
                source = await asyncio.to_thread(self._metric_sources.resolve, canary, metric)
            else:
                source = self._metric_sources.resolve(canary, metric)
            credentials = source.access.credentials.values()
            provider = providers.metrics_provider_for(
                source.provider_type,
                source.address,
                clients.get(verify=source.verify_tls),
                self._metrics_timeout_seconds,
                source.access,
            )
            query = _query(canary, metric, source, self._mesh_provider)
            value = await provider.query_value(query)
        except (errors.MetricsUnavailableError, errors.PermanentError, ValueError) as error:
            message = errors.redact_values(str(error), credentials)
            label = metric_sources.template_label(canary, metric)
            if label is not None:
                message = f"MetricTemplate {label}: {message}"
            return MetricObservation(name=metric.name, error=message)
        return MetricObservation(name=metric.name, value=value)


class _Clients:
    """One observation's HTTP clients: one that checks certificates and, when a template
    asks for it (`insecureSkipVerify`), one that does not."""

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[bool, httpx.AsyncClient] = {}

    async def __aenter__(self) -> "_Clients":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    def get(self, verify: bool) -> httpx.AsyncClient:
        if verify not in self._clients:
            client = bounded_http.new_client(verify=verify)
            self._stack.push_async_callback(client.aclose)
            self._clients[verify] = client
        return self._clients[verify]


def _query(
    canary: Canary, metric: Metric, source: metric_sources.MetricSource, default_provider: str
) -> str:
    values = canary.query_values()
    interval = format_duration(metric.interval)
    if source.query is None:
        return builtin_query(
            canary.spec.provider or default_provider,
            metric.name,
            namespace=values["namespace"],
            target=values["target"],
            interval=interval,
            target_kind=canary.spec.target_ref.kind,
            service=values["service"],
        )
    traits = METRICS_PROVIDERS[source.provider_type]
    return render_query(
        source.query,
        interval=interval,
        variables=metric.template_variables,
        quote=traits.string_quote,
        **values,
    )


async def _call(canary: Canary, hook: Webhook, phase: Phase, checksum: str) -> WebhookObservation:
    payload = webhook_payload(
        name=canary.metadata.name,
        namespace=canary.metadata.namespace,
        phase=phase.value,
        checksum=checksum,
        metadata=hook.metadata,
    )
    outcome = await call_webhook(
        hook.url, payload, hook.timeout, retries=hook.retries, verify_tls=not hook.disable_tls
    )
    return WebhookObservation(name=hook.name, ok=outcome.ok, message=outcome.message)
