"""Gateway API router: HTTPRoute `<svc>` splits traffic between Services `<svc>-primary` and
`<svc>-canary` by the weights of its backendRefs.

The route hangs off the Gateways of `service.gatewayRefs` (its parentRefs) for the hostnames of
`service.hosts`. With A/B testing (`analysis.match`) the first rule sends the matching requests
to both backends by weight and a second rule sends every other request to the primary. Weights
are absolute: setting the same routes twice changes nothing.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import kubernetes

from activities import errors, kube_client
from canary.decision import ALL_TO_PRIMARY, Routes

GROUP = "gateway.networking.k8s.io"
VERSIONS = ("v1", "v1beta1")
PLURAL = "httproutes"
HTTP_ROUTE = kube_client.Resource("HTTPRoute", f"{PLURAL}.{GROUP}")
OWNED = ("parentRefs", "hostnames", "rules")
"""The spec fields coalmine manages; any others are left as they are."""
DEFAULT_MATCH: Mapping[str, Any] = {"path": {"type": "PathPrefix", "value": "/"}}
"""Every request: the match of a rule without `analysis.match`, as Flagger writes it."""

_STRING_MATCH = {"exact": "Exact", "regex": "RegularExpression"}
_PATH_MATCH = {"exact": "Exact", "prefix": "PathPrefix", "regex": "RegularExpression"}


@dataclass(frozen=True)
class GatewaySettings:
    service: str
    port: int
    version: str = "v1"
    parent_refs: tuple[Mapping[str, Any], ...] = ()
    """Gateway API ParentReferences (name, and namespace, sectionName, port... when given)."""
    hostnames: tuple[str, ...] = ()
    match: tuple[Mapping[str, Any], ...] = ()
    """Istio-style HTTPMatchRequests (headers, queryParams, uri, method) for A/B testing."""


class GatewayAPIRouter:
    def __init__(
        self, api: kubernetes.client.ApiClient, namespace: str, settings: GatewaySettings
    ) -> None:
        if settings.version not in VERSIONS:
            raise errors.PermanentError(
                f"spec.provider: unknown Gateway API version {settings.version!r}"
            )
        if not settings.parent_refs:
            raise errors.PermanentError("spec.service.gatewayRefs: required with gatewayapi")
        self._objects = kubernetes.client.CustomObjectsApi(api)
        self.namespace = namespace
        self.settings = settings
        self.primary_service = f"{settings.service}-primary"
        self.canary_service = f"{settings.service}-canary"
        # Fail at once (permanently) on a match HTTPRoute cannot express.
        self._matches = http_route_matches(settings.match)

    def reconcile(self) -> None:
        """Ensure the HTTPRoute, keeping its current weights (100/0 for a new one)."""
        existing = self._read_optional()
        routes = (existing and self._parse_routes(existing)) or ALL_TO_PRIMARY
        spec = self._spec(routes)
        if existing is None:
            body = {
                "apiVersion": f"{GROUP}/{self.settings.version}",
                "kind": HTTP_ROUTE.kind,
                "metadata": {"name": self.settings.service, "namespace": self.namespace},
                "spec": spec,
            }
            with kube_client.api_errors("create", HTTP_ROUTE, self.namespace, self.name):
                self._objects.create_namespaced_custom_object(
                    GROUP, self.settings.version, self.namespace, PLURAL, body
                )
            return
        current = {key: value for key, value in _spec(existing).items() if key in OWNED}
        if patch := kube_client.merge_patch(current, spec):
            self._patch({"spec": patch})

    def set_routes(self, routes: Routes) -> None:
        """Route by absolute weights; the HTTPRoute is written only when they change."""
        rules = self._rules(routes)
        if _spec(self._read()).get("rules") != rules:
            self._patch({"spec": {"rules": rules}})

    def get_routes(self) -> Routes:
        routes = self._parse_routes(self._read())
        if routes is None:
            raise errors.PermanentError(
                f"httproute {self.namespace}/{self.name} has no rule splitting traffic between "
                f"{self.primary_service} and {self.canary_service}"
            )
        return routes

    @property
    def name(self) -> str:
        return self.settings.service

    def _spec(self, routes: Routes) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "parentRefs": [dict(ref) for ref in self.settings.parent_refs],
            "rules": self._rules(routes),
        }
        if self.settings.hostnames:
            spec["hostnames"] = list(self.settings.hostnames)
        return spec

    def _rules(self, routes: Routes) -> list[dict[str, Any]]:
        if routes.mirror:
            raise errors.PermanentError("spec.analysis.mirror: provider gatewayapi cannot mirror")
        weighted = [
            self._backend(self.primary_service, routes.primary_weight),
            self._backend(self.canary_service, routes.canary_weight),
        ]
        if not self._matches:
            return [{"matches": [dict(DEFAULT_MATCH)], "backendRefs": weighted}]
        return [
            {"matches": self._matches, "backendRefs": weighted},
            {
                "matches": [dict(DEFAULT_MATCH)],
                "backendRefs": [self._backend(self.primary_service, 100)],
            },
        ]

    def _backend(self, service: str, weight: int) -> dict[str, Any]:
        return {
            "group": "",
            "kind": "Service",
            "name": service,
            "port": self.settings.port,
            "weight": weight,
        }

    def _parse_routes(self, route: Mapping[str, Any]) -> Routes | None:
        """The weights of the rule with both backends (A/B testing adds a primary-only one)."""
        for rule in _spec(route).get("rules") or []:
            weights = {
                backend.get("name"): backend.get("weight", 1)
                for backend in rule.get("backendRefs") or []
            }
            if self.primary_service in weights and self.canary_service in weights:
                return Routes(
                    primary_weight=int(weights[self.primary_service]),
                    canary_weight=int(weights[self.canary_service]),
                )
        return None

    def _get(self) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self._objects.get_namespaced_custom_object(
                GROUP, self.settings.version, self.namespace, PLURAL, self.name
            ),
        )

    def _read(self) -> dict[str, Any]:
        with kube_client.api_errors("get", HTTP_ROUTE, self.namespace, self.name):
            return self._get()

    def _read_optional(self) -> dict[str, Any] | None:
        with kube_client.api_errors("get", HTTP_ROUTE, self.namespace, self.name):
            return kube_client.read_optional(self._get)

    def _patch(self, patch: dict[str, Any]) -> None:
        with kube_client.api_errors("patch", HTTP_ROUTE, self.namespace, self.name):
            self._objects.patch_namespaced_custom_object(
                GROUP,
                self.settings.version,
                self.namespace,
                PLURAL,
                self.name,
                patch,
                _content_type=kube_client.MERGE_PATCH,
            )


def http_route_matches(matches: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """HTTPRouteMatches for Istio-style HTTPMatchRequests: the list is OR, fields in one AND.

    Headers and query parameters match exactly or by regex, the path (`uri`) also by prefix,
    the method exactly; a match without `uri` covers every path."""
    converted = []
    for index, match in enumerate(matches):
        path = f"spec.analysis.match[{index}]"
        route_match: dict[str, Any] = {"path": dict(DEFAULT_MATCH["path"])}
        for field, conditions in match.items():
            if field in ("headers", "queryParams"):
                if not isinstance(conditions, Mapping):
                    raise errors.PermanentError(f"{path}.{field}: must map names to conditions")
                route_match[field] = [
                    _named_match(name, condition, f"{path}.{field}.{name}")
                    for name, condition in conditions.items()
                ]
            elif field == "uri":
                kind, value = _condition(conditions, f"{path}.uri", _PATH_MATCH)
                route_match["path"] = {"type": kind, "value": value}
            elif field == "method":
                _, value = _condition(conditions, f"{path}.method", {"exact": "Exact"})
                route_match["method"] = value
            else:
                raise errors.PermanentError(
                    f"{path}.{field}: provider gatewayapi matches headers, queryParams, uri and "
                    "method only"
                )
        converted.append(route_match)
    return converted


def _named_match(name: str, condition: Any, path: str) -> dict[str, Any]:
    kind, value = _condition(condition, path, _STRING_MATCH)
    return {"type": kind, "name": name, "value": value}


def _condition(condition: Any, path: str, kinds: Mapping[str, str]) -> tuple[str, str]:
    """The Gateway API match type and value of an Istio StringMatch (`{exact: v}`)."""
    if (
        not isinstance(condition, Mapping)
        or len(condition) != 1
        or next(iter(condition)) not in kinds
        or not isinstance(next(iter(condition.values())), str)
    ):
        raise errors.PermanentError(f"{path}: must have one of {', '.join(kinds)}")
    ((kind, value),) = condition.items()
    return kinds[kind], value


def _spec(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("spec") or {}
