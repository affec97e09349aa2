"""Loading a Flagger `Canary` from YAML text into a validated `Canary`.

Every problem is reported as one line naming the field path (`spec.analysis.stepWeight: ...`),
all problems at once. Deprecated forms are converted with a one-line warning each.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from canary import metric_templates, names, providers, safe_yaml, spec
from canary.names import shown

API_VERSION = "flagger.app/v1beta1"
LEGACY_API_VERSION = "flagger.app/v1alpha3"
LEGACY_METRIC_NAMES = {
    "istio_requests_total": "request-success-rate",
    "istio_request_duration_seconds_bucket": "request-duration",
}
DEPRECATED_THRESHOLD_SIDE = {"request-success-rate": "min", "request-duration": "max"}
"""Which end of `thresholdRange` the deprecated `threshold` meant; Flagger read it as a
maximum for every other metric (custom queries halted when the value was above it)."""
TEMPLATE_KIND = "MetricTemplate"


class SpecError(Exception):
    """The input is not a valid Canary; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class LoadedCanary:
    canary: spec.Canary
    warnings: list[str] = field(default_factory=list)
    default_provider: bool = False
    """The spec names no provider: it got the loader's default."""


def load_canary(
    text: str, source: str = "<input>", default_provider: str = providers.DEFAULT_PROVIDER
) -> LoadedCanary:
    """Parse and validate YAML text holding one Canary (and optionally MetricTemplates).

    A Canary without `spec.provider` gets `default_provider`, so the loaded spec always names
    its router."""
    documents = _parse_yaml(text, source)
    warnings: list[str] = []
    canary_doc, templates = _split_documents(documents, source, warnings)
    canary_doc = _convert_legacy(canary_doc, warnings)
    defaulted = _mapping(canary_doc.get("spec")).get("provider") is None
    if defaulted and isinstance(canary_doc.get("spec"), dict):
        canary_doc["spec"] = {**canary_doc["spec"], "provider": default_provider}
    # an unsupported provider explains every other problem: it comes first
    problems = _provider_problems(_mapping(canary_doc.get("spec")).get("provider"))
    try:
        canary = spec.Canary.model_validate(canary_doc)
    except ValidationError as error:
        raise SpecError(problems + _pydantic_problems(error)) from None
    canary, template_problems, template_warnings = _resolve_templates(canary, templates)
    problems += template_problems + semantic_problems(canary)
    if problems:
        raise SpecError(problems)
    warnings += template_warnings
    warnings += [f"{path}: unknown field, ignored" for path in _unknown_fields(canary, "")]
    warnings += _unapplied_service_fields(canary)
    return LoadedCanary(canary=canary, warnings=warnings, default_provider=defaulted)


def _parse_yaml(text: str, source: str) -> list[Any]:
    try:
        documents = safe_yaml.load_documents(text, source)
    except safe_yaml.YamlError as error:
        raise SpecError([str(error)]) from None
    if not documents:
        raise SpecError([f"{source}: empty file, expected a Canary ({API_VERSION})"])
    return documents


def _split_documents(
    documents: list[Any], source: str, warnings: list[str]
) -> tuple[dict[str, Any], dict[tuple[str, str | None], dict[str, Any]]]:
    """The Canary and the MetricTemplates; other kinds (AlertProviders, the Deployment...)
    are left out with one warning."""
    canaries: list[dict[str, Any]] = []
    templates: dict[tuple[str, str | None], dict[str, Any]] = {}
    ignored: list[str] = []
    for doc in documents:
        if not isinstance(doc, dict):
            raise SpecError([f"{source}: expected a Canary mapping, got {type(doc).__name__}"])
        kind = doc.get("kind")
        meta = _mapping(doc.get("metadata"))
        if kind == "Canary":
            canaries.append(doc)
        elif kind == TEMPLATE_KIND:
            templates[(str(meta.get("name")), meta.get("namespace"))] = doc
        else:
            name = meta.get("name")
            ignored.append(shown(kind) + (f" {shown(name)}" if name is not None else ""))
    listed = ", ".join(ignored[:5]) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
    if len(canaries) != 1:
        besides = f" (besides {listed})" if ignored else ""
        raise SpecError([f"{source}: expected exactly one Canary, found {len(canaries)}{besides}"])
    if ignored:
        warnings.append(
            f"{source}: ignored what is neither a Canary nor a MetricTemplate: {listed}"
        )
    return canaries[0], templates


