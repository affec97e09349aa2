"""Istio router: VirtualService `<svc>` splits traffic between `<svc>-primary` and `<svc>-canary`.

Each side also gets a DestinationRule named after its host. Weights are absolute: setting the
same routes twice changes nothing. The objects are Flagger's: every HTTP route carries the
service's match, rewrite, timeout, retries, CORS policy and header operations; A/B testing puts
the analysis' match first; a TCP service (`appProtocol: TCP`) gets a `tcp` route; a delegate
has neither hosts nor gateways.

Session affinity keeps its state in the VirtualService itself: the cookie of the running
canary is the `Set-Cookie` the weighted route adds to the canary's responses, and a finished
run's cookie is the one the first route expires.
"""

import copy
import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import kubernetes

from activities import errors, kube_client
from canary.decision import Routes
from canary.spec import Canary, SessionAffinity, Strategy

GROUP = "networking.istio.io"
VERSION = "v1beta1"
MESH_GATEWAY = "mesh"
COOKIE_HEADER = "cookie"
SET_COOKIE_HEADER = "Set-Cookie"
EXPIRED = -1
"""The `Max-Age` that makes a browser drop a cookie."""
COOKIE_VALUE_LENGTH = 10


@dataclass(frozen=True)
class _Kind:
    resource: kube_client.Resource
    plural: str
    owned: tuple[str, ...]
    """The spec fields coalmine manages; any others are left as they are."""


_VIRTUAL_SERVICE = _Kind(
    kube_client.Resource("VirtualService", f"virtualservices.{GROUP}"),
    "virtualservices",
    ("hosts", "gateways", "http", "tcp"),
)
_DESTINATION_RULE = _Kind(
    kube_client.Resource("DestinationRule", f"destinationrules.{GROUP}"),
    "destinationrules",
    ("host", "trafficPolicy"),
)


@dataclass(frozen=True)
class StickySessions:
    """`analysis.sessionAffinity`, with the analysis interval the primary's cookie lasts."""

    cookie_name: str
    max_age: int
    primary_cookie_name: str | None = None
    primary_max_age: int = 60
    attributes: str = ""
    """What follows `Max-Age` in every `Set-Cookie` (`; Domain=...; HttpOnly`...)."""

    @classmethod
    def of(cls, affinity: SessionAffinity, interval_seconds: float) -> "StickySessions":
        attributes = [
            f"Domain={affinity.domain}" if affinity.domain else "",
            "HttpOnly" if affinity.http_only else "",
            "Partitioned" if affinity.partitioned else "",
            f"Path={affinity.path}" if affinity.path else "",
            f"SameSite={affinity.same_site}" if affinity.same_site else "",
            "Secure" if affinity.secure else "",
        ]
        return cls(
            cookie_name=affinity.cookie_name,
            max_age=affinity.max_age,
            primary_cookie_name=affinity.primary_cookie_name,
            primary_max_age=int(interval_seconds),
            attributes="".join(f"; {item}" for item in attributes if item),
        )

    def set_cookie(self, cookie: str, max_age: int) -> str:
        return f"{cookie}; Max-Age={max_age}{self.attributes}"


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
    """The port of both destinations; None leaves it to Istio (a single-port Service)."""
    service_match: tuple[dict[str, Any], ...] = ()
    """HTTPMatchRequests every route applies to (`service.match`); empty: all requests."""
    rewrite: dict[str, Any] | None = None
    timeout: str | None = None
    cors_policy: dict[str, Any] | None = None
    headers: dict[str, Any] | None = None
    delegation: bool = False
    tcp: bool = False
    """Route TCP (`appProtocol: TCP`): weights only, nothing of HTTP."""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    """The VirtualService's metadata (`service.apex`)."""
    sticky: StickySessions | None = None
    mirror_weight: int | None = None
    """`analysis.mirrorWeight`; without it a full mirror carries no percentage, as in Flagger."""

    @classmethod
    def for_canary(cls, canary: Canary) -> "IstioSettings":
        service = canary.spec.service
        analysis = canary.spec.analysis
        affinity = analysis.session_affinity
        # sticky sessions belong to weighted releases; the loader warns that others ignore it
        sticky = (
            StickySessions.of(affinity, analysis.interval)
            if affinity is not None and analysis.strategy == Strategy.CANARY
            else None
        )
        gateway_port = bool(service.gateways) and service.gateways[0] != MESH_GATEWAY
        apex = service.apex
        return cls(
            service=service.name or canary.spec.target_ref.name,
            hosts=tuple(service.hosts),
            gateways=tuple(service.gateways),
            retries=service.retries,
            traffic_policy=service.traffic_policy,
            match=tuple(analysis.match),
            # Flagger names the port only for a multi-port Service behind a gateway
            port=service.port
            if service.port_discovery and (gateway_port or service.delegation)
            else None,
            service_match=tuple(service.match),
            rewrite=service.rewrite,
            timeout=service.timeout,
            cors_policy=service.cors_policy,
            headers=service.headers,
            delegation=service.delegation,
            tcp=(service.app_protocol or "").lower() == "tcp",
            labels=dict(apex.labels) if apex else {},
            annotations=dict(apex.annotations) if apex else {},
            sticky=sticky,
            mirror_weight=analysis.mirror_weight,
        )


