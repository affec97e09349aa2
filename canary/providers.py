"""What each provider can do (pure data): the one table the loader and the activities read.

A router entry says what traffic shaping it applies, which target kinds it routes and which
built-in checks it has a query for (its "observer", as Flagger calls it). A router that
routes one target kind another way than the others holds that way's own entry
(`by_target_kind`), and `router(provider, kind)` picks it. The loader refuses a
spec that asks for more than its router can do; the activities' registry builds one router
per entry. Adding a router: an entry here, a module in `activities/` and one line in
`activities.providers`.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from canary import targets
from canary.spec import LOCAL_KIND

DEPLOYMENT_KIND = "Deployment"
DEFAULT_PROVIDER = "istio"
"""The router of a Canary without `spec.provider`, unless `--mesh-provider` names another."""

TARGET_KINDS = tuple(targets.TRAITS)
"""The target kinds coalmine runs; their traits are in `canary.targets`."""


@dataclass(frozen=True)
class MetricsProviderTraits:
    """What the loader and the worker know of a metrics provider (a MetricTemplate's
    `spec.provider.type`) before asking it."""

    default_address: str | None = None
    """Asked when the template names no address; None: the template must name one."""
    uses_metrics_server: bool = False
    """Without an address, the Canary's `metricsServer`, else the worker's `--metrics-server`."""
    secret_keys: str = ""
    """The keys of its Secret (`secretRef`), as its error messages name them."""
    secret_required: bool = False
    string_quote: str | None = None
    """The quote of a string in its query language: a placeholder's value is escaped for it
    (`\\` and the quote). None: values are pasted as they are."""


METRICS_PROVIDERS: Mapping[str, MetricsProviderTraits] = {
    "prometheus": MetricsProviderTraits(
        uses_metrics_server=True,
        secret_keys="token, or username and password",
        string_quote='"',
    ),
    "datadog": MetricsProviderTraits(
        default_address="https://api.datadoghq.com",
        secret_keys="datadog_api_key and datadog_application_key",
        secret_required=True,
    ),
    "newrelic": MetricsProviderTraits(
        default_address="https://insights-api.newrelic.com",
        secret_keys="newrelic_account_id and newrelic_query_key",
        secret_required=True,
        string_quote="'",
    ),
    "graphite": MetricsProviderTraits(secret_keys="username and password"),
}
"""The metrics providers the worker can query; the activities' registry has one per entry."""
DEFAULT_METRICS_PROVIDER = "prometheus"
FLAGGER_ONLY_METRICS_PROVIDERS = (
    "cloudwatch",
    "stackdriver",
    "influxdb",
    "dynatrace",
    "keptn",
    "splunk",
    "externalmetrics",
)
"""Flagger's metrics providers that coalmine lacks."""


ROUTING_SERVICE_FIELDS = (
    "gateways",
    "hosts",
    "gatewayRefs",
    "trafficPolicy",
    "retries",
    "timeout",
    "match",
    "rewrite",
    "headers",
    "corsPolicy",
    "delegation",
    "apex",
)
"""`spec.service` fields that shape the router's objects; a router that does not apply one
gets a warning, as Flagger ignores what its router has no use for. The others (port, names,
`portDiscovery`, `primary`/`canary` metadata) are the target's Services'."""


@dataclass(frozen=True)
class RouterCapabilities:
    target_kinds: tuple[str, ...]
    weights: bool
    """Splits traffic by weight (canary strategy); without it only iterations (blue/green)."""
    match_fields: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """The fields of an `analysis.match` entry it applies (A/B testing; empty: none), each
    with the Istio StringMatch kinds it takes (`exact`, `regex`...; empty: not checked)."""
    cookie_match: bool = False
    """Matches a `cookie` header condition (Flagger's cookie-based A/B testing)."""
    mirroring: bool = False
    session_affinity: bool = False
    """Applies `analysis.sessionAffinity` (sticky canary sessions by cookie)."""
    service_fields: frozenset[str] = frozenset()
    """The routing fields of `spec.service` (of `ROUTING_SERVICE_FIELDS`) it applies."""
    builtin_metrics: Mapping[str, str] = field(default_factory=dict)
    """Built-in check -> PromQL template, with the placeholders of a custom query."""
    versions: tuple[str, ...] = ()
    """Versions a provider name may carry (`gatewayapi:v1`), "" for none; empty: the bare
    name only."""
    required_service_fields: tuple[str, ...] = ()
    """`spec.service` fields the router cannot work without."""
    by_target_kind: Mapping[str, "RouterCapabilities"] = field(default_factory=dict)
    """Target kind (of `target_kinds`) -> the entry of the way the router routes that kind,
    when it differs from kind to kind (traefik: a TraefikService for a Deployment, its file
    provider for a LocalProcess)."""

    @property
    def header_match(self) -> bool:
        return "headers" in self.match_fields


