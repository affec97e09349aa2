"""The rollout spec: Flagger's `Canary` (flagger.app/v1beta1) as pydantic models.

Field names follow Flagger's YAML (camelCase aliases); durations are held in seconds.
Unknown fields are kept so the loader can warn about them instead of failing.
"""

import re
import types
from enum import StrEnum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    AliasGenerator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FiniteFloat,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from canary import durations

LOCAL_KIND = "LocalProcess"

BUILTIN_METRICS = ("request-success-rate", "request-duration")
"""Checks that need no query: each router's query for them is in `canary.providers`."""

QUERY_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
"""A placeholder in a custom query, `{{ namespace }}`; its name is the stripped group 1."""
QUERY_PLACEHOLDERS = ("name", "namespace", "target", "service", "ingress", "route", "interval")
"""Placeholders every custom query may use, besides `variables.NAME` (templateVariables)."""


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return durations.parse_duration(value)
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 30s, 1m or 1m30s")
    if isinstance(value, int | float):
        raise ValueError(f"must be a duration with a unit, such as {value}s or {value}m")
    return value


Seconds = Annotated[
    float,
    BeforeValidator(_duration),
    PlainSerializer(durations.format_duration, return_type=str),
    Field(ge=0),
]
"""A duration held in seconds, written back as `1m30s` so the spec round-trips."""

MAX_INTERVAL_SECONDS = 24 * 3600.0
"""Longest `analysis.interval` and metric `interval`."""
MAX_WEBHOOK_TIMEOUT_SECONDS = 3600.0
MAX_PROGRESS_DEADLINE_SECONDS = 7 * 24 * 3600
"""Longest `progressDeadlineSeconds`. With the bounds above, every duration the workflow
derives from a spec (timers, deadlines, activity timeouts) stays far inside a timedelta."""


def _at_most(limit: float) -> AfterValidator:
    def check(value: float) -> float:
        if value > limit:
            raise ValueError(f"must be at most {durations.format_duration(limit)}")
        return value

    return AfterValidator(check)


Interval = Annotated[Seconds, _at_most(MAX_INTERVAL_SECONDS)]
WebhookTimeout = Annotated[Seconds, _at_most(MAX_WEBHOOK_TIMEOUT_SECONDS)]


def _is_number(annotation: Any) -> bool:
    """`int`, `float` or a constrained or optional one."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation in (int, float):
        return True
    if origin is Annotated:
        return _is_number(args[0])
    if origin in (Union, types.UnionType):
        kinds = [arg for arg in args if arg is not type(None)]
        return all(_is_number(arg) for arg in kinds)
    return False


class SpecModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
        populate_by_name=True,
        extra="allow",
        frozen=True,
    )

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_not_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        """YAML's true/false would otherwise read as 1/0 (`threshold: true`)."""
        if info.field_name is None:
            return value
        field = cls.model_fields[info.field_name]
        if any(isinstance(item, BeforeValidator) for item in field.metadata):
            return value  # a duration, with its own message
        annotation = field.annotation
        items = get_args(annotation) if get_origin(annotation) is list else ()
        if isinstance(value, bool) and _is_number(annotation):
            raise ValueError("must be a number, not true or false")
        listed = isinstance(value, list) and items and _is_number(items[0])
        if listed and any(isinstance(item, bool) for item in value):
            raise ValueError("must be numbers, not true or false")
        return value

    @model_validator(mode="before")
    @classmethod
    def _null_collections_are_empty(cls, data: Any) -> Any:
        """A list or mapping written with no value (`webhooks:`, as Flagger's Helm chart
        renders an empty one) reads as empty, as Flagger reads it."""
        if not isinstance(data, dict):
            return data
        nulls: dict[str, list[Any] | dict[str, Any]] = {
            key: [] if info.default_factory is list else {}
            for name, info in cls.model_fields.items()
            if info.default_factory in (list, dict)
            for key in (to_camel(name), name)
            if key in data and data[key] is None
        }
        return {**data, **nulls} if nulls else data


class ObjectRef(SpecModel):
    api_version: str | None = None
    kind: str
    name: str = Field(min_length=1)