@dataclass(frozen=True)
class _Cookies:
    """Session cookies as `name=value`."""

    canary: str | None = None
    """The running canary's; requests carrying it go to the canary."""
    primary: str | None = None
    """This step's primary cookie; requests carrying it stay on the primary."""
    previous: str | None = None
    """A finished run's canary cookie, expired on the requests that still carry it."""


class IstioRouter:
    def __init__(
        self, api: kubernetes.client.ApiClient, namespace: str, settings: IstioSettings
    ) -> None:
        self._objects = kubernetes.client.CustomObjectsApi(api)
        self.namespace = namespace
        self.settings = settings
        self.primary_host = f"{settings.service}-primary"
        self.canary_host = f"{settings.service}-canary"

    @property
    def _route_kind(self) -> str:
        return "tcp" if self.settings.tcp else "http"

    def reconcile(self) -> None:
        """Ensure both DestinationRules and the VirtualService, keeping its current weights
        and session cookies."""
        for host in (self.primary_host, self.canary_host):
            rule: dict[str, Any] = {"host": host}
            if self.settings.traffic_policy:
                rule["trafficPolicy"] = self.settings.traffic_policy
            existing_rule = self._read_optional(_DESTINATION_RULE, host)
            self._ensure(_DESTINATION_RULE, host, rule, existing_rule)
        name = self.settings.service
        existing = self._read_optional(_VIRTUAL_SERVICE, name)
        # A VirtualService without our routes (e.g. written by hand) is taken over at 100/0.
        found = existing and self._parse_routes(existing)
        routes = found or Routes(primary_weight=100, canary_weight=0)
        cookies = self._cookies(routes, existing, new_step=False)
        spec: dict[str, Any] = {}
        if not self.settings.delegation:
            hosts = list(self.settings.hosts)
            if name not in hosts and "*" not in hosts:
                hosts.append(name)
            spec["hosts"] = hosts
            spec["gateways"] = list(self.settings.gateways) or [MESH_GATEWAY]
        spec[self._route_kind] = self._routes(routes, cookies)
        self._ensure(_VIRTUAL_SERVICE, name, spec, existing, metadata=True)

    def set_routes(self, routes: Routes) -> None:
        """Route by absolute weights; with `mirror`, all traffic goes to the primary and
        `canary_weight` percent of it is copied to the canary."""
        name = self.settings.service
        existing = self._read(_VIRTUAL_SERVICE, name)
        new_step = self._parse_routes(existing) != routes
        wanted = self._routes(routes, self._cookies(routes, existing, new_step))
        if _spec(existing).get(self._route_kind) != wanted:
            self._patch(_VIRTUAL_SERVICE, name, {"spec": {self._route_kind: wanted}})

    def get_routes(self) -> Routes:
        name = self.settings.service
        routes = self._parse_routes(self._read(_VIRTUAL_SERVICE, name))
        if routes is None:
            raise errors.PermanentError(
                f"virtualservice {self.namespace}/{name} has no route to "
                f"{self.primary_host} and {self.canary_host}"
            )
        return routes

    def _routes(self, routes: Routes, cookies: _Cookies) -> list[dict[str, Any]]:
        if self.settings.tcp:
            return [self._tcp_route(routes)]
        return self._http_routes(routes, cookies)

    def _tcp_route(self, routes: Routes) -> dict[str, Any]:
        route: dict[str, Any] = {}
        if self.settings.service_match:
            route["match"] = [
                {"port": match["port"]} if "port" in match else {}
                for match in self.settings.service_match
            ]
        primary_weight, canary_weight = (
            (100, 0) if routes.mirror else (routes.primary_weight, routes.canary_weight)
        )
        route["route"] = [
            self._destination(self.primary_host, primary_weight),
            self._destination(self.canary_host, canary_weight),
        ]
        return route

    def _http_routes(self, routes: Routes, cookies: _Cookies) -> list[dict[str, Any]]:
        primary_weight, canary_weight = (
            (100, 0) if routes.mirror else (routes.primary_weight, routes.canary_weight)
        )
        weighted = self._http_route(
            self._destination(self.primary_host, primary_weight),
            self._destination(self.canary_host, canary_weight),
        )
        if routes.mirror:
            weighted["mirror"] = self._destination(self.canary_host)["destination"]
            if self.settings.mirror_weight or routes.canary_weight != 100:
                weighted["mirrorPercentage"] = {"value": routes.canary_weight}
        if self.settings.match:
            matched = {
                **weighted,
                "match": _merged_matches(self.settings.match, self.settings.service_match),
            }
            return [matched, self._http_route(self._destination(self.primary_host, 100))]
        if self.settings.sticky is not None:
            return self._sticky_routes(weighted, cookies, self.settings.sticky)
        return [weighted]

    def _sticky_routes(
        self, weighted: dict[str, Any], cookies: _Cookies, sticky: StickySessions
    ) -> list[dict[str, Any]]:
        """While the canary has traffic: a route keeping the canary's sessions on it (and
        one keeping this step's primary sessions on the primary) before the weighted route,
        whose responses set the cookies. Afterwards: a route expiring the run's cookie."""
        if cookies.canary is None:
            if cookies.previous is None:
                return [weighted]
            expiring = {
                **weighted,
                "match": self._cookie_match(cookies.previous),
                "headers": _with_response_header(
                    self.settings.headers,
                    SET_COOKIE_HEADER,
                    sticky.set_cookie(cookies.previous, EXPIRED),
                ),
            }
            return [expiring, weighted]
        canary_destination = weighted["route"][1]
        canary_destination["headers"] = _with_response_header(
            None, SET_COOKIE_HEADER, sticky.set_cookie(cookies.canary, sticky.max_age)
        )
        rules = [
            self._http_route(
                self._destination(self.primary_host, 0),
                self._destination(self.canary_host, 100),
                match=self._cookie_match(cookies.canary),
            )
        ]
        if cookies.primary is not None:
            primary_destination = weighted["route"][0]
            primary_destination["headers"] = _with_response_header(
                None, SET_COOKIE_HEADER, sticky.set_cookie(cookies.primary, sticky.primary_max_age)
            )
            rules.append(
                self._http_route(
                    self._destination(self.primary_host, 100),
                    self._destination(self.canary_host, 0),
                    match=self._cookie_match(cookies.primary),
                )
            )
        return [*rules, weighted]

    def _http_route(
        self, *destinations: dict[str, Any], match: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """An HTTP route to `destinations` with what the service sets on every route, as
        Flagger writes it; `match` replaces the service's match."""
        settings = self.settings
        route: dict[str, Any] = {}
        if match is not None:
            route["match"] = match
        elif settings.service_match:
            route["match"] = list(settings.service_match)
        rewrite = {
            key: value
            for key, value in (settings.rewrite or {}).items()
            if key in ("uri", "authority")
        }
        optional = {
            "rewrite": rewrite,
            "timeout": settings.timeout,
            "retries": settings.retries,
            "corsPolicy": settings.cors_policy,
            "headers": settings.headers,
        }
        route.update({key: value for key, value in optional.items() if value})
        route["route"] = list(destinations)
        return copy.deepcopy(route)

    def _cookie_match(self, cookie: str) -> list[dict[str, Any]]:
        name, _, value = cookie.partition("=")
        condition = {"headers": {COOKIE_HEADER: {"regex": f".*{_regex_literal(name)}.*{value}.*"}}}
        return _merged_matches((condition,), self.settings.service_match)

    def _destination(self, host: str, weight: int | None = None) -> dict[str, Any]:
        destination: dict[str, Any] = {"host": host}
        if self.settings.port is not None:
            destination["port"] = {"number": self.settings.port}
        if weight is None:
            return {"destination": destination}
        return {"destination": destination, "weight": weight}

    def _cookies(
        self, routes: Routes, virtual_service: Mapping[str, Any] | None, new_step: bool
    ) -> _Cookies:
        """The session cookies for `routes`: the stored ones, a new canary cookie when a run
        begins, a new primary cookie at each new step, and the run's cookie to expire once
        the canary has no traffic."""
        sticky = self.settings.sticky
        if sticky is None or self.settings.tcp or self.settings.match:
            return _Cookies()
        stored = self._stored_cookies(virtual_service, sticky)
        if routes.mirror or routes.canary_weight == 0:
            return _Cookies(previous=stored.canary or stored.previous)
        primary = None
        if sticky.primary_cookie_name is not None:
            primary = stored.primary
            if primary is None or new_step:
                primary = _new_cookie(sticky.primary_cookie_name)
        return _Cookies(canary=stored.canary or _new_cookie(sticky.cookie_name), primary=primary)

    def _stored_cookies(
        self, virtual_service: Mapping[str, Any] | None, sticky: StickySessions
    ) -> _Cookies:
        rules = list(_spec(virtual_service).get("http") or [])
        weighted = next(
            (rule for rule in reversed(rules) if self.canary_host in _hosts(rule)), None
        )
        by_host = {
            item.get("destination", {}).get("host"): _set_cookie(item.get("headers"))
            for item in (weighted or {}).get("route") or []
        }
        expired = [
            header
            for rule in rules
            if rule is not weighted
            and (header := _set_cookie(rule.get("headers")))
            and f"Max-Age={EXPIRED}" in header
        ]
        return _Cookies(
            canary=_cookie_named(by_host.get(self.canary_host), sticky.cookie_name),
            primary=_cookie_named(by_host.get(self.primary_host), sticky.primary_cookie_name),
            previous=next(
                (
                    cookie
                    for header in expired
                    if (cookie := _cookie_named(header, sticky.cookie_name))
                ),
                None,
            ),
        )

    def _parse_routes(self, virtual_service: Mapping[str, Any]) -> Routes | None:
        """The weights of the last route that names the canary: the weighted one (sticky
        and A/B default routes come before it or do not name the canary)."""
        spec = _spec(virtual_service)
        rules = [*(spec.get("http") or []), *(spec.get("tcp") or [])]
        route = next((rule for rule in reversed(rules) if self.canary_host in _hosts(rule)), None)
        if route is None:
            return None
        destinations = route.get("route") or []
        default_weight = 100 if len(destinations) == 1 else 0
        weights = {
            item["destination"]["host"]: item.get("weight", default_weight) for item in destinations
        }
        if (route.get("mirror") or {}).get("host") == self.canary_host:
            percentage = (route.get("mirrorPercentage") or {}).get("value", 100)
            return Routes(
                primary_weight=weights.get(self.primary_host, 0),
                canary_weight=int(percentage),
                mirror=True,
            )
        return Routes(
            primary_weight=weights.get(self.primary_host, 0),
            canary_weight=weights.get(self.canary_host, 0),
        )

    def _ensure(
        self,
        kind: _Kind,
        name: str,
        spec: dict[str, Any],
        existing: Mapping[str, Any] | None,
        metadata: bool = False,
    ) -> None:
        """Create the object with `spec` when there is none, else bring the `owned` fields of
        the existing object's spec to `spec`; with `metadata`, also the service's apex labels
        and annotations (others of the object stay)."""
        labels = dict(self.settings.labels) if metadata else {}
        annotations = dict(self.settings.annotations) if metadata else {}
        if existing is None:
            body = kube_client.new_object(
                f"{GROUP}/{VERSION}",
                kind.resource.kind,
                self.namespace,
                name,
                spec,
                labels,
                annotations,
            )
            with kube_client.api_errors("create", kind.resource, self.namespace, name):
                self._objects.create_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, kind.plural, body
                )
            return
        if patch := kube_client.object_patch(existing, spec, kind.owned, labels, annotations):
            self._patch(kind, name, patch)

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