_ISTIO_WORKLOAD = (
    'reporter="destination", destination_workload_namespace="{{ namespace }}", '
    'destination_workload=~"{{ target }}"'
)
_ISTIO_METRICS = {
    "request-success-rate": (
        "sum(rate(istio_requests_total{"
        + _ISTIO_WORKLOAD
        + ', response_code!~"5.."}[{{ interval }}]))'
        + " / sum(rate(istio_requests_total{"
        + _ISTIO_WORKLOAD
        + "}[{{ interval }}])) * 100"
    ),
    "request-duration": (
        "histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{"
        + _ISTIO_WORKLOAD
        + "}[{{ interval }}])))"
    ),
}


def _traefik_metrics(canary_service: str) -> Mapping[str, str]:
    """Traefik's metrics of the canary's child service, whose label `canary_service` selects:
    the percent of non-5xx requests (0 when every request failed), and the p99 in ms."""
    requests = "traefik_service_requests_total{" + canary_service
    return {
        "request-success-rate": (
            "(sum(rate("
            + requests
            + ', code!~"5.."}[{{ interval }}])) or vector(0))'
            + " / sum(rate("
            + requests
            + "}[{{ interval }}])) * 100"
        ),
        "request-duration": (
            "histogram_quantile(0.99, sum by (le) ("
            + "rate(traefik_service_request_duration_seconds_bucket{"
            + canary_service
            + "}[{{ interval }}]))) * 1000"
        ),
    }


_TRAEFIK_FILE_METRICS = _traefik_metrics('service="{{ target }}-canary@file"')
"""Traefik labels a file-provider service's metrics `service="<name>@file"`; the canary's own
service is `<target>-canary` (see activities.traefik_router)."""
_TRAEFIK_CRD_METRICS = _traefik_metrics(
    'service=~"{{ namespace }}-{{ service }}-canary-[0-9a-zA-Z-]+@kubernetescrd"'
)
"""A TraefikService's child Kubernetes Service `<svc>-canary` is labelled
`<namespace>-<svc>-canary-<port>@kubernetescrd`, as Flagger's Traefik observer selects it
(by the Service's name: it is `<target>-canary` unless `service.name` is set)."""

ISTIO_MATCH_FIELDS: Mapping[str, frozenset[str]] = dict.fromkeys(
    (
        "name",
        "uri",
        "scheme",
        "method",
        "authority",
        "headers",
        "withoutHeaders",
        "port",
        "queryParams",
        "ignoreUriCase",
        "sourceLabels",
        "sourceNamespace",
        "gateways",
        "statPrefix",
    ),
    frozenset(),
)
"""Istio's HTTPMatchRequest fields: the router writes `analysis.match` into the VirtualService
as it is, and Istio checks it."""
NAMED_MATCH_FIELDS = ("headers", "queryParams", "withoutHeaders")
"""Match fields that map names to conditions; the others are one condition."""