class RouteRef(SpecModel):
    """Flagger's `ingressRef` / `routeRef`: coalmine routes through no Ingress or HTTPRoute of
    yours (provider gatewayapi writes its own), but custom queries can name them as
    `{{ ingress }}` and `{{ route }}`."""

    api_version: str | None = None
    kind: str | None = None
    name: str = Field(min_length=1)


class TemplateRef(SpecModel):
    name: str = Field(min_length=1)
    namespace: str | None = None


class ThresholdRange(SpecModel):
    min: FiniteFloat | None = None
    max: FiniteFloat | None = None


class Metric(SpecModel):
    name: str = Field(min_length=1)
    interval: Interval = 60.0
    threshold_range: ThresholdRange | None = None
    query: str | None = None
    template_ref: TemplateRef | None = None
    template_variables: dict[str, str] = Field(default_factory=dict)
    metrics_server: str | None = None
    """The metrics provider's address from the metric's MetricTemplate, when it names one."""
    metrics_provider: str = "prometheus"
    """The metrics provider to ask: the MetricTemplate's `spec.provider.type`."""
    metrics_secret_ref: str | None = None
    """The MetricTemplate's `spec.provider.secretRef.name`: the Secret, in the template's
    namespace, holding the provider's credentials. Only its name travels in a rollout's input;
    the worker reads its data at each query."""
    metrics_headers: dict[str, list[str]] = Field(default_factory=dict)
    """The MetricTemplate's `spec.provider.headers`, sent with every query."""
    metrics_insecure_skip_verify: bool = False
    """The MetricTemplate's `spec.provider.insecureSkipVerify`: skip checking its certificate."""

    @property
    def builtin(self) -> bool:
        return self.query is None and self.template_ref is None and self.name in BUILTIN_METRICS

    @property
    def from_cluster(self) -> bool:
        """A MetricTemplate the spec file did not hold: the worker reads it at each query."""
        return self.query is None and self.template_ref is not None


class WebhookType(StrEnum):
    CONFIRM_ROLLOUT = "confirm-rollout"
    PRE_ROLLOUT = "pre-rollout"
    ROLLOUT = "rollout"
    CONFIRM_TRAFFIC_INCREASE = "confirm-traffic-increase"
    CONFIRM_PROMOTION = "confirm-promotion"
    POST_ROLLOUT = "post-rollout"
    ROLLBACK = "rollback"
    EVENT = "event"


class Webhook(SpecModel):
    name: str = Field(min_length=1)
    type: WebhookType = WebhookType.ROLLOUT
    url: str
    timeout: WebhookTimeout = 10.0
    metadata: dict[str, str] = Field(default_factory=dict)
    mute_alert: bool = False
    """A failure of this hook halts without an alert."""
    retries: int = Field(default=0, ge=0, le=10)
    """Further attempts after a failed call, within the same check."""
    disable_tls: bool = Field(
        default=False, validation_alias="disableTLS", serialization_alias="disableTLS"
    )
    """Skip verifying the hook's TLS certificate."""

    @property
    def longest_seconds(self) -> float:
        """How long the hook may take, every attempt included."""
        return (self.timeout + 1.0) * (1 + self.retries)


class Severity(StrEnum):
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


class ProviderRef(SpecModel):
    name: str = Field(min_length=1)
    namespace: str | None = None


class Alert(SpecModel):
    """Flagger's `analysis.alerts`: send events of at least `severity` to a named provider.

    The provider (type and URL) is configured on the worker, never in the spec, so no secret
    travels in the rollout's history."""

    name: str = Field(min_length=1)
    severity: Severity = Severity.INFO
    provider_ref: ProviderRef


class ObjectLabels(SpecModel):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class SessionAffinity(SpecModel):
    """Sticky canary sessions: a request routed to the canary gets `cookie_name` for
    `max_age` seconds and keeps going to the canary while it has it; with
    `primary_cookie_name`, one routed to the primary stays there for the analysis step.
    The other fields are attributes of the `Set-Cookie` header."""

    cookie_name: str = Field(min_length=1)
    max_age: int = Field(default=86400, gt=0)
    primary_cookie_name: str | None = None
    domain: str | None = None
    http_only: bool = False
    partitioned: bool = False
    path: str | None = None
    same_site: Literal["Strict", "Lax", "None"] | None = None
    secure: bool = False


