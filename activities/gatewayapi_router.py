"""Gateway API router: HTTPRoute `<svc>` splits traffic between Services `<svc>-primary` and
`<svc>-canary` by the weights of its backendRefs, as Flagger writes it.

The route hangs off the Gateways of `service.gatewayRefs` (its parentRefs) for the hostnames of
`service.hosts`, with the labels and annotations of `service.apex`. Every rule matches
`service.match` (every path when empty), carries the filters of `service.headers`
(RequestHeaderModifier, ResponseHeaderModifier) and `service.rewrite` (URLRewrite), and the
request timeout of `service.timeout`. The last rule with both backends is the weighted one:

- A/B testing (`analysis.match`): the weighted rule matches the requests of `analysis.match`
  and a rule after it sends every other request to the primary.
- Mirroring (routes with `mirror`): the weighted rule keeps every request on the primary and a
  RequestMirror filter copies them to the canary, `percent` of them when fewer than all (Gateway
  API 1.2 and later; an older one drops the field and mirrors every request).
- Session affinity (`analysis.sessionAffinity`): while the canary has a share, its backend adds
  `Set-Cookie: <cookieName>=<token>; Max-Age=<maxAge>` to its answers and a first rule sends the
  requests with that cookie to the canary (with `primaryCookieName`, the primary's answers get a
  cookie for one interval that keeps those users on the primary). The token is new for each
  rollout; the HTTPRoute itself remembers it. With no canary share the cookie rules are gone
  and one rule expires the last token (`Max-Age=-1`), sending its holders to the primary.

Weights are absolute: setting the same routes twice changes nothing.
"""

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import kubernetes

from activities import errors, kube_client
from canary.decision import ALL_TO_PRIMARY, Routes
from canary.spec import REWRITE_TYPES

GROUP = "gateway.networking.k8s.io"
VERSIONS = ("v1", "v1beta1")
PLURAL = "httproutes"
HTTP_ROUTE = kube_client.Resource("HTTPRoute", f"{PLURAL}.{GROUP}")
OWNED = ("parentRefs", "hostnames", "rules")
"""The spec fields coalmine manages; any others are left as they are."""
DEFAULT_MATCH: Mapping[str, Any] = {"path": {"type": "PathPrefix", "value": "/"}}
"""Every request: the match of a rule without `service.match`, as Flagger writes it."""
COOKIE_HEADER = "Cookie"
SET_COOKIE_HEADER = "Set-Cookie"
EXPIRED = "Max-Age=-1"
DURATION = re.compile(r"([0-9]{1,5}(h|m|s|ms)){1,4}")
"""A Gateway API Duration (GEP-2257), such as `30s` or `1m30s`."""

_STRING_MATCH = {"exact": "Exact", "regex": "RegularExpression"}
_PATH_MATCH = {"exact": "Exact", "prefix": "PathPrefix", "regex": "RegularExpression"}
_REGEX_SPECIALS = re.compile(r"([\\.^$|?*+()\[\]{}])")


