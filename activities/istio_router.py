"""Istio router: VirtualService `<svc>` splits traffic between `<svc>-primary` and `<svc>-canary`.

Each side also gets a DestinationRule named after its host. Weights are absolute: setting the
same routes twice changes nothing.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import kubernetes

from activities import errors, kube_client
from canary.decision import Routes

GROUP = "networking.istio.io"
VERSION = "v1beta1"


@dataclass(frozen=True)
class _Kind:
    resource: kube_client.Resource
    plural: str
    owned: tuple[str, ...]
    """The spec fields coalmine manages; any others are left as they are."""


_VIRTUAL_SERVICE = _Kind(
    kube_client.Resource("VirtualService", f"virtualservices.{GROUP}"),
    "virtualservices",
    ("hosts", "gateways", "http"),
)
_DESTINATION_RULE = _Kind(
    kube_client.Resource("DestinationRule", f"destinationrules.{GROUP}"),
    "destinationrules",
    ("host", "trafficPolicy"),
)


@dataclass(frozen=True)
class IstioSettings:
    service: str
    hosts: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    retries: dict[str, Any] | None = None
    traffic_policy: dict[str, Any] | None = None
    match: tuple[dict[str, Any], ...] = ()
    """Istio HTTPMatchRequests that select the canary's requests (A/B testing); empty: none."""
    port: int | None = None


class IstioRouter:
    def __init__(
        self, api: kubernetes.client.ApiClient, namespace: str, settings: IstioSettings
    ) -> None:
        self._objects = kubernetes.client.CustomObjectsApi(api)
        self.namespace = namespace
        self.settings = settings
        self.primary_host = f"{settings.service}-primary"
        self.canary_host = f"{settings.service}-canary"

    def reconcile(self) -> None:
        """Ensure both DestinationRules and the VirtualService, keeping its current weights."""
        for host in (self.primary_host, self.canary_host):
            rule: dict[str, Any] = {"host": host}
            if self.settings.traffic_policy:
                rule["trafficPolicy"] = self.settings.traffic_policy
            existing_rule = self._read_optional(_DESTINATION_RULE, host)
            self._ensure(_DESTINATION_RULE, host, rule, existing_rule)
        name = self.settings.service
        existing = self._read_optional(_VIRTUAL_SERVICE, name)
        # A VirtualService without our routes (e.g. written by hand) is taken over at 100/0.
        routes = (existing and self._parse_routes(existing)) or Routes(
            primary_weight=100, canary_weight=0
        )
        hosts = list(self.settings.hosts)
        if name not in hosts and "*" not in hosts:
            hosts.append(name)
        spec = {
            "hosts": hosts,
            "gateways": list(self.settings.gateways) or ["mesh"],
            "http": self._http_routes(routes),
        }
        self._ensure(_VIRTUAL_SERVICE, name, spec, existing)

    def set_routes(self, routes: Routes) -> None:
        """Route by absolute weights; with `mirror`, all traffic goes to the primary and
        `canary_weight` percent of it is copied to the canary."""
        name = self.settings.service
        http = self._http_routes(routes)
        if _spec(self._read(_VIRTUAL_SERVICE, name)).get("http") != http:
            self._patch(_VIRTUAL_SERVICE, name, {"spec": {"http": http}})

    def get_routes(self) -> Routes:
        name = self.settings.service
        routes = self._parse_routes(self._read(_VIRTUAL_SERVICE, name))
        if routes is None:
            raise errors.PermanentError(
                f"virtualservice {self.namespace}/{name} has no route to "
                f"{self.primary_host} and {self.canary_host}"
            )
        return routes

    def _http_routes(self, routes: Routes) -> list[dict[str, Any]]:
        primary_weight, canary_weight = (
            (100, 0) if routes.mirror else (routes.primary_weight, routes.canary_weight)
        )
        weighted: dict[str, Any] = {
            "route": [
                self._destination(self.primary_host, primary_weight),
                self._destination(self.canary_host, canary_weight),
            ]
        }
        if routes.mirror:
            weighted["mirror"] = self._destination(self.canary_host)["destination"]
            weighted["mirrorPercentage"] = {"value": routes.canary_weight}
        if not self.settings.match:
            return [self._with_retries(weighted)]
        default = {"route": [self._destination(self.primary_host, 100)]}
        matched = {"match": list(self.settings.match), **weighted}
        return [self._with_retries(matched), self._with_retries(default)]

    def _destination(self, host: str, weight: int | None = None) -> dict[str, Any]:
        destination: dict[str, Any] = {"host": host}
        if self.settings.port is not None:
            destination["port"] = {"number": self.settings.port}
        if weight is None:
            return {"destination": destination}
        return {"destination": destination, "weight": weight}

    def _with_retries(self, route: dict[str, Any]) -> dict[str, Any]:
        return {**route, "retries": self.settings.retries} if self.settings.retries else route

    def _parse_routes(self, virtual_service: Mapping[str, Any]) -> Routes | None:
        for route in _spec(virtual_service).get("http") or []:
            destinations = route.get("route") or []
            default_weight = 100 if len(destinations) == 1 else 0
            weights = {
                item["destination"]["host"]: item.get("weight", default_weight)
                for item in destinations
            }
            mirror = (route.get("mirror") or {}).get("host") == self.canary_host
            if mirror:
                percentage = (route.get("mirrorPercentage") or {}).get("value", 100)
                return Routes(
                    primary_weight=weights.get(self.primary_host, 0),
                    canary_weight=int(percentage),
                    mirror=True,
                )
            if self.canary_host in weights:
                return Routes(
                    primary_weight=weights.get(self.primary_host, 0),
                    canary_weight=weights[self.canary_host],
                )
        return None

    def _ensure(
        self, kind: _Kind, name: str, spec: dict[str, Any], existing: Mapping[str, Any] | None
    ) -> None:
        """Create the object with `spec` when there is none, else bring the `owned` fields of
        the existing object's spec to `spec`."""
        if existing is None:
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": kind.resource.kind,
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": spec,
            }
            with kube_client.api_errors("create", kind.resource, self.namespace, name):
                self._objects.create_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, kind.plural, body
                )
            return
        current = {key: value for key, value in _spec(existing).items() if key in kind.owned}
        if patch := kube_client.merge_patch(current, spec):
            self._patch(kind, name, {"spec": patch})

    def _get(self, kind: _Kind, name: str) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self._objects.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, kind.plural, name
            ),
        )

    def _read(self, kind: _Kind, name: str) -> dict[str, Any]:
        with kube_client.api_errors("get", kind.resource, self.namespace, name):
            return self._get(kind, name)

    def _read_optional(self, kind: _Kind, name: str) -> dict[str, Any] | None:
        with kube_client.api_errors("get", kind.resource, self.namespace, name):
            return kube_client.read_optional(lambda: self._get(kind, name))

    def _patch(self, kind: _Kind, name: str, patch: dict[str, Any]) -> None:
        with kube_client.api_errors("patch", kind.resource, self.namespace, name):
            self._objects.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                kind.plural,
                name,
                patch,
                _content_type=kube_client.MERGE_PATCH,
            )


def _spec(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("spec") or {}