def _hosts(rule: Mapping[str, Any]) -> set[str]:
    return {item.get("destination", {}).get("host") for item in rule.get("route") or []}


def _merged_matches(
    selecting: tuple[dict[str, Any], ...], service: tuple[dict[str, Any], ...]
) -> list[dict[str, Any]]:
    """Each of `selecting` within each of the service's own matches (Flagger's merge: the
    selecting match's fields win, so its headers replace the service match's)."""
    if not service:
        return [copy.deepcopy(match) for match in selecting]
    return [copy.deepcopy({**within, **match}) for match in selecting for within in service]


def _with_response_header(
    headers: Mapping[str, Any] | None, name: str, value: str
) -> dict[str, Any]:
    """Istio header operations `headers` with `name: value` added to the response."""
    result = copy.deepcopy(dict(headers or {}))
    response = result.setdefault("response", {})
    response["add"] = {**(response.get("add") or {}), name: value}
    return result


def _set_cookie(headers: Mapping[str, Any] | None) -> str | None:
    added = ((headers or {}).get("response") or {}).get("add") or {}
    value = added.get(SET_COOKIE_HEADER)
    return value if isinstance(value, str) else None


def _cookie_named(set_cookie: str | None, name: str | None) -> str | None:
    """`name=value` of a `Set-Cookie` header value when it sets cookie `name`."""
    if set_cookie is None or name is None:
        return None
    cookie = set_cookie.split(";", 1)[0].strip()
    return cookie if cookie.startswith(f"{name}=") and len(cookie) > len(name) + 1 else None


def _new_cookie(name: str) -> str:
    value = "".join(secrets.choice(string.ascii_letters) for _ in range(COOKIE_VALUE_LENGTH))
    return f"{name}={value}"


_REGEX_SPECIAL = re.compile(r"[.*+?^$|()\[\]{}\\]")


def _regex_literal(text: str) -> str:
    """`text` as an RE2 literal; a cookie name such as `flagger-cookie` stays as it is."""
    return _REGEX_SPECIAL.sub(lambda found: "\\" + found.group(0), text)