class Strategy(StrEnum):
    CANARY = "canary"
    AB_TESTING = "ab-testing"
    BLUE_GREEN = "blue-green"
    BLUE_GREEN_MIRROR = "blue-green-mirror"


class Analysis(SpecModel):
    interval: Interval = 60.0
    threshold: int = 1
    """Failed checks that roll back; Flagger's default is 1 (the loader also reads 0 as 1)."""
    max_weight: int | None = None
    step_weight: int | None = None
    step_weights: list[int] = Field(default_factory=list)
    iterations: int | None = None
    match: list[dict[str, Any]] = Field(default_factory=list)
    mirror: bool = False
    mirror_weight: int | None = None
    step_weight_promotion: int | None = None
    """Flagger's `stepWeightPromotion`: once the primary runs the new version and is ready,
    traffic moves back to it this many percent per interval, each step analysed (canary
    strategy only). None moves it all at once."""
    session_affinity: SessionAffinity | None = None
    metrics: list[Metric] = Field(default_factory=list)
    webhooks: list[Webhook] = Field(default_factory=list)
    alerts: list[Alert] = Field(default_factory=list)
    metrics_server: str | None = None
    """coalmine extension: Prometheus address for this rollout (else the worker's default)."""
    canary_ready_threshold: int = Field(default=100, ge=1, le=100)
    """Percent of the canary's replicas that must be ready (Flagger's canaryReadyThreshold)."""
    primary_ready_threshold: int = Field(default=100, ge=1, le=100)
    """Percent of the primary's replicas that must be ready (primaryReadyThreshold)."""

    @property
    def strategy(self) -> Strategy:
        if self.iterations is None:
            return Strategy.CANARY
        if self.match:
            return Strategy.AB_TESTING
        return Strategy.BLUE_GREEN_MIRROR if self.mirror else Strategy.BLUE_GREEN

    @property
    def weights(self) -> list[int]:
        """The canary weights of a canary strategy, in order, ending at the maximum."""
        if self.step_weights:
            return list(self.step_weights)
        step = self.step_weight or 0
        top = self.max_weight if self.max_weight is not None else 100
        if step <= 0:
            return []
        steps = list(range(step, top + 1, step))
        if not steps or steps[-1] != top:
            steps.append(top)
        return steps

    def webhooks_of(self, kind: WebhookType) -> list[Webhook]:
        return [hook for hook in self.webhooks if hook.type == kind]


class GatewayRef(SpecModel):
    """A Gateway API ParentReference: the Gateway (or listener) the HTTPRoute attaches to."""

    name: str = Field(min_length=1)
    namespace: str | None = None
    group: str | None = None
    kind: str | None = None
    section_name: str | None = None
    port: int | None = Field(default=None, gt=0, le=65535)


HEADER_OPERATIONS = ("set", "add", "remove")
"""What `service.headers` (Istio's Headers) does to the request's or the response's headers."""
REWRITE_TYPES = ("ReplaceFullPath", "ReplacePrefixMatch")
"""Flagger's `service.rewrite.type`: what of the path its `uri` replaces (default the first)."""


class Service(SpecModel):
    name: str | None = None
    port: int = Field(gt=0, le=65535)
    target_port: int | str | None = None
    port_name: str = "http"
    gateways: list[str] = Field(default_factory=list)
    hosts: list[str] = Field(default_factory=list)
    gateway_refs: list[GatewayRef] = Field(default_factory=list)
    """Provider gatewayapi: the HTTPRoute's parentRefs."""
    traffic_policy: dict[str, Any] | None = None
    retries: dict[str, Any] | None = None
    timeout: str | None = None
    """The request timeout of the routes (an Istio/Gateway API duration such as `30s`)."""
    match: list[dict[str, Any]] = Field(default_factory=list)
    """Istio HTTPMatchRequests the routes apply to (all requests when empty)."""
    rewrite: dict[str, Any] | None = None
    headers: dict[str, Any] | None = None
    """Request/response header operations: `request`/`response` each with set, add, remove."""
    cors_policy: dict[str, Any] | None = None
    delegation: bool = False
    """Istio: the VirtualService is a delegate, attached from another VirtualService."""
    port_discovery: bool = False
    """Expose every container port of the target on the generated Services."""
    app_protocol: str | None = None
    apex: ObjectLabels | None = None
    """Labels and annotations of the apex object (the VirtualService, HTTPRoute...)."""
    primary: ObjectLabels | None = None
    canary: ObjectLabels | None = None