def _convert_legacy(doc: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """Bring v1alpha3 documents and deprecated metric thresholds to the v1beta1 form, and
    read `threshold: 0` as Flagger does (1)."""
    api_version = doc.get("apiVersion")
    doc = dict(doc)
    spec_doc = dict(doc.get("spec") or {}) if isinstance(doc.get("spec"), dict) else doc.get("spec")
    if api_version == LEGACY_API_VERSION:
        warnings.append(
            f"apiVersion: {LEGACY_API_VERSION} is deprecated, read as {API_VERSION} "
            "(canaryAnalysis -> analysis, istio_* metric names -> built-in checks)"
        )
        doc["apiVersion"] = API_VERSION
        if isinstance(spec_doc, dict) and "canaryAnalysis" in spec_doc:
            spec_doc["analysis"] = spec_doc.pop("canaryAnalysis")
    elif api_version != API_VERSION:
        raise SpecError([f"apiVersion: expected {API_VERSION}, got {shown(api_version)}"])
    if isinstance(spec_doc, dict) and isinstance(spec_doc.get("analysis"), dict):
        analysis = dict(spec_doc["analysis"])
        threshold = analysis.get("threshold")
        if (
            isinstance(threshold, int | float)
            and not isinstance(threshold, bool)
            and threshold == 0
        ):
            analysis["threshold"] = 1
            warnings.append("spec.analysis.threshold: 0 read as 1, as Flagger reads it")
        metrics = analysis.get("metrics")
        if isinstance(metrics, list):
            analysis["metrics"] = [
                _convert_metric(metric, index, warnings) for index, metric in enumerate(metrics)
            ]
        spec_doc["analysis"] = analysis
    doc["spec"] = spec_doc
    return doc


def _convert_metric(metric: Any, index: int, warnings: list[str]) -> Any:
    if not isinstance(metric, dict):
        return metric
    metric = dict(metric)
    path = f"spec.analysis.metrics[{index}]"
    legacy_name = metric.get("name")
    if legacy_name in LEGACY_METRIC_NAMES and "query" not in metric:
        metric["name"] = LEGACY_METRIC_NAMES[legacy_name]
    if "threshold" in metric and "thresholdRange" not in metric:
        name = metric.get("name")
        side = DEPRECATED_THRESHOLD_SIDE.get(str(name), "max")
        threshold = metric.pop("threshold")
        metric["thresholdRange"] = {side: threshold}
        warnings.append(f"{path}.threshold: deprecated, read as thresholdRange.{side}: {threshold}")
    return metric


def _pydantic_problems(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        path = _format_path(item["loc"])
        kind = item["type"]
        if kind == "missing":
            message = "is required"
        elif kind == "enum":
            expected = item.get("ctx", {}).get("expected", "")
            message = f"unknown value {shown(item['input'])} (expected one of {expected})"
        elif kind == "model_type" or kind == "model_attributes_type":
            message = "must be a mapping"
        elif kind == "string_too_short" and item.get("ctx", {}).get("min_length") == 1:
            message = "must not be empty"
        elif kind == "value_error":
            message = str(item.get("ctx", {}).get("error", item["msg"]))
        else:
            message = item["msg"].replace("Input should be", "must be")
        problems.append(f"{path}: {message}" if path else message)
    return problems


def _format_path(loc: Iterable[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif "[" in part or part.startswith("function-"):
            continue
        else:
            part = names.plain(part)
            path += f".{part}" if path else part
    return path


def _resolve_templates(
    canary: spec.Canary, templates: Mapping[tuple[str, str | None], dict[str, Any]]
) -> tuple[spec.Canary, list[str], list[str]]:
    """Inline the query and provider of MetricTemplates given in the same file; a templateRef
    to any other is left for the worker, which reads the template from the cluster at each
    query (as Flagger does), with a warning. Answers the Canary, problems and warnings."""
    problems: list[str] = []
    warnings: list[str] = []
    metrics = []
    for index, metric in enumerate(canary.spec.analysis.metrics):
        ref = metric.template_ref
        if ref is None or metric.query is not None:
            metrics.append(metric)
            continue
        namespace = ref.namespace or canary.metadata.namespace
        template = templates.get((ref.name, namespace)) or templates.get((ref.name, None))
        label = metric_templates.label(namespace, ref.name)
        if template is None:
            path = f"spec.analysis.metrics[{index}].templateRef"
            checks = [("name", names.subdomain_problem(ref.name))]
            if ref.namespace is not None:
                checks.append(("namespace", names.label_problem(ref.namespace)))
            found = [f"{path}.{key}: {problem}" for key, problem in checks if problem]
            problems += found
            if not found:
                warnings.append(
                    f"{path}: MetricTemplate {label} is not in this file; the worker reads it "
                    "from the cluster at run time"
                )
            metrics.append(metric)
            continue
        read, template_problems = metric_templates.read_template(template)
        problems += [f"MetricTemplate {label}: {problem}" for problem in template_problems]
        if read is None:
            metrics.append(metric)
            continue
        provider = read.provider
        update = {
            "query": read.query,
            "metrics_server": provider.address,
            "metrics_provider": provider.type,
            "metrics_secret_ref": provider.secret_ref,
            "metrics_headers": {name: list(values) for name, values in provider.headers.items()},
            "metrics_insecure_skip_verify": provider.insecure_skip_verify,
        }
        metrics.append(metric.model_copy(update=update))
    analysis = canary.spec.analysis.model_copy(update={"metrics": metrics})
    resolved = canary.model_copy(
        update={"spec": canary.spec.model_copy(update={"analysis": analysis})}
    )
    return resolved, problems, warnings


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _provider_problems(provider: Any) -> list[str]:
    """`spec.provider` as written (a non-string is left to the schema's own check)."""
    if not isinstance(provider, str) or providers.router(provider) is not None:
        return []
    supported = f"(supported: {', '.join(providers.router_names())})"
    if provider.split(":")[0] in providers.FLAGGER_ONLY_PROVIDERS:
        return [
            f"spec.provider: provider {shown(provider)} is not supported by coalmine yet "
            f"{supported}"
        ]
    return [f"spec.provider: unknown provider {shown(provider)} {supported}"]


def semantic_problems(canary: spec.Canary) -> list[str]:
    """Checks that span fields, each as `path: problem` (`spec.provider` is checked before,
    on the document as written). What the router cannot do is read from `canary.providers`."""
    problems: list[str] = []
    target = canary.spec
    analysis = target.analysis
    provider = target.provider or providers.DEFAULT_PROVIDER
    router = providers.router(provider, target.target_ref.kind)
    if target.target_ref.kind not in providers.TARGET_KINDS:
        problems.append(
            f"spec.targetRef.kind: unsupported kind {shown(target.target_ref.kind)} "
            f"(supported: {', '.join(providers.TARGET_KINDS)})"
        )
    problems += _name_problems(canary)
    problems += _local_problems(target)
    if router is not None:
        problems += _target_kind_problems(target.target_ref.kind, provider, router)
        service = target.service.model_dump(by_alias=True)
        problems += [
            f"spec.service.{name}: required with provider {shown(provider)}"
            for name in router.required_service_fields
            if not service.get(name)
        ]
        problems += _service_routing_problems(target, provider, router)
    if target.autoscaler_ref and target.autoscaler_ref.kind != "HorizontalPodAutoscaler":
        problems.append(
            f"spec.autoscalerRef.kind: unsupported kind {shown(target.autoscaler_ref.kind)} "
            "(supported: HorizontalPodAutoscaler)"
        )
    problems += _analysis_problems(analysis, provider, router)
    return problems


def _header_problems(headers: Mapping[str, Any], path: str) -> list[str]:
    """Istio's Headers: `request` and `response`, each with `set` and `add` (name -> value)
    and `remove` (names)."""
    problems: list[str] = []
    for direction, operations in headers.items():
        where = f"{path}.{names.plain(str(direction))}"
        if direction not in ("request", "response"):
            problems.append(f"{where}: unknown, expected request or response")
        elif not isinstance(operations, Mapping):
            problems.append(f"{where}: must be a mapping of set, add and remove")
        else:
            for operation, value in operations.items():
                at = f"{where}.{names.plain(str(operation))}"
                if operation not in spec.HEADER_OPERATIONS:
                    problems.append(
                        f"{at}: unknown, expected one of {', '.join(spec.HEADER_OPERATIONS)}"
                    )
                elif operation == "remove" and not (
                    isinstance(value, list) and all(isinstance(item, str) for item in value)
                ):
                    problems.append(f"{at}: must be a list of header names")
                elif operation != "remove" and not (
                    isinstance(value, Mapping)
                    and all(isinstance(item, str) for item in value.values())
                ):
                    problems.append(f"{at}: must map header names to string values")
    return problems


def _unapplied_service_fields(canary: spec.Canary) -> list[str]:
    """One warning per routing field of `spec.service` that the router has no use for, and
    for session affinity where there is no weighted routing to keep sessions in."""
    provider = canary.spec.provider or providers.DEFAULT_PROVIDER
    router = providers.router(provider, canary.spec.target_ref.kind)
    if router is None:
        return []
    written = canary.spec.service.model_dump(by_alias=True, exclude_defaults=True)
    warnings = [
        f"spec.service.{name}: provider {shown(provider)} does not apply it, ignored"
        for name in providers.ROUTING_SERVICE_FIELDS
        if name in written and name not in router.service_fields
    ]
    analysis = canary.spec.analysis
    if analysis.session_affinity is not None and analysis.strategy != spec.Strategy.CANARY:
        warnings.append(
            "spec.analysis.sessionAffinity: only for weighted canary releases (stepWeight or "
            "stepWeights), ignored with iterations"
        )
    return warnings


TCP_PROTOCOL = "tcp"
"""`service.appProtocol` (any case) of a service routed as TCP, with no HTTP requests."""
COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An RFC 6265 cookie name (an HTTP token)."""


def _service_routing_problems(
    target: spec.CanarySpec, provider: str, router: providers.RouterCapabilities
) -> list[str]:
    """What `spec.service` asks of the router, and what a TCP service cannot have."""
    service = target.service
    analysis = target.analysis
    problems: list[str] = []
    if "delegation" in router.service_fields and service.delegation:
        problems += [
            f"spec.service.{name}: a delegate (delegation: true) has no {name}; "
            "the VirtualService that delegates to it names them"
            for name, value in (("hosts", service.hosts), ("gateways", service.gateways))
            if value
        ]
    if "match" in router.service_fields:
        for index, match in enumerate(service.match):
            problems += _match_problems(match, f"spec.service.match[{index}]", provider, router)
    if "headers" in router.service_fields and service.headers is not None:
        problems += _header_problems(service.headers, "spec.service.headers")
    if "rewrite" in router.service_fields and service.rewrite is not None:
        problems += [
            f"spec.service.rewrite.{name}: must be a string"
            for name in ("uri", "authority", "type")
            if name in service.rewrite and not isinstance(service.rewrite[name], str)
        ]
        kind = service.rewrite.get("type")
        if isinstance(kind, str) and kind not in spec.REWRITE_TYPES:
            problems.append(
                f"spec.service.rewrite.type: unknown type {shown(kind)} "
                f"(expected one of {', '.join(spec.REWRITE_TYPES)})"
            )
    if (service.app_protocol or "").lower() == TCP_PROTOCOL:
        problems += [
            f"spec.analysis.{name}: a TCP service (spec.service.appProtocol) has no HTTP "
            "requests to match, mirror or keep sessions of"
            for name, used in (
                ("match", bool(analysis.match)),
                ("mirror", analysis.mirror),
                ("sessionAffinity", analysis.session_affinity is not None),
            )
            if used
        ]
    if analysis.session_affinity is not None:
        problems += _session_affinity_problems(analysis.session_affinity)
    return problems


def _session_affinity_problems(affinity: spec.SessionAffinity) -> list[str]:
    """Cookie names and attributes go into a `Set-Cookie` header and a match on `Cookie`."""
    base = "spec.analysis.sessionAffinity"
    problems = [
        f"{base}.{field_name}: must be a cookie name (letters, digits and "
        f"!#$%&'*+-.^_`|~; got {shown(name)})"
        for field_name, name in (
            ("cookieName", affinity.cookie_name),
            ("primaryCookieName", affinity.primary_cookie_name),
        )
        if name is not None and not COOKIE_NAME.fullmatch(name)
    ]
    if affinity.primary_cookie_name == affinity.cookie_name:
        problems.append(
            f"{base}.primaryCookieName: must differ from cookieName ({shown(affinity.cookie_name)})"
        )
    problems += [
        f"{base}.{field_name}: must hold no ';', spaces or control characters (got {shown(value)})"
        for field_name, value in (("domain", affinity.domain), ("path", affinity.path))
        if value is not None
        and (not value or re.search(r"[;\s]", value) or names.has_control_characters(value))
    ]
    return problems


def _name_problems(canary: spec.Canary) -> list[str]:
    """Names become Kubernetes object names, label values and PromQL label values: each
    must be valid with the suffix coalmine appends (`<name>-primary`, `<name>-canary`)."""
    target = canary.spec
    service = target.service
    checks: list[tuple[str, str | None]] = [
        ("metadata.name", names.label_problem(canary.metadata.name)),
        ("metadata.namespace", names.label_problem(canary.metadata.namespace)),
        (
            "spec.targetRef.name",
            # without service.name, the target also names the Services
            names.label_problem(
                target.target_ref.name, room=names.ROOM, letter_first=service.name is None
            ),
        ),
        (
            "spec.service.name",
            None
            if service.name is None
            else names.label_problem(service.name, room=names.ROOM, letter_first=True),
        ),
        ("spec.service.portName", names.port_name_problem(service.port_name, names.MAX_LABEL)),
        ("spec.service.targetPort", _target_port_problem(service.target_port)),
        (
            "spec.autoscalerRef.name",
            None
            if target.autoscaler_ref is None
            else names.subdomain_problem(target.autoscaler_ref.name, room=names.ROOM),
        ),
    ]
    analysis = target.analysis
    for index, metric in enumerate(analysis.metrics):
        checks.append((f"spec.analysis.metrics[{index}].name", names.control_problem(metric.name)))
    for index, webhook in enumerate(analysis.webhooks):
        path = f"spec.analysis.webhooks[{index}].name"
        checks.append((path, names.control_problem(webhook.name)))
    for index, alert in enumerate(analysis.alerts):
        path = f"spec.analysis.alerts[{index}]"
        checks.append((f"{path}.name", names.control_problem(alert.name)))
        checks.append((f"{path}.providerRef.name", names.control_problem(alert.provider_ref.name)))
    return [f"{path}: {problem}" for path, problem in checks if problem is not None]


def _target_port_problem(port: int | str | None) -> str | None:
    if isinstance(port, str):
        return names.port_name_problem(port)
    if port is not None and not 0 < port <= 65535:
        return f"must be a port number between 1 and 65535 or a port name (got {port})"
    return None


def _local_problems(target: spec.CanarySpec) -> list[str]:
    """The local platform's pieces must come together: a LocalProcess target with `local`,
    routed by provider traefik with `traefik` (its file provider's config)."""
    problems: list[str] = []
    local_kind = target.target_ref.kind == spec.LOCAL_KIND
    if local_kind and target.local is None:
        problems.append("spec.local: required when spec.targetRef.kind is LocalProcess")
    if target.local is not None and not local_kind:
        problems.append(
            f"spec.local: only for spec.targetRef.kind LocalProcess "
            f"(got {shown(target.target_ref.kind)})"
        )
    if target.local is not None and target.local.primary_port == target.local.canary_port:
        problems.append("spec.local.canaryPort: must differ from primaryPort")
    if target.provider == "traefik" and local_kind and target.traefik is None:
        problems.append("spec.traefik: required when provider traefik routes a LocalProcess")
    if target.traefik is not None and target.provider != "traefik":
        problems.append(f"spec.traefik: only for provider traefik (got {shown(target.provider)})")
    elif target.traefik is not None and target.target_ref.kind == providers.DEPLOYMENT_KIND:
        problems.append(
            "spec.traefik: only for a LocalProcess target (provider traefik writes a "
            "TraefikService for a Deployment)"
        )
    api_url = target.traefik.api_url if target.traefik is not None else None
    if api_url is not None and not names.is_http_url(api_url):
        problems.append(f"spec.traefik.apiUrl: must be an http(s) URL (got {shown(api_url)})")
    return problems


def _target_kind_problems(
    kind: str, provider: str, router: providers.RouterCapabilities
) -> list[str]:
    """The router must route the target's kind (an unknown kind is reported on its own)."""
    if kind not in providers.TARGET_KINDS or kind in router.target_kinds:
        return []
    routing = [name for name, entry in providers.ROUTERS.items() if kind in entry.target_kinds]
    if kind == spec.LOCAL_KIND:
        return [
            f"spec.provider: a LocalProcess target needs provider {' or '.join(routing)} "
            f"(got {shown(provider)})"
        ]
    return [f"spec.provider: {provider} routes {', '.join(router.target_kinds)} targets only"]


def _weight_problem(path: str, value: int | None) -> list[str]:
    if value is not None and not 0 < value <= 100:
        return [f"{path}: must be between 1 and 100 (got {value})"]
    return []


def _analysis_problems(
    analysis: spec.Analysis, provider: str, router: providers.RouterCapabilities | None
) -> list[str]:
    base = "spec.analysis"
    problems: list[str] = []
    if analysis.interval <= 0:
        problems.append(f"{base}.interval: must be longer than 0s")
    if analysis.threshold < 0:
        problems.append(f"{base}.threshold: must not be negative (got {analysis.threshold})")
    problems += _weight_problem(f"{base}.maxWeight", analysis.max_weight)
    problems += _weight_problem(f"{base}.stepWeight", analysis.step_weight)
    problems += _weight_problem(f"{base}.mirrorWeight", analysis.mirror_weight)
    problems += _weight_problem(f"{base}.stepWeightPromotion", analysis.step_weight_promotion)
    if analysis.step_weight_promotion is not None and analysis.iterations is not None:
        problems.append(
            f"{base}.stepWeightPromotion: only for the canary strategy (stepWeight or "
            "stepWeights); with iterations the switch to the primary is at once"
        )
    for index, weight in enumerate(analysis.step_weights):
        problems += _weight_problem(f"{base}.stepWeights[{index}]", weight)
    if any(b <= a for a, b in zip(analysis.step_weights, analysis.step_weights[1:], strict=False)):
        problems.append(f"{base}.stepWeights: must be strictly increasing")
    if (
        analysis.step_weight is not None
        and analysis.max_weight is not None
        and analysis.step_weight > analysis.max_weight
    ):
        problems.append(
            f"{base}.stepWeight: must not exceed maxWeight "
            f"({analysis.step_weight} > {analysis.max_weight})"
        )
    if analysis.iterations is not None and analysis.iterations < 1:
        problems.append(f"{base}.iterations: must be at least 1 (got {analysis.iterations})")
    has_weights = bool(analysis.step_weights) or analysis.step_weight is not None
    if analysis.iterations is None and not has_weights:
        problems.append(f"{base}: needs stepWeight (with maxWeight), stepWeights or iterations")
    if router is not None:
        problems += _routing_problems(analysis, provider, router)
    if analysis.match and analysis.iterations is None:
        problems.append(f"{base}.iterations: required with match (A/B testing)")
    for index, metric in enumerate(analysis.metrics):
        problems += _metric_problems(metric, f"{base}.metrics[{index}]", provider, router)
    for index, webhook in enumerate(analysis.webhooks):
        if not names.is_http_url(webhook.url):
            problems.append(
                f"{base}.webhooks[{index}].url: must be an http(s) URL (got {shown(webhook.url)})"
            )
    return problems


def _routing_problems(
    analysis: spec.Analysis, provider: str, router: providers.RouterCapabilities
) -> list[str]:
    """What the analysis asks of the traffic that the router cannot do."""
    base = "spec.analysis"
    problems: list[str] = []
    has_weights = bool(analysis.step_weights) or analysis.step_weight is not None
    if not router.weights and analysis.iterations is None and has_weights:
        field = "stepWeights" if analysis.step_weights else "stepWeight"
        problems.append(
            f"{base}.{field}: provider {shown(provider)} has no traffic router; "
            "use iterations (blue/green)"
        )
    if not router.match_fields and not router.mirroring and (analysis.match or analysis.mirror):
        field = "match" if analysis.match else "mirror"
        problems.append(
            f"{base}.{field}: provider {shown(provider)} cannot match or mirror traffic"
        )
        return problems
    if analysis.mirror and not router.mirroring:
        problems.append(f"{base}.mirror: provider {shown(provider)} cannot mirror traffic")
    if analysis.session_affinity is not None and not router.session_affinity:
        problems.append(
            f"{base}.sessionAffinity: provider {shown(provider)} cannot keep sessions on the canary"
        )
    elif analysis.session_affinity is not None and analysis.match:
        problems.append(
            f"{base}.sessionAffinity: not with match (A/B testing routes by the match alone)"
        )
    for index, match in enumerate(analysis.match):
        problems += _match_problems(match, f"{base}.match[{index}]", provider, router)
    return problems


def _match_problems(
    match: Mapping[str, Any], path: str, provider: str, router: providers.RouterCapabilities
) -> list[str]:
    problems: list[str] = []
    if not router.match_fields:
        return [f"{path}: provider {shown(provider)} cannot match traffic"]
    for field_name, conditions in match.items():
        if field_name not in router.match_fields:
            problems.append(
                f"{path}.{names.plain(str(field_name))}: provider {shown(provider)} cannot match "
                f"on it (it matches {', '.join(sorted(router.match_fields))})"
            )
        elif router.match_fields[field_name]:
            kinds = router.match_fields[field_name]
            problems += _condition_problems(f"{path}.{field_name}", conditions, provider, kinds)
    headers = match.get("headers")
    cookies = isinstance(headers, Mapping) and any(
        str(name).lower() == "cookie" for name in headers
    )
    if cookies and router.header_match and not router.cookie_match:
        problems.append(f"{path}.headers.cookie: provider {shown(provider)} cannot match cookies")
    return problems


def _condition_problems(
    path: str, conditions: Any, provider: str, kinds: frozenset[str]
) -> list[str]:
    """Each condition of a match field must be one Istio StringMatch the router takes."""
    field_name = path.rsplit(".", 1)[-1]
    if field_name in providers.NAMED_MATCH_FIELDS:
        if not isinstance(conditions, Mapping):
            return [f"{path}: must map names to conditions"]
        named = [(f"{path}.{names.plain(str(name))}", value) for name, value in conditions.items()]
    else:
        named = [(path, conditions)]
    expected = ", ".join(sorted(kinds))
    return [
        f"{where}: provider {shown(provider)} takes one of {expected} here"
        for where, condition in named
        if not (
            isinstance(condition, Mapping)
            and len(condition) == 1
            and next(iter(condition)) in kinds
            and isinstance(next(iter(condition.values())), str)
        )
    ]


def _metric_problems(
    metric: spec.Metric, path: str, provider: str, router: providers.RouterCapabilities | None
) -> list[str]:
    problems: list[str] = []
    if not metric.builtin and metric.query is None and metric.template_ref is None:
        problems.append(
            f"{path}: {shown(metric.name)} is neither a built-in metric "
            f"({', '.join(spec.BUILTIN_METRICS)}) nor has a query or templateRef"
        )
    if metric.builtin and router is not None and metric.name not in router.builtin_metrics:
        why = "" if router.weights else " (it routes no traffic to measure)"
        problems.append(
            f"{path}: built-in metric {shown(metric.name)} has no query for provider "
            f"{shown(provider)}{why}; give the metric a query or templateRef"
        )
    problems += _metrics_provider_problems(metric, path)
    if metric.query is not None:
        problems += _placeholder_problems(metric, path)
    bounds = metric.threshold_range
    if bounds and bounds.min is not None and bounds.max is not None and bounds.min > bounds.max:
        problems.append(
            f"{path}.thresholdRange: min must not exceed max ({bounds.min:g} > {bounds.max:g})"
        )
    if metric.interval <= 0:
        problems.append(f"{path}.interval: must be longer than 0s")
    return problems


def _metrics_provider_problems(metric: spec.Metric, path: str) -> list[str]:
    """The provider fields written on the metric itself (a template's own are checked with the
    template)."""
    kind_problem = metric_templates.provider_type_problem(
        metric.metrics_provider, "metrics provider"
    )
    if kind_problem is not None:
        return [f"{path}.metricsProvider: {kind_problem}"]
    if metric.template_ref is not None:
        return []
    fields = {"address": "metricsServer", "secretRef": "metricsSecretRef"}
    found = metric_templates.provider_problems(
        metric.metrics_provider, metric.metrics_server, metric.metrics_secret_ref
    )
    return [f"{path}.{fields[where]}: {problem}" for where, problem in found]


def _placeholder_problems(metric: spec.Metric, path: str) -> list[str]:
    """Every `{{ ... }}` of a custom query must be one coalmine fills, so a typo fails
    validation instead of every analysis step."""
    assert metric.query is not None
    problems: list[str] = []
    known = ", ".join(spec.QUERY_PLACEHOLDERS)
    for match in spec.QUERY_PLACEHOLDER.finditer(metric.query):
        placeholder = match.group(1).strip()
        variable = placeholder.removeprefix("variables.")
        if placeholder in spec.QUERY_PLACEHOLDERS or variable in metric.template_variables:
            continue
        if variable != placeholder:
            why = f"templateVariables has no {shown(variable)}"
        else:
            why = f"known: {known} and variables.NAME"
        problems.append(
            f"{path}: the query of {shown(metric.name)} has an unknown placeholder "
            f"{shown(match.group(0))} ({why})"
        )
    return problems


def _unknown_fields(model: BaseModel, path: str) -> list[str]:
    extra = [names.plain(str(name)) for name in (model.model_extra or {})]
    found = [f"{path}.{name}" if path else name for name in extra]
    for name, info in type(model).model_fields.items():
        alias = info.serialization_alias or name
        child_path = f"{path}.{alias}" if path else alias
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            found += _unknown_fields(value, child_path)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    found += _unknown_fields(item, f"{child_path}[{index}]")
    return found
