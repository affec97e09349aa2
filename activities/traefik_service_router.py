"""Traefik router for Kubernetes (Traefik's CRD provider): TraefikService `<svc>` splits traffic
between Services `<svc>-primary` and `<svc>-canary` by weight, as Flagger's traefik provider
writes it.

The TraefikService is `traefik.io/v1alpha1`, with `spec.weighted.services`: each Service by
name, namespace and `service.port`, with its weight. A Service without a share is left out
(Traefik reads a missing weight as 1), so 100/0 lists the primary alone. The user's IngressRoute
sends its traffic to the TraefikService (`kind: TraefikService`, `name: <svc>`); the labels and
annotations of `service.apex` go on it. Weights are absolute: setting the same routes twice
changes nothing.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kubernetes

from activities import errors, kube_client
from canary.decision import ALL_TO_PRIMARY, Routes

GROUP = "traefik.io"
VERSION = "v1alpha1"
PLURAL = "traefikservices"
OWNED = ("weighted", "mirroring", "highestRandomWeight", "failover")
"""What a TraefikService is (one of them): coalmine keeps it `weighted` and removes another."""
TRAEFIK_SERVICE = kube_client.Resource("TraefikService", f"{PLURAL}.{GROUP}")


@dataclass(frozen=True)
class TraefikServiceSettings:
    service: str
    """The TraefikService's name, and the prefix of the Services it weighs."""
    port: int
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


class TraefikServiceRouter:
    def __init__(
        self, api: kubernetes.client.ApiClient, namespace: str, settings: TraefikServiceSettings
    ) -> None:
        self._objects = kubernetes.client.CustomObjectsApi(api)
        self.namespace = namespace
        self.settings = settings
        self.primary_service = f"{settings.service}-primary"
        self.canary_service = f"{settings.service}-canary"

    @property
    def name(self) -> str:
        return self.settings.service

    def reconcile(self) -> None:
        """Ensure the TraefikService, keeping its current weights (100/0 for a new one)."""
        existing = self._read_optional()
        routes = (existing and self._parse_routes(existing)) or ALL_TO_PRIMARY
        spec = self._spec(routes)
        labels, annotations = self.settings.labels, self.settings.annotations
        if existing is None:
            body = kube_client.new_object(
                f"{GROUP}/{VERSION}",
                TRAEFIK_SERVICE.kind,
                self.namespace,
                self.name,
                spec,
                labels,
                annotations,
            )
            with kube_client.api_errors("create", TRAEFIK_SERVICE, self.namespace, self.name):
                self._objects.create_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, body
                )
            return
        if patch := kube_client.object_patch(existing, spec, OWNED, labels, annotations):
            self._patch(patch)

    def set_routes(self, routes: Routes) -> None:
        """Route by absolute weights; the TraefikService is written only when they change."""
        spec = self._spec(routes)
        if (self._read().get("spec") or {}) != spec:
            self._patch({"spec": spec})

    def get_routes(self) -> Routes:
        routes = self._parse_routes(self._read())
        if routes is None:
            raise errors.PermanentError(
                f"traefikservice {self.namespace}/{self.name} weighs neither "
                f"{self.primary_service} nor {self.canary_service}"
            )
        return routes

    def _spec(self, routes: Routes) -> dict[str, Any]:
        """The whole spec: coalmine owns the TraefikService, as Flagger does."""
        if routes.mirror:
            raise errors.PermanentError(
                "spec.analysis.mirror: provider traefik cannot mirror traffic to a Deployment"
            )
        weighted = [
            {"name": name, "namespace": self.namespace, "port": self.settings.port, "weight": w}
            for name, w in (
                (self.primary_service, routes.primary_weight),
                (self.canary_service, routes.canary_weight),
            )
            if w > 0
        ]
        return {"weighted": {"services": weighted}}

    def _parse_routes(self, traefik_service: Mapping[str, Any]) -> Routes | None:
        spec = traefik_service.get("spec") or {}
        services = (spec.get("weighted") or {}).get("services") or []
        weights = {
            item.get("name"): int(item.get("weight", 1))
            for item in services
            if isinstance(item, Mapping)
        }
        if self.primary_service not in weights and self.canary_service not in weights:
            return None
        return Routes(
            primary_weight=weights.get(self.primary_service, 0),
            canary_weight=weights.get(self.canary_service, 0),
        )

    def _get(self) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self._objects.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name
            ),
        )

    def _read(self) -> dict[str, Any]:
        with kube_client.api_errors("get", TRAEFIK_SERVICE, self.namespace, self.name):
            return self._get()

    def _read_optional(self) -> dict[str, Any] | None:
        with kube_client.api_errors("get", TRAEFIK_SERVICE, self.namespace, self.name):
            return kube_client.read_optional(self._get)

    def _patch(self, patch: dict[str, Any]) -> None:
        with kube_client.api_errors("patch", TRAEFIK_SERVICE, self.namespace, self.name):
            self._objects.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                self.name,
                patch,
                _content_type=kube_client.MERGE_PATCH,
            )