@dataclass(frozen=True)
class StickySessions:
    """`analysis.sessionAffinity`, with the interval a primary cookie lasts."""

    cookie_name: str
    max_age: int
    primary_cookie_name: str | None = None
    primary_max_age: int = 60


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
    service_match: tuple[Mapping[str, Any], ...] = ()
    """`service.match`: the requests every rule applies to (all when empty)."""
    timeout: str | None = None
    headers: Mapping[str, Any] | None = None
    """Istio Headers: `request`/`response`, each with set, add and remove."""
    rewrite: Mapping[str, Any] | None = None
    """Flagger's HTTPRewrite: `uri`, `authority`, `type` (ReplaceFullPath or ReplacePrefixMatch)."""
    sessions: StickySessions | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


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
        if settings.timeout is not None and not DURATION.fullmatch(settings.timeout):
            raise errors.PermanentError(
                f"spec.service.timeout: {settings.timeout!r} is not a Gateway API duration "
                "(such as 500ms, 30s or 1m30s)"
            )
        if settings.sessions is not None and settings.match:
            raise errors.PermanentError(
                "spec.analysis.sessionAffinity: not with match (A/B testing)"
            )
        self._objects = kubernetes.client.CustomObjectsApi(api)
        self.namespace = namespace
        self.settings = settings
        self.primary_service = f"{settings.service}-primary"
        self.canary_service = f"{settings.service}-canary"
        # Fail at once (permanently) on what HTTPRoute cannot express.
        self._matches = [
            _with_path(match)
            for match in route_matches(settings.service_match, "spec.service.match")
        ] or [dict(DEFAULT_MATCH)]
        analysis = route_matches(settings.match, "spec.analysis.match")
        self._weighted_matches = _merged(analysis, self._matches) if analysis else self._matches
        self._filters = _header_filters(settings.headers) + _rewrite_filters(settings.rewrite)

    def reconcile(self) -> None:
        """Ensure the HTTPRoute, keeping its current weights (100/0 for a new one)."""
        existing = self._read_optional()
        routes = (existing and self._parse_routes(existing)) or ALL_TO_PRIMARY
        spec = self._spec(routes, existing)
        labels, annotations = self.settings.labels, self.settings.annotations
        if existing is None:
            body = kube_client.new_object(
                f"{GROUP}/{self.settings.version}",
                HTTP_ROUTE.kind,
                self.namespace,
                self.name,
                spec,
                labels,
                annotations,
            )
            with kube_client.api_errors("create", HTTP_ROUTE, self.namespace, self.name):
                self._objects.create_namespaced_custom_object(
                    GROUP, self.settings.version, self.namespace, PLURAL, body
                )
            return
        if patch := kube_client.object_patch(existing, spec, OWNED, labels, annotations):
            self._patch(patch)

    def set_routes(self, routes: Routes) -> None:
        """Route by absolute weights; the HTTPRoute is written only when they change."""
        existing = self._read()
        rules = self._rules(routes, existing)
        if _spec(existing).get("rules") != rules:
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

    def _spec(self, routes: Routes, existing: Mapping[str, Any] | None) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "parentRefs": [dict(ref) for ref in self.settings.parent_refs],
            "rules": self._rules(routes, existing),
        }
        if self.settings.hostnames:
            spec["hostnames"] = list(self.settings.hostnames)
        return spec

    def _rules(self, routes: Routes, existing: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        """The rules for `routes`; `existing` (the stored route) holds the session cookies."""
        canary_weight = 0 if routes.mirror else routes.canary_weight
        mirror = self._mirror_filter(routes.canary_weight) if routes.mirror else None
        if self.settings.match:
            return [
                self._rule(
                    self._weighted_matches,
                    [
                        self._backend(self.primary_service, routes.primary_weight),
                        self._backend(self.canary_service, canary_weight),
                    ],
                    mirror=mirror,
                ),
                self._rule(self._matches, [self._backend(self.primary_service, 100)]),
            ]
        sticky, cookies = self._sticky_rules(routes.primary_weight, canary_weight, existing)
        weighted = [
            self._backend(self.primary_service, routes.primary_weight, cookies.get("primary")),
            self._backend(self.canary_service, canary_weight, cookies.get("canary")),
        ]
        return [*sticky, self._rule(self._matches, weighted, mirror=mirror)]

    def _sticky_rules(
        self, primary_weight: int, canary_weight: int, existing: Mapping[str, Any] | None
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """The session affinity rules before the weighted one, and the Set-Cookie values of
        the weighted rule's `primary` and `canary` backends."""
        sessions = self.settings.sessions
        if sessions is None:
            return [], {}
        issued = _IssuedCookies.of(existing, self.primary_service, self.canary_service, sessions)
        if canary_weight == 0:
            previous = issued.canary or issued.expired
            if previous is None:
                return [], {}
            expire = self._rule(
                _cookie_matches(previous, self._matches),
                [
                    self._backend(self.primary_service, primary_weight),
                    self._backend(self.canary_service, canary_weight),
                ],
                set_cookie=f"{previous}; {EXPIRED}",
            )
            return [expire], {}
        canary_cookie = issued.canary or f"{sessions.cookie_name}={_token()}"
        rules = [
            self._rule(
                _cookie_matches(canary_cookie, self._matches),
                [self._backend(self.primary_service, 0), self._backend(self.canary_service, 100)],
            )
        ]
        cookies = {"canary": f"{canary_cookie}; Max-Age={sessions.max_age}"}
        if sessions.primary_cookie_name:
            primary_cookie = issued.primary or f"{sessions.primary_cookie_name}={_token()}"
            rules.append(
                self._rule(
                    _cookie_matches(primary_cookie, self._matches),
                    [
                        self._backend(self.primary_service, 100),
                        self._backend(self.canary_service, 0),
                    ],
                )
            )
            cookies["primary"] = f"{primary_cookie}; Max-Age={sessions.primary_max_age}"
        return rules, cookies

    def _rule(
        self,
        matches: Sequence[Mapping[str, Any]],
        backends: list[dict[str, Any]],
        mirror: Mapping[str, Any] | None = None,
        set_cookie: str | None = None,
    ) -> dict[str, Any]:
        """A rule with the service's filters and timeout; `set_cookie` joins the response
        header filter (a rule may hold one filter of each type but RequestMirror)."""
        rule: dict[str, Any] = {"matches": [dict(match) for match in matches]}
        filters = [_copy(item) for item in self._filters]
        if set_cookie is not None:
            header = {"name": SET_COOKIE_HEADER, "value": set_cookie}
            modifier = next(
                (item for item in filters if item["type"] == "ResponseHeaderModifier"), None
            )
            if modifier is None:
                filters.append(_set_cookie_filter(set_cookie))
            else:
                changes = modifier["responseHeaderModifier"]
                changes["add"] = [*changes.get("add", []), header]
        if mirror is not None:
            filters.append(dict(mirror))
        if filters:
            rule["filters"] = filters
        rule["backendRefs"] = backends
        if self.settings.timeout is not None:
            rule["timeouts"] = {"request": self.settings.timeout}
        return rule

    def _backend(self, service: str, weight: int, set_cookie: str | None = None) -> dict[str, Any]:
        backend = {**self._reference(service), "weight": weight}
        if set_cookie is not None:
            backend["filters"] = [_set_cookie_filter(set_cookie)]
        return backend

    def _reference(self, service: str) -> dict[str, Any]:
        return {"group": "", "kind": "Service", "name": service, "port": self.settings.port}

    def _mirror_filter(self, percent: int) -> dict[str, Any]:
        mirror: dict[str, Any] = {"backendRef": self._reference(self.canary_service)}
        if percent < 100:
            mirror["percent"] = percent
        return {"type": "RequestMirror", "requestMirror": mirror}

    def _parse_routes(self, route: Mapping[str, Any]) -> Routes | None:
        """The weights of the weighted rule: the last rule with both backends (A/B testing
        adds a primary-only rule after it, session affinity cookie rules before it)."""
        weighted = None
        for rule in _spec(route).get("rules") or []:
            names = {backend.get("name") for backend in rule.get("backendRefs") or []}
            if {self.primary_service, self.canary_service} <= names:
                weighted = rule
        if weighted is None:
            return None
        weights = {
            backend.get("name"): int(backend.get("weight", 1))
            for backend in weighted.get("backendRefs") or []
        }
        for item in weighted.get("filters") or []:
            mirror = item.get("requestMirror") or {}
            if (mirror.get("backendRef") or {}).get("name") == self.canary_service:
                return Routes(
                    primary_weight=weights[self.primary_service],
                    canary_weight=int(mirror.get("percent", 100)),
                    mirror=True,
                )
        return Routes(
            primary_weight=weights[self.primary_service],
            canary_weight=weights[self.canary_service],
        )

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


@dataclass(frozen=True)
class _IssuedCookies:
    """The session cookies (`name=token`) an HTTPRoute hands out, as the router wrote them."""

    canary: str | None = None
    primary: str | None = None
    expired: str | None = None
    """The last canary cookie, being expired now that the canary has no share."""

    @classmethod
    def of(
        cls,
        route: Mapping[str, Any] | None,
        primary_service: str,
        canary_service: str,
        sessions: StickySessions,
    ) -> "_IssuedCookies":
        found: dict[str, str] = {}
        for rule in _spec(route).get("rules") or []:
            for cookie in _set_cookies(rule.get("filters")):
                if cookie.endswith(EXPIRED) and _named(cookie, sessions.cookie_name):
                    found["expired"] = _name_and_token(cookie)
            for backend in rule.get("backendRefs") or []:
                for cookie in _set_cookies(backend.get("filters")):
                    name = backend.get("name")
                    if name == canary_service and _named(cookie, sessions.cookie_name):
                        found["canary"] = _name_and_token(cookie)
                    elif name == primary_service and _named(cookie, sessions.primary_cookie_name):
                        found["primary"] = _name_and_token(cookie)
        return cls(**found)


def _set_cookies(filters: Any) -> list[str]:
    """The Set-Cookie values the response header filters among `filters` add."""
    values = []
    for item in filters or []:
        for header in (item.get("responseHeaderModifier") or {}).get("add") or []:
            if str(header.get("name", "")).lower() == SET_COOKIE_HEADER.lower():
                values.append(str(header.get("value", "")))
    return values


def _named(cookie: str, name: str | None) -> bool:
    return name is not None and cookie.startswith(f"{name}=")


def _name_and_token(cookie: str) -> str:
    return cookie.split(";", 1)[0].strip()


def _token() -> str:
    """A new session token: a rollout's canary cookie is its own."""
    return secrets.token_hex(8)


def _set_cookie_filter(value: str) -> dict[str, Any]:
    return {
        "type": "ResponseHeaderModifier",
        "responseHeaderModifier": {"add": [{"name": SET_COOKIE_HEADER, "value": value}]},
    }


def _cookie_matches(cookie: str, matches: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """`matches`, each also requiring the cookie `name=token` in the Cookie header."""
    name, _, token = cookie.partition("=")
    header = {
        "type": "RegularExpression",
        "name": COOKIE_HEADER,
        "value": cookie_pattern(name, token),
    }
    return _merged([{"headers": [header]}], matches)


def cookie_pattern(name: str, token: str) -> str:
    """A regex for a Cookie header holding `name=token` (the name matched literally)."""
    literal = _REGEX_SPECIALS.sub(r"\\\1", name)
    return f".*{literal}={token}.*"


def route_matches(matches: Sequence[Mapping[str, Any]], path: str) -> list[dict[str, Any]]:
    """HTTPRouteMatches for Istio-style HTTPMatchRequests: the list is OR, fields in one AND.

    Headers and query parameters match exactly or by regex, the path (`uri`) also by prefix,
    the method exactly; a match without `uri` has no path (see `_with_path`)."""
    converted = []
    for index, match in enumerate(matches):
        where = f"{path}[{index}]"
        route_match: dict[str, Any] = {}
        for name, conditions in match.items():
            if name in ("headers", "queryParams"):
                if not isinstance(conditions, Mapping):
                    raise errors.PermanentError(f"{where}.{name}: must map names to conditions")
                route_match[name] = [
                    _named_match(key, condition, f"{where}.{name}.{key}")
                    for key, condition in conditions.items()
                ]
            elif name == "uri":
                kind, value = _condition(conditions, f"{where}.uri", _PATH_MATCH)
                route_match["path"] = {"type": kind, "value": value}
            elif name == "method":
                _, value = _condition(conditions, f"{where}.method", {"exact": "Exact"})
                route_match["method"] = value
            else:
                raise errors.PermanentError(
                    f"{where}.{name}: provider gatewayapi matches headers, queryParams, uri and "
                    "method only"
                )
        converted.append(route_match)
    return converted


def _with_path(match: Mapping[str, Any]) -> dict[str, Any]:
    """`match` with every path when it names none, as the API server would default it."""
    return {"path": dict(DEFAULT_MATCH["path"]), **match}


def _merged(
    extra: Sequence[Mapping[str, Any]], matches: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Each of `matches` AND each of `extra` (the list is OR): the headers and query
    parameters of both, and the path and method of `extra` where it has them."""
    merged = []
    for added in extra:
        for match in matches:
            combined = {**match, **added}
            for name in ("headers", "queryParams"):
                if name in match and name in added:
                    combined[name] = [*match[name], *added[name]]
            merged.append(_with_path(combined))
    return merged


def _header_filters(headers: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """RequestHeaderModifier and ResponseHeaderModifier filters for Istio Headers, the added
    and set headers sorted by name, as Flagger writes them."""
    filters = []
    for direction, kind, field_name in (
        ("request", "RequestHeaderModifier", "requestHeaderModifier"),
        ("response", "ResponseHeaderModifier", "responseHeaderModifier"),
    ):
        operations = (headers or {}).get(direction)
        if operations is None:
            continue
        changes: dict[str, Any] = {}
        for operation in ("add", "set"):
            named = operations.get(operation) or {}
            if named:
                changes[operation] = [
                    {"name": name, "value": value} for name, value in sorted(named.items())
                ]
        if operations.get("remove"):
            changes["remove"] = list(operations["remove"])
        filters.append({"type": kind, field_name: changes})
    return filters


def _rewrite_filters(rewrite: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """A URLRewrite filter for Flagger's HTTPRewrite: the host (`authority`) and the whole
    path, or its matched prefix with `type: ReplacePrefixMatch`."""
    if rewrite is None:
        return []
    kind = rewrite.get("type") or REWRITE_TYPES[0]
    if kind not in REWRITE_TYPES:
        raise errors.PermanentError(
            f"spec.service.rewrite.type: must be one of {', '.join(REWRITE_TYPES)}"
        )
    changes: dict[str, Any] = {}
    if rewrite.get("authority"):
        changes["hostname"] = rewrite["authority"]
    if rewrite.get("uri"):
        field_name = "replaceFullPath" if kind == "ReplaceFullPath" else "replacePrefixMatch"
        changes["path"] = {"type": kind, field_name: rewrite["uri"]}
    return [{"type": "URLRewrite", "urlRewrite": changes}]


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


def _copy(value: Any) -> Any:
    """A copy of JSON-like data, so that rules never share a nested list or mapping."""
    if isinstance(value, Mapping):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def _spec(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (obj or {}).get("spec") or {}
