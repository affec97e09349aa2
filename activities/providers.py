"""The provider interfaces and the registry that picks one implementation per spec.

What each router can do is in `canary.providers`; the registry has one builder per entry there
(the tests hold the two to the same names). Unknown names are refused: nothing falls back to a
default. So is what the worker's scope does not allow (see `activities.scope`).
"""

from collections.abc import Callable, Mapping
from typing import Protocol

import httpx
import kubernetes

from activities import errors
from activities.datadog_metrics import DatadogMetrics
from activities.gatewayapi_router import GatewayAPIRouter, GatewaySettings, StickySessions
from activities.graphite_metrics import GraphiteMetrics
from activities.istio_router import IstioRouter, IstioSettings
from activities.kubernetes_target import KubernetesTarget, ServiceMetadata, ServiceSettings
from activities.local_target import LocalTarget
from activities.metrics_http import MetricsAccess
from activities.newrelic_metrics import NewRelicMetrics
from activities.no_router import NoRouter
from activities.prometheus_metrics import PrometheusMetrics
from activities.scope import WorkerScope
from activities.traefik_router import TraefikRouter
from activities.traefik_service_router import TraefikServiceRouter, TraefikServiceSettings
from canary import providers
from canary.contract import Readiness, TargetState
from canary.decision import Routes
from canary.spec import LOCAL_KIND, Canary, ObjectLabels


class Target(Protocol):
    """The workload: a stable primary copy and the canary under analysis."""

    def initialize(self) -> TargetState: ...
    def set_image(self, image: str, container: str | None = None) -> None: ...
    def scale_canary(self, replicas: int) -> None: ...
    def canary_readiness(self) -> Readiness: ...
    def primary_readiness(self) -> Readiness: ...
    def promote(self, revision: str | None = None) -> str:
        """Copy the canary to the primary while the canary is still `revision` (None: any);
        answer the canary's revision, which says whether anything was copied."""
        ...

    def restore_primary(self, snapshot: str) -> None:
        """Put the primary back to `snapshot` (`TargetState.primary_snapshot`); idempotent."""
        ...

    def canary_revision(self) -> str: ...


class Router(Protocol):
    """Traffic between primary and canary, by absolute weights."""

    def reconcile(self) -> None: ...
    def set_routes(self, routes: Routes) -> None: ...
    def get_routes(self) -> Routes: ...


class MetricsProvider(Protocol):
    """A metrics server: one instant value per query."""

    async def query_value(self, query: str) -> float | None:
        """The query's value; None when it has none ("no values", not an error). Raises
        `MetricsUnavailableError` when the server gives no usable answer, `PermanentError`
        when the query itself is wrong."""
        ...

    async def check_available(self) -> None:
        """Raise `MetricsUnavailableError` unless the server answers queries."""
        ...


KubeApi = Callable[[], kubernetes.client.ApiClient]


def target_for(canary: Canary, api: KubeApi, scope: WorkerScope) -> Target:
    """The target of the spec's kind; `api` is called only for Kubernetes targets."""
    kind = canary.spec.target_ref.kind
    build = TARGETS.get(kind) if kind in providers.TARGET_KINDS else None
    if build is None:
        raise errors.PermanentError(f"spec.targetRef.kind: unknown target kind {kind!r}")
    return build(canary, api, scope)


def router_for(
    canary: Canary,
    api: KubeApi,
    scope: WorkerScope,
    default_provider: str = providers.DEFAULT_PROVIDER,
) -> Router:
    """The router of the spec's provider (`default_provider` when it names none); `api` is
    called only for Kubernetes routers. Which target kinds it may route is the loader's check."""
    provider = canary.spec.provider or default_provider
    if canary.spec.provider is None:
        canary = canary.model_copy(
            update={"spec": canary.spec.model_copy(update={"provider": provider})}
        )
    entry = providers.router(provider)
    build = ROUTERS.get(provider.partition(":")[0]) if entry is not None else None
    if entry is None or build is None:
        raise errors.PermanentError(f"spec.provider: unknown provider {provider!r}")
    return build(canary, api, scope)


def metrics_provider_for(
    provider_type: str,
    address: str,
    client: httpx.AsyncClient,
    timeout_seconds: float,
    access: MetricsAccess | None = None,
) -> MetricsProvider:
    """The metrics provider of a MetricTemplate's `spec.provider.type`, over `client`, with
    the template's headers and Secret in `access`. A Secret that lacks what the provider needs
    is a `PermanentError`."""
    build = METRICS.get(provider_type) if provider_type in providers.METRICS_PROVIDERS else None
    if build is None:
        raise errors.PermanentError(f"unknown metrics provider {provider_type!r}")
    return build(address, client, timeout_seconds, access or MetricsAccess())


def _local_target(canary: Canary, api: KubeApi, scope: WorkerScope) -> Target:
    scope.require_local("spec.targetRef.kind", "LocalProcess targets")
    target = LocalTarget.for_canary(canary, workdir=scope.local_root)
    # the folder as written, then with the rollout's own folder in it
    for path in (target.settings.state_dir, target.state_dir):
        scope.local_path(path, "spec.local.stateDir")
    return target