class LocalProcess(SpecModel):
    """coalmine extension: a target made of processes on this machine (kind LocalProcess).

    `command` is split like a shell line (no shell runs) after `{{ image }}` and `{{ port }}`
    are filled in; the image is the version to run (`image` here for the first primary, then
    `--image`) and may carry arguments of its own, e.g. `v3 --error-rate 0.3`.
    """

    command: str = Field(min_length=1)
    image: str = Field(min_length=1)
    primary_port: int = Field(gt=0, le=65535)
    canary_port: int = Field(gt=0, le=65535)
    health_path: str = "/healthz"
    env: dict[str, str] = Field(default_factory=dict)
    state_dir: str = ".coalmine"


class Traefik(SpecModel):
    """coalmine extension: the Traefik file-provider config that provider `traefik` writes."""

    config_file: str = Field(min_length=1)
    entry_point: str = "web"
    rule: str = "PathPrefix(`/`)"
    api_url: str | None = None
    """Traefik's API (e.g. `http://127.0.0.1:8080`, with `api.insecure`): each new split is
    confirmed there before the call returns, instead of trusting the file to be applied."""


class CanarySpec(SpecModel):
    provider: str | None = None
    """The router; the loader fills in its default (`--mesh-provider`), so only an input
    written by another Temporal client lacks it, and then the worker's default applies."""
    target_ref: ObjectRef
    autoscaler_ref: ObjectRef | None = None
    ingress_ref: RouteRef | None = None
    route_ref: RouteRef | None = None
    metrics_server: str | None = None
    """Prometheus address for this rollout, as in Flagger; `analysis.metricsServer` wins."""
    progress_deadline_seconds: int = Field(default=600, gt=0, le=MAX_PROGRESS_DEADLINE_SECONDS)
    service: Service
    skip_analysis: bool = False
    analysis: Analysis
    local: LocalProcess | None = None
    traefik: Traefik | None = None


class ObjectMeta(SpecModel):
    name: str = Field(min_length=1)
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Canary(SpecModel):
    api_version: str
    kind: str
    metadata: ObjectMeta
    spec: CanarySpec

    @property
    def target(self) -> str:
        """`name.namespace`, the way events name the rollout."""
        return f"{self.metadata.name}.{self.metadata.namespace}"

    @property
    def workflow_id(self) -> str:
        return workflow_id(self.metadata.namespace, self.metadata.name)

    def query_values(self) -> dict[str, str]:
        """What a custom query's placeholders stand for (but `interval` and `variables`, which
        are the metric's), as Flagger fills a MetricTemplate."""
        spec = self.spec
        target = spec.target_ref.name
        return {
            "name": self.metadata.name,
            "namespace": self.metadata.namespace,
            "target": target,
            "service": spec.service.name or target,
            "ingress": spec.ingress_ref.name if spec.ingress_ref else target,
            "route": spec.route_ref.name if spec.route_ref else target,
        }

    def metrics_server_for(self, metric: Metric) -> str | None:
        """The Prometheus to ask: the metric's MetricTemplate, else `analysis.metricsServer`,
        else `spec.metricsServer`; None leaves it to the worker's default."""
        analysis = self.spec.analysis
        return metric.metrics_server or analysis.metrics_server or self.spec.metrics_server


def workflow_id(namespace: str, name: str) -> str:
    """One rollout per Canary: Temporal refuses a second running workflow with this id.

    A namespace has no dots, so no two (namespace, name) pairs share an id."""
    return f"canary-{namespace}.{name}"
