"""The provider interfaces and the factory that picks one implementation per spec.

Unknown names are refused: nothing falls back to a default. So is what the worker's scope does
not allow (see `activities.scope`).
"""

from collections.abc import Callable
from typing import Protocol

import kubernetes

from activities import errors
from activities.istio_router import IstioRouter, IstioSettings
from activities.kubernetes_target import KubernetesTarget, ServiceSettings
from activities.local_target import LocalTarget
from activities.no_router import NoRouter
from activities.scope import WorkerScope
from activities.traefik_router import TraefikRouter
from canary.contract import Readiness, TargetState
from canary.decision import Routes
from canary.spec import LOCAL_KIND, Canary


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


def target_for(
    canary: Canary, api: Callable[[], kubernetes.client.ApiClient], scope: WorkerScope
) -> Target:
    """The target of the spec's kind; `api` is called only for Kubernetes targets."""
    ref = canary.spec.target_ref
    if ref.kind == LOCAL_KIND:
        scope.require_local("spec.targetRef.kind", "LocalProcess targets")
        target = LocalTarget.for_canary(canary, workdir=scope.local_root)
        # the folder as written, then with the rollout's own folder in it
        for path in (target.settings.state_dir, target.state_dir):
            scope.local_path(path, "spec.local.stateDir")
        return target
    if ref.kind != "Deployment":
        raise errors.PermanentError(f"spec.targetRef.kind: unknown target kind {ref.kind!r}")
    scope.require_namespace(canary.metadata.namespace)
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
        ),
        canary_ready_threshold=canary.spec.analysis.canary_ready_threshold,
        primary_ready_threshold=canary.spec.analysis.primary_ready_threshold,
    )


def router_for(
    canary: Canary, api: Callable[[], kubernetes.client.ApiClient], scope: WorkerScope
) -> Router:
    """The router of the spec's provider; `api` is called only for Kubernetes routers."""
    provider = canary.spec.provider
    service = canary.spec.service
    if provider == "istio":
        scope.require_namespace(canary.metadata.namespace)
        return IstioRouter(
            api(),
            canary.metadata.namespace,
            IstioSettings(
                service=service.name or canary.spec.target_ref.name,
                hosts=tuple(service.hosts),
                gateways=tuple(service.gateways),
                retries=service.retries,
                traffic_policy=service.traffic_policy,
                match=tuple(canary.spec.analysis.match),
                port=service.port,
            ),
        )
    if provider == "traefik":
        scope.require_local("spec.provider", "the traefik file router")
        if canary.spec.traefik is not None:
            scope.local_path(canary.spec.traefik.config_file, "spec.traefik.configFile")
        return TraefikRouter.for_canary(canary, workdir=scope.local_root)
    if provider == "kubernetes":
        return NoRouter()
    raise errors.PermanentError(f"spec.provider: unknown provider {provider!r}")