def _kubernetes_target(canary: Canary, api: KubeApi, scope: WorkerScope) -> Target:
    scope.require_namespace(canary.metadata.namespace)
    ref = canary.spec.target_ref
    service = canary.spec.service
    autoscaler = canary.spec.autoscaler_ref
    return KubernetesTarget(
        api(),
        canary.metadata.namespace,
        ref.name,
        autoscaler_name=autoscaler.name if autoscaler else None,
        service=ServiceSettings(
            name=service.name or ref.name,
            port=service.port,
            target_port=service.target_port,
            port_name=service.port_name,
            app_protocol=service.app_protocol,
            port_discovery=service.port_discovery,
            apex=_service_metadata(service.apex),
            primary=_service_metadata(service.primary),
            canary=_service_metadata(service.canary),
        ),
        canary_ready_threshold=canary.spec.analysis.canary_ready_threshold,
        primary_ready_threshold=canary.spec.analysis.primary_ready_threshold,
    )


def _service_metadata(labels: ObjectLabels | None) -> ServiceMetadata:
    if labels is None:
        return ServiceMetadata()
    return ServiceMetadata(labels=dict(labels.labels), annotations=dict(labels.annotations))


def _istio_router(canary: Canary, api: KubeApi, scope: WorkerScope) -> Router:
    scope.require_namespace(canary.metadata.namespace)
    return IstioRouter(api(), canary.metadata.namespace, IstioSettings.for_canary(canary))


def _gatewayapi_router(canary: Canary, api: KubeApi, scope: WorkerScope) -> Router:
    scope.require_namespace(canary.metadata.namespace)
    service = canary.spec.service
    analysis = canary.spec.analysis
    affinity = analysis.session_affinity
    apex = service.apex or ObjectLabels()
    return GatewayAPIRouter(
        api(),
        canary.metadata.namespace,
        GatewaySettings(
            service=service.name or canary.spec.target_ref.name,
            port=service.port,
            version=str(canary.spec.provider).partition(":")[2],
            parent_refs=tuple(
                ref.model_dump(by_alias=True, exclude_none=True) for ref in service.gateway_refs
            ),
            hostnames=tuple(service.hosts),
            match=tuple(analysis.match),
            service_match=tuple(service.match),
            timeout=service.timeout,
            headers=service.headers,
            rewrite=service.rewrite,
            sessions=None
            if affinity is None
            else StickySessions(
                cookie_name=affinity.cookie_name,
                max_age=affinity.max_age,
                primary_cookie_name=affinity.primary_cookie_name,
                primary_max_age=max(1, round(analysis.interval)),
            ),
            labels=apex.labels,
            annotations=apex.annotations,
        ),
    )


def _traefik_router(canary: Canary, api: KubeApi, scope: WorkerScope) -> Router:
    """A TraefikService for a Deployment; the file provider's config for a LocalProcess."""
    if canary.spec.target_ref.kind != LOCAL_KIND:
        scope.require_namespace(canary.metadata.namespace)
        service = canary.spec.service
        apex = service.apex or ObjectLabels()
        return TraefikServiceRouter(
            api(),
            canary.metadata.namespace,
            TraefikServiceSettings(
                service=service.name or canary.spec.target_ref.name,
                port=service.port,
                labels=apex.labels,
                annotations=apex.annotations,
            ),
        )
    scope.require_local("spec.provider", "the traefik file router")
    if canary.spec.traefik is not None:
        scope.local_path(canary.spec.traefik.config_file, "spec.traefik.configFile")
    return TraefikRouter.for_canary(canary, workdir=scope.local_root)


def _no_router(canary: Canary, api: KubeApi, scope: WorkerScope) -> Router:
    return NoRouter()


TARGETS: Mapping[str, Callable[[Canary, KubeApi, WorkerScope], Target]] = {
    "Deployment": _kubernetes_target,
    LOCAL_KIND: _local_target,
}
"""Target kind -> builder; one per kind of `canary.providers.TARGET_KINDS`."""

ROUTERS: Mapping[str, Callable[[Canary, KubeApi, WorkerScope], Router]] = {
    "istio": _istio_router,
    "traefik": _traefik_router,
    "kubernetes": _no_router,
    "gatewayapi": _gatewayapi_router,
}
"""Provider name -> builder; one per entry of `canary.providers.ROUTERS`."""

METRICS: Mapping[str, Callable[[str, httpx.AsyncClient, float, MetricsAccess], MetricsProvider]] = {
    "prometheus": PrometheusMetrics,
    "datadog": DatadogMetrics,
    "newrelic": NewRelicMetrics,
    "graphite": GraphiteMetrics,
}
"""Metrics provider type -> builder; one per name of `canary.providers.METRICS_PROVIDERS`."""