_HTTP_SELECTOR = (
    'kubernetes_namespace="{{ namespace }}", '
    'kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"'
)
"""The canary's pods (`<target>-<replicaset hash>-<pod>`; the primary's have one more part)."""
_HTTP_METRICS = {
    "request-success-rate": (
        "sum(rate(http_request_duration_seconds_count{"
        + _HTTP_SELECTOR
        + ', status!~"5.*"}[{{ interval }}]))'
        + " / sum(rate(http_request_duration_seconds_count{"
        + _HTTP_SELECTOR
        + "}[{{ interval }}])) * 100"
    ),
    "request-duration": (
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{"
        + _HTTP_SELECTOR
        + "}[{{ interval }}]))) * 1000"
    ),
}
"""What the workload itself reports (Flagger's observer for Gateway API): the percent of
non-5xx requests, and the p99 of its request durations in milliseconds."""

ROUTERS: Mapping[str, RouterCapabilities] = {
    "istio": RouterCapabilities(
        target_kinds=(DEPLOYMENT_KIND,),
        weights=True,
        match_fields=ISTIO_MATCH_FIELDS,
        cookie_match=True,
        mirroring=True,
        session_affinity=True,
        builtin_metrics=_ISTIO_METRICS,
        service_fields=frozenset(ROUTING_SERVICE_FIELDS) - {"gatewayRefs"},
    ),
    "traefik": RouterCapabilities(
        target_kinds=(DEPLOYMENT_KIND, LOCAL_KIND),
        weights=True,
        by_target_kind={
            DEPLOYMENT_KIND: RouterCapabilities(
                target_kinds=(DEPLOYMENT_KIND,),
                weights=True,
                builtin_metrics=_TRAEFIK_CRD_METRICS,
                service_fields=frozenset({"apex"}),
            ),
            LOCAL_KIND: RouterCapabilities(
                target_kinds=(LOCAL_KIND,),
                weights=True,
                match_fields={
                    "headers": frozenset({"exact", "prefix", "suffix", "regex"}),
                    "queryParams": frozenset({"exact", "prefix", "suffix", "regex"}),
                    "uri": frozenset({"exact", "prefix", "regex"}),
                    "method": frozenset({"exact"}),
                },
                cookie_match=True,
                mirroring=True,
                builtin_metrics=_TRAEFIK_FILE_METRICS,
            ),
        },
    ),
    "kubernetes": RouterCapabilities(target_kinds=(DEPLOYMENT_KIND,), weights=False),
    "gatewayapi": RouterCapabilities(
        target_kinds=(DEPLOYMENT_KIND,),
        weights=True,
        match_fields={
            "headers": frozenset({"exact", "regex"}),
            "queryParams": frozenset({"exact", "regex"}),
            "uri": frozenset({"exact", "prefix", "regex"}),
            "method": frozenset({"exact"}),
        },
        cookie_match=True,
        mirroring=True,
        session_affinity=True,
        builtin_metrics=_HTTP_METRICS,
        versions=("v1", "v1beta1"),
        required_service_fields=("gatewayRefs",),
        service_fields=frozenset(
            {"gatewayRefs", "hosts", "timeout", "headers", "match", "rewrite", "apex"}
        ),
    ),
}
"""Routers coalmine implements; `kubernetes` means no traffic router (blue/green only), so
it has nothing to measure either. `traefik` writes a TraefikService (Traefik's Kubernetes CRD
provider, as Flagger's traefik provider does) for a Deployment, and the file-provider config of
the embedded platform for a LocalProcess: Flagger's provider splits weights only, no A/B
testing, mirroring or session affinity."""

FLAGGER_ONLY_PROVIDERS = (
    "linkerd",
    "appmesh",
    "contour",
    "gloo",
    "nginx",
    "skipper",
    "osm",
    "kuma",
    "apisix",
    "knative",
    "smi",
    "supergloo",
)
"""Flagger's providers that coalmine lacks; a version suffix (`gatewayapi:v1`) is allowed."""


def router(provider: str, target_kind: str | None = None) -> RouterCapabilities | None:
    """The entry of `provider` as a spec names it (`name` or `name:version`), else None; with
    `target_kind`, the entry of the way it routes that kind."""
    name, colon, version = provider.partition(":")
    entry = ROUTERS.get(name)
    if entry is None or (colon and version not in entry.versions):
        return None
    if not colon and entry.versions and "" not in entry.versions:
        return None
    if target_kind is None:
        return entry
    return entry.by_target_kind.get(target_kind, entry)


def router_names() -> list[str]:
    """Every provider name a spec may use, versions spelt out."""
    return [
        f"{name}:{version}" if version else name
        for name, entry in ROUTERS.items()
        for version in (entry.versions or ("",))
    ]
