"""Loading Flagger `Canary` YAML: normalised values, deprecations, one-line problems."""

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary import loader, providers
from canary.spec import Canary, Strategy, WebhookType

SPECS = Path(__file__).parent / "specs"
SOURCE = "podinfo.yaml"


def read(name: str) -> str:
    return (SPECS / name).read_text()


def podinfo_doc() -> dict[str, Any]:
    doc = yaml.safe_load(read("podinfo.yaml"))
    assert isinstance(doc, dict)
    return doc


DELETE = object()
"""Marks a field that `edited` removes."""


def _walk(doc: Any, path: str) -> tuple[Any, str | int]:
    """The container holding the last part of `path` (`a.b[2].c`), and that part's key."""
    parts: list[str | int] = []
    for piece in path.split("."):
        name, *indexes = re.split(r"\[(\d+)\]", piece)
        if name:
            parts.append(name)
        parts += [int(index) for index in indexes if index]
    for part in parts[:-1]:
        doc = doc[part]
    return doc, parts[-1]


def edited(edits: dict[str, Any], doc: dict[str, Any] | None = None) -> str:
    """The podinfo Canary (or `doc`) with `edits` applied, as YAML text."""
    result = copy.deepcopy(doc if doc is not None else podinfo_doc())
    for path, value in edits.items():
        container, key = _walk(result, path)
        if value is DELETE:
            del container[key]
        else:
            container[key] = value
    return yaml.safe_dump(result, sort_keys=False)


def load(text: str) -> loader.LoadedCanary:
    return loader.load_canary(text, SOURCE)


def problems_of(text: str) -> list[str]:
    with pytest.raises(loader.SpecError) as raised:
        load(text)
    problems = raised.value.problems
    assert str(raised.value) == "\n".join(problems)
    for problem in problems:
        assert problem and "\n" not in problem
    return problems


# -- the podinfo example ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def podinfo() -> loader.LoadedCanary:
    return load(read("podinfo.yaml"))


def test_podinfo_loads_without_warnings(podinfo: loader.LoadedCanary) -> None:
    assert podinfo.warnings == []
    canary = podinfo.canary
    assert canary.target == "podinfo.test"
    assert canary.workflow_id == "canary-test.podinfo"
    assert canary.spec.provider == "istio"
    assert (canary.spec.target_ref.kind, canary.spec.target_ref.name) == ("Deployment", "podinfo")
    assert canary.spec.progress_deadline_seconds == 60
    assert canary.spec.autoscaler_ref is not None
    assert canary.spec.autoscaler_ref.kind == "HorizontalPodAutoscaler"
    assert canary.spec.autoscaler_ref.name == "podinfo"


def test_podinfo_service(podinfo: loader.LoadedCanary) -> None:
    service = podinfo.canary.spec.service
    assert service.port == 9898
    assert service.target_port == 9898
    assert service.port_name == "http"
    assert service.gateways == ["public-gateway.istio-system.svc.cluster.local"]
    assert service.hosts == ["app.example.com"]
    assert service.traffic_policy == {"tls": {"mode": "DISABLE"}}
    assert service.retries == {
        "attempts": 3,
        "perTryTimeout": "1s",
        "retryOn": "gateway-error,connect-failure,refused-stream",
    }


def test_podinfo_analysis(podinfo: loader.LoadedCanary) -> None:
    analysis = podinfo.canary.spec.analysis
    assert analysis.strategy == Strategy.CANARY
    assert analysis.weights == [10, 20, 30, 40, 50]
    assert analysis.interval == 60.0
    assert analysis.threshold == 5
    assert [
        (m.name, m.interval, m.threshold_range.min if m.threshold_range else None)
        for m in analysis.metrics
    ] == [("request-success-rate", 60.0, 99.0), ("request-duration", 30.0, None)]
    duration = analysis.metrics[1].threshold_range
    assert duration is not None and duration.max == 500.0
    assert all(metric.builtin for metric in analysis.metrics)


def test_podinfo_webhooks_of_every_type(podinfo: loader.LoadedCanary) -> None:
    hooks = podinfo.canary.spec.analysis.webhooks
    assert [(hook.name, hook.type) for hook in hooks] == [
        ("start-gate", WebhookType.CONFIRM_ROLLOUT),
        ("acceptance-test", WebhookType.PRE_ROLLOUT),
        ("load-test", WebhookType.ROLLOUT),
        ("smoke-test", WebhookType.ROLLOUT),  # type omitted: a rollout hook
        ("traffic-gate", WebhookType.CONFIRM_TRAFFIC_INCREASE),
        ("promotion-gate", WebhookType.CONFIRM_PROMOTION),
        ("notify-done", WebhookType.POST_ROLLOUT),
        ("notify-rollback", WebhookType.ROLLBACK),
        ("events", WebhookType.EVENT),
    ]
    assert {hook.type for hook in hooks} == set(WebhookType)
    timeouts = {hook.name: hook.timeout for hook in hooks}
    assert (timeouts["acceptance-test"], timeouts["load-test"]) == (30.0, 5.0)
    assert timeouts["smoke-test"] == 90.0
    assert timeouts["events"] == 10.0  # Flagger's default
    assert hooks[1].metadata["type"] == "bash"
    analysis = podinfo.canary.spec.analysis
    assert [hook.name for hook in analysis.webhooks_of(WebhookType.ROLLOUT)] == [
        "load-test",
        "smoke-test",
    ]


def test_step_weights_variant() -> None:
    text = edited(
        {
            "spec.analysis.stepWeight": DELETE,
            "spec.analysis.metrics": [],
            "spec.analysis.maxWeight": DELETE,
            "spec.analysis.stepWeights": [1, 2, 10, 80],
        }
    )
    analysis = load(text).canary.spec.analysis
    assert analysis.strategy == Strategy.CANARY
    assert analysis.weights == [1, 2, 10, 80]


def test_step_weight_promotion_loads() -> None:
    loaded = loader.load_canary(edited({"spec.analysis.stepWeightPromotion": 25}))
    assert loaded.warnings == []
    assert loaded.canary.spec.analysis.step_weight_promotion == 25


def test_spec_round_trips_through_yaml(podinfo: loader.LoadedCanary) -> None:
    written = podinfo.canary.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert written["spec"]["analysis"]["interval"] == "1m"
    assert written["spec"]["analysis"]["metrics"][1]["interval"] == "30s"
    again = load(yaml.safe_dump(written))
    assert again.canary == podinfo.canary
    assert again.warnings == []


# -- deprecated forms ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "side", "value"),
    [
        ({"name": "request-success-rate", "threshold": 99}, "min", 99.0),
        ({"name": "request-duration", "threshold": 500}, "max", 500.0),
        # Flagger halted a custom query when its value went above the deprecated threshold
        ({"name": "404s percentage", "query": "sum(x)", "threshold": 5}, "max", 5.0),
    ],
)
def test_deprecated_threshold(metric: dict[str, Any], side: str, value: float) -> None:
    result = load(edited({"spec.analysis.metrics": [metric]}))
    bounds = result.canary.spec.analysis.metrics[0].threshold_range
    assert bounds is not None
    assert (bounds.min, bounds.max) == ((value, None) if side == "min" else (None, value))
    threshold = metric["threshold"]
    assert result.warnings == [
        f"spec.analysis.metrics[0].threshold: deprecated, read as thresholdRange.{side}: "
        f"{threshold}"
    ]


def test_v1alpha3_is_converted_with_a_deprecation_warning() -> None:
    result = load(read("podinfo-v1alpha3.yaml"))
    canary = result.canary
    assert canary.api_version == "flagger.app/v1beta1"
    analysis = canary.spec.analysis
    assert (analysis.interval, analysis.threshold) == (30.0, 10)
    assert analysis.weights == list(range(5, 55, 5))
    assert [metric.name for metric in analysis.metrics] == [
        "request-success-rate",
        "request-duration",
    ]
    assert all(metric.builtin for metric in analysis.metrics)
    success, duration = (metric.threshold_range for metric in analysis.metrics)
    assert success is not None and (success.min, success.max) == (99.0, None)
    assert duration is not None and (duration.min, duration.max) == (None, 500.0)
    api_warnings = [w for w in result.warnings if w.startswith("apiVersion:")]
    assert len(api_warnings) == 1
    assert "flagger.app/v1alpha3 is deprecated" in api_warnings[0]
    assert "canaryAnalysis" in api_warnings[0]
    # the old metrics also used the deprecated `threshold`: one warning each
    assert sorted(result.warnings[1:]) == [
        "spec.analysis.metrics[0].threshold: deprecated, read as thresholdRange.min: 99",
        "spec.analysis.metrics[1].threshold: deprecated, read as thresholdRange.max: 500",
    ]
    assert all("\n" not in warning for warning in result.warnings)


# -- MetricTemplates -------------------------------------------------------------------------


def test_metric_template_in_the_same_file_is_resolved() -> None:
    text = read("podinfo-metric-template.yaml")
    template = next(doc for doc in yaml.safe_load_all(text) if doc["kind"] == "MetricTemplate")
    result = load(text)
    assert result.warnings == []
    custom = result.canary.spec.analysis.metrics[1]
    assert custom.name == "404s percentage"
    assert custom.query == template["spec"]["query"]
    assert custom.metrics_server == "http://prometheus.istio-system:9090"
    assert not custom.builtin
    bounds = custom.threshold_range
    assert bounds is not None and bounds.max == 5.0


def test_template_ref_without_namespace_uses_the_canary_namespace() -> None:
    docs = list(yaml.safe_load_all(read("podinfo-metric-template.yaml")))
    docs[0]["metadata"]["namespace"] = "test"
    del docs[1]["spec"]["analysis"]["metrics"][1]["templateRef"]["namespace"]
    custom = load(yaml.safe_dump_all(docs)).canary.spec.analysis.metrics[1]
    assert custom.query == docs[0]["spec"]["query"]


def template_docs() -> list[Any]:
    return list(yaml.safe_load_all(read("podinfo-metric-template.yaml")))


def template_provider(docs: list[Any]) -> dict[str, Any]:
    provider: dict[str, Any] = docs[0]["spec"]["provider"]
    return provider


@pytest.mark.parametrize(
    "change",
    [
        lambda docs: docs[1]["spec"]["analysis"]["metrics"][1]["templateRef"].update(
            name="missing"
        ),
        lambda docs: docs.pop(0),
    ],
    ids=["another-name", "not-in-the-file"],
)
def test_a_template_not_in_the_file_is_left_for_the_worker_with_a_warning(change: Any) -> None:
    """As in Flagger, a templateRef names a MetricTemplate of the cluster: the worker reads it
    at each query, so validate can only say so."""
    docs = template_docs()
    change(docs)
    result = load(yaml.safe_dump_all(docs))
    ref = docs[-1]["spec"]["analysis"]["metrics"][1]["templateRef"]
    assert result.warnings == [
        f"spec.analysis.metrics[1].templateRef: MetricTemplate istio-system/{ref['name']} is not "
        "in this file; the worker reads it from the cluster at run time"
    ]
    metric = result.canary.spec.analysis.metrics[1]
    assert metric.from_cluster and not metric.builtin
    assert (metric.query, metric.metrics_server, metric.metrics_secret_ref) == (None, None, None)


def test_a_builtin_name_with_a_cluster_template_is_the_template() -> None:
    """The templateRef wins over the name: with no traffic router there is no built-in query,
    and none is needed."""
    text = edited(
        {
            "spec.provider": "kubernetes",
            "spec.analysis.stepWeight": DELETE,
            "spec.analysis.maxWeight": DELETE,
            "spec.analysis.iterations": 5,
            "spec.analysis.metrics": [
                {"name": "request-success-rate", "templateRef": {"name": "success"}}
            ],
        }
    )
    [metric] = load(text).canary.spec.analysis.metrics
    assert metric.from_cluster and not metric.builtin


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        (
            {"name": "Not_A_Name"},
            "spec.analysis.metrics[1].templateRef.name: must be a Kubernetes name",
        ),
        (
            {"name": "ok", "namespace": "a.b"},
            "spec.analysis.metrics[1].templateRef.namespace: must be a Kubernetes name",
        ),
    ],
)
def test_a_cluster_template_ref_must_name_an_object(ref: dict[str, str], expected: str) -> None:
    docs = template_docs()
    docs.pop(0)
    docs[0]["spec"]["analysis"]["metrics"][1]["templateRef"] = ref
    [problem] = problems_of(yaml.safe_dump_all(docs))
    assert problem.startswith(expected)


TEMPLATE = "MetricTemplate istio-system/not-found-percentage: "


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda docs: docs[0]["spec"].pop("query"), "spec.query is required"),
        (
            lambda docs: template_provider(docs).update(type="foo"),
            "spec.provider.type: unknown provider 'foo' "
            "(supported: prometheus, datadog, newrelic, graphite)",
        ),
        (
            lambda docs: template_provider(docs).update(type="cloudwatch"),
            "spec.provider.type: provider 'cloudwatch' is not supported by coalmine yet "
            "(supported: prometheus, datadog, newrelic, graphite)",
        ),
        (
            lambda docs: template_provider(docs).update(type="datadog"),
            "spec.provider.secretRef: required with provider 'datadog' "
            "(a Secret with datadog_api_key and datadog_application_key)",
        ),
        (
            lambda docs: template_provider(docs).update(type="newrelic", address=None),
            "spec.provider.secretRef: required with provider 'newrelic' "
            "(a Secret with newrelic_account_id and newrelic_query_key)",
        ),
        (
            lambda docs: template_provider(docs).update(type="graphite", address=None),
            "spec.provider.address: required with provider 'graphite'",
        ),
        (
            lambda docs: template_provider(docs).update(address="prometheus:9090"),
            "spec.provider.address: must be an http(s) URL (got 'prometheus:9090')",
        ),
        (
            lambda docs: template_provider(docs).update(address=9090),
            "spec.provider.address: must be a string",
        ),
        (
            lambda docs: template_provider(docs).update(secretRef={"name": "Prom_Auth"}),
            "spec.provider.secretRef.name: must be a Kubernetes name",
        ),
        (
            lambda docs: template_provider(docs).update(secretRef={"key": "x"}),
            "spec.provider.secretRef.name: is required (the Secret's name)",
        ),
        (
            lambda docs: template_provider(docs).update(headers={"X-Org": {"a": 1}}),
            "spec.provider.headers.X-Org: must be a string or a list of strings",
        ),
        (
            lambda docs: template_provider(docs).update(headers={"X Org": "a"}),
            "spec.provider.headers.X Org: not an HTTP header name",
        ),
        (
            lambda docs: template_provider(docs).update(headers={"X-Org": "a\r\nX-Evil: 1"}),
            "spec.provider.headers.X-Org: must not contain control characters",
        ),
        (
            lambda docs: template_provider(docs).update(insecureSkipVerify="yes"),
            "spec.provider.insecureSkipVerify: must be true or false",
        ),
    ],
)
def test_metric_template_problems(change: Any, expected: str) -> None:
    docs = template_docs()
    change(docs)
    [problem] = problems_of(yaml.safe_dump_all(docs))
    assert problem.startswith(TEMPLATE + expected)


def test_a_template_in_the_file_brings_its_provider_and_only_its_secret_name() -> None:
    docs = template_docs()
    docs[0]["spec"]["provider"] = {
        "type": "datadog",
        "secretRef": {"name": "datadog"},
        "headers": {"X-Org": ["a", "b"], "X-Team": "c"},
        "insecureSkipVerify": True,
    }
    result = load(yaml.safe_dump_all(docs))
    assert result.warnings == []
    metric = result.canary.spec.analysis.metrics[1]
    assert metric.metrics_provider == "datadog"
    assert metric.metrics_secret_ref == "datadog"
    assert metric.metrics_server is None
    assert metric.metrics_headers == {"X-Org": ["a", "b"], "X-Team": ["c"]}
    assert metric.metrics_insecure_skip_verify


def test_template_problems_come_with_the_other_problems() -> None:
    docs = template_docs()
    docs[1]["spec"]["provider"] = "foo"
    docs[0]["spec"].pop("query")
    assert problems_of(yaml.safe_dump_all(docs)) == [
        "spec.provider: unknown provider 'foo' (supported: istio, traefik, kubernetes, "
        "gatewayapi:v1, gatewayapi:v1beta1)",
        "MetricTemplate istio-system/not-found-percentage: spec.query is required",
    ]


# -- unknown fields --------------------------------------------------------------------------


def test_unknown_fields_are_warnings_not_errors() -> None:
    text = edited(
        {
            "metadata.uid": "1234",
            "spec.revertOnDeletion": True,
            "spec.analysis.metrics[0].thresholdRange.foo": 1,
            "spec.analysis.webhooks[2].retriez": 3,
        }
    )
    result = load(text)
    assert sorted(result.warnings) == sorted(
        [
            "metadata.uid: unknown field, ignored",
            "spec.revertOnDeletion: unknown field, ignored",
            "spec.analysis.metrics[0].thresholdRange.foo: unknown field, ignored",
            "spec.analysis.webhooks[2].retriez: unknown field, ignored",
        ]
    )
    assert result.canary.spec.analysis.weights == [10, 20, 30, 40, 50]


def test_routing_fields_the_router_has_no_use_for_are_warnings() -> None:
    text = edited(
        {
            "spec.provider": "kubernetes",
            "spec.analysis.iterations": 5,
            "spec.analysis.stepWeight": DELETE,
            "spec.analysis.metrics": [],
            "spec.service.timeout": "30s",
            "spec.service.apex": {"labels": {"team": "a"}},
            "spec.service.portDiscovery": True,
        }
    )
    warnings = load(text).warnings
    assert "spec.service.timeout: provider 'kubernetes' does not apply it, ignored" in warnings
    assert "spec.service.apex: provider 'kubernetes' does not apply it, ignored" in warnings
    assert not [line for line in warnings if "portDiscovery" in line]


def test_session_affinity_needs_a_router_that_keeps_sessions() -> None:
    text = edited(
        {
            "spec.provider": "kubernetes",
            "spec.analysis.iterations": 5,
            "spec.analysis.stepWeight": DELETE,
            "spec.analysis.metrics": [],
            "spec.analysis.sessionAffinity": {"cookieName": "canary"},
        }
    )
    assert problems_of(text) == [
        "spec.analysis.sessionAffinity: provider 'kubernetes' cannot keep sessions on the canary"
    ]


def test_istio_applies_every_routing_field_but_gateway_refs() -> None:
    text = edited(
        {
            "spec.service.timeout": "30s",
            "spec.service.match": [{"uri": {"prefix": "/"}}],
            "spec.service.rewrite": {"uri": "/"},
            "spec.service.headers": {"request": {"add": {"x-a": "b"}}},
            "spec.service.corsPolicy": {"allowOrigin": ["example.com"]},
            "spec.service.apex": {"labels": {"team": "a"}},
            "spec.service.primary": {"labels": {"team": "a"}},
            "spec.service.canary": {"annotations": {"a": "b"}},
            "spec.service.portDiscovery": True,
            "spec.service.appProtocol": "http",
            "spec.service.gatewayRefs": [{"name": "gw"}],
            "spec.analysis.sessionAffinity": {"cookieName": "canary", "maxAge": 600},
        }
    )
    assert load(text).warnings == [
        "spec.service.gatewayRefs: provider 'istio' does not apply it, ignored"
    ]


def test_session_affinity_with_iterations_is_ignored_with_a_warning() -> None:
    text = edited(
        {
            "spec.analysis.iterations": 5,
            "spec.analysis.stepWeight": DELETE,
            "spec.analysis.maxWeight": DELETE,
            "spec.analysis.sessionAffinity": {"cookieName": "canary"},
        }
    )
    assert load(text).warnings == [
        "spec.analysis.sessionAffinity: only for weighted canary releases (stepWeight or "
        "stepWeights), ignored with iterations"
    ]


def test_session_affinity_cookie_attributes_load() -> None:
    affinity = {
        "cookieName": "flagger-cookie",
        "maxAge": 21600,
        "primaryCookieName": "primary-flagger-cookie",
        "domain": "fluxcd.io",
        "httpOnly": True,
        "partitioned": True,
        "path": "/flagger",
        "sameSite": "Strict",
        "secure": True,
    }
    result = load(edited({"spec.analysis.sessionAffinity": affinity}))
    assert result.warnings == []
    loaded = result.canary.spec.analysis.session_affinity
    assert loaded is not None
    assert loaded.model_dump(by_alias=True) == affinity


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        pytest.param(
            {"spec.analysis.sessionAffinity": {"cookieName": "c", "primaryCookieName": "c"}},
            ["spec.analysis.sessionAffinity.primaryCookieName: must differ from cookieName ('c')"],
            id="same-cookie-names",
        ),
        pytest.param(
            {"spec.analysis.sessionAffinity": {"cookieName": "a b;c"}},
            [
                "spec.analysis.sessionAffinity.cookieName: must be a cookie name (letters, "
                "digits and !#$%&'*+-.^_`|~; got 'a b;c')"
            ],
            id="cookie-name",
        ),
        pytest.param(
            {"spec.analysis.sessionAffinity": {"cookieName": "c", "path": "/; Secure"}},
            [
                "spec.analysis.sessionAffinity.path: must hold no ';', spaces or control "
                "characters (got '/; Secure')"
            ],
            id="cookie-path",
        ),
        pytest.param(
            {"spec.analysis.sessionAffinity": {"cookieName": "c", "sameSite": "Loose"}},
            ["spec.analysis.sessionAffinity.sameSite: must be 'Strict', 'Lax' or 'None'"],
            id="same-site",
        ),
        pytest.param(
            {"spec.service.delegation": True},
            [
                "spec.service.hosts: a delegate (delegation: true) has no hosts; the "
                "VirtualService that delegates to it names them",
                "spec.service.gateways: a delegate (delegation: true) has no gateways; the "
                "VirtualService that delegates to it names them",
            ],
            id="delegate-with-hosts",
        ),
        pytest.param(
            {"spec.service.match": [{"path": {"prefix": "/"}}]},
            [
                "spec.service.match[0].path: provider 'istio' cannot match on it (it matches "
                "authority, gateways, headers, ignoreUriCase, method, name, port, queryParams, "
                "scheme, sourceLabels, sourceNamespace, statPrefix, uri, withoutHeaders)"
            ],
            id="service-match-field",
        ),
        pytest.param(
            {
                "spec.service.appProtocol": "TCP",
                "spec.analysis.mirror": True,
                "spec.analysis.sessionAffinity": {"cookieName": "c"},
            },
            [
                "spec.analysis.mirror: a TCP service (spec.service.appProtocol) has no HTTP "
                "requests to match, mirror or keep sessions of",
                "spec.analysis.sessionAffinity: a TCP service (spec.service.appProtocol) has no "
                "HTTP requests to match, mirror or keep sessions of",
            ],
            id="tcp-mirror-sessions",
        ),
        pytest.param(
            {
                "spec.service.appProtocol": "tcp",
                "spec.analysis.iterations": 5,
                "spec.analysis.match": [{"headers": {"x-canary": {"exact": "1"}}}],
            },
            [
                "spec.analysis.match: a TCP service (spec.service.appProtocol) has no HTTP "
                "requests to match, mirror or keep sessions of"
            ],
            id="tcp-match",
        ),
    ],
)
def test_istio_routing_problems(edits: dict[str, Any], expected: list[str]) -> None:
    assert problems_of(edited(edits)) == expected


def test_a_service_port_name_is_a_dns_label() -> None:
    text = edited({"spec.service.portName": "tcp-service-port"})
    assert load(text).canary.spec.service.port_name == "tcp-service-port"
    assert problems_of(edited({"spec.service.portName": "p" * 64})) == [
        "spec.service.portName: must be at most 63 characters (got 64)"
    ]


# -- problems --------------------------------------------------------------------------------


def test_true_and_false_are_not_numbers() -> None:
    text = edited(
        {
            "spec.analysis.threshold": True,
            "spec.analysis.stepWeight": False,
            "spec.service.port": True,
            "spec.analysis.metrics[0].thresholdRange.min": True,
        }
    )
    assert sorted(problems_of(text)) == [
        "spec.analysis.metrics[0].thresholdRange.min: must be a number, not true or false",
        "spec.analysis.stepWeight: must be a number, not true or false",
        "spec.analysis.threshold: must be a number, not true or false",
        "spec.service.port: must be a number, not true or false",
    ]
    weights = edited({"spec.analysis.stepWeight": DELETE, "spec.analysis.stepWeights": [5, True]})
    assert problems_of(weights) == ["spec.analysis.stepWeights: must be numbers, not true or false"]


def test_unparsable_yaml_names_the_line() -> None:
    text = (
        "apiVersion: flagger.app/v1beta1\nkind: Canary\nmetadata:\n  name: podinfo\n namespace: x\n"
    )
    problems = problems_of(text)
    assert len(problems) == 1
    assert problems[0].startswith(f"{SOURCE}:5: invalid YAML: ")


def test_unparsable_yaml_in_a_long_file_names_the_right_line() -> None:
    lines = read("podinfo.yaml").splitlines()
    broken = next(i for i, line in enumerate(lines) if "maxWeight" in line)
    lines[broken] = lines[broken].replace("maxWeight: 50", "maxWeight: [50")
    problems = problems_of("\n".join(lines) + "\n")
    assert len(problems) == 1
    line = int(problems[0].split(":")[1])
    assert broken + 1 <= line <= broken + 2  # PyYAML notices at the bracket or the next line
    assert "invalid YAML" in problems[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", f"{SOURCE}: empty file, expected a Canary (flagger.app/v1beta1)"),
        (
            "# just a comment\n---\n",
            f"{SOURCE}: empty file, expected a Canary (flagger.app/v1beta1)",
        ),
        ("- a\n- b\n", f"{SOURCE}: expected a Canary mapping, got list"),
        ("just words\n", f"{SOURCE}: expected a Canary mapping, got str"),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: podinfo\n",
            f"{SOURCE}: expected exactly one Canary, found 0 (besides 'Deployment' 'podinfo')",
        ),
        (
            "apiVersion: flagger.app/v1beta1\nkind: MetricTemplate\nmetadata:\n  name: t\n",
            f"{SOURCE}: expected exactly one Canary, found 0",
        ),
        (
            read("podinfo.yaml") + "---\n" + read("podinfo.yaml"),
            f"{SOURCE}: expected exactly one Canary, found 2",
        ),
    ],
)
def test_documents_that_are_not_one_canary(text: str, expected: str) -> None:
    assert problems_of(text) == [expected]


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        pytest.param(
            {"apiVersion": "flagger.app/v2"},
            ["apiVersion: expected flagger.app/v1beta1, got 'flagger.app/v2'"],
            id="apiVersion",
        ),
        pytest.param({"metadata": DELETE}, ["metadata: is required"], id="no-metadata"),
        pytest.param(
            {"spec.targetRef": DELETE}, ["spec.targetRef: is required"], id="no-targetRef"
        ),
        pytest.param(
            {"spec.targetRef.name": DELETE},
            ["spec.targetRef.name: is required"],
            id="no-targetRef-name",
        ),
        pytest.param(
            {"spec.targetRef.name": ""},
            ["spec.targetRef.name: must not be empty"],
            id="empty-targetRef-name",
        ),
        pytest.param(
            {"spec.targetRef.kind": "StatefulSet"},
            [
                "spec.targetRef.kind: unsupported kind 'StatefulSet' "
                "(supported: Deployment, LocalProcess)"
            ],
            id="targetRef-kind",
        ),
        pytest.param(
            {"spec.autoscalerRef.kind": "ScaledObject"},
            [
                "spec.autoscalerRef.kind: unsupported kind 'ScaledObject' "
                "(supported: HorizontalPodAutoscaler)"
            ],
            id="autoscalerRef-kind",
        ),
        pytest.param(
            {"spec.analysis.interval": "1x"},
            ["spec.analysis.interval: invalid duration '1x' (expected e.g. 30s, 1m, 1m30s, 1h)"],
            id="analysis-interval",
        ),
        pytest.param(
            {"spec.analysis.interval": 10},
            ["spec.analysis.interval: must be a duration with a unit, such as 10s or 10m"],
            id="analysis-interval-number",
        ),
        pytest.param(
            {"spec.analysis.interval": "0s"},
            ["spec.analysis.interval: must be longer than 0s"],
            id="analysis-interval-zero",
        ),
        pytest.param(
            {"spec.analysis.metrics[1].interval": "30 s"},
            [
                "spec.analysis.metrics[1].interval: invalid duration '30 s' "
                "(expected e.g. 30s, 1m, 1m30s, 1h)"
            ],
            id="metric-interval",
        ),
        pytest.param(
            {"spec.analysis.webhooks[2].timeout": "-5s"},
            [
                "spec.analysis.webhooks[2].timeout: invalid duration '-5s' "
                "(expected e.g. 30s, 1m, 1m30s, 1h)"
            ],
            id="webhook-timeout",
        ),
        pytest.param(
            {"spec.analysis.maxWeight": 120},
            ["spec.analysis.maxWeight: must be between 1 and 100 (got 120)"],
            id="maxWeight-120",
        ),
        pytest.param(
            {"spec.analysis.stepWeight": 0},
            ["spec.analysis.stepWeight: must be between 1 and 100 (got 0)"],
            id="stepWeight-0",
        ),
        pytest.param(
            {
                "spec.analysis.stepWeight": DELETE,
                "spec.analysis.metrics": [],
                "spec.analysis.maxWeight": DELETE,
                "spec.analysis.stepWeights": [10, 200],
            },
            ["spec.analysis.stepWeights[1]: must be between 1 and 100 (got 200)"],
            id="stepWeights-200",
        ),
        pytest.param(
            {
                "spec.analysis.stepWeight": DELETE,
                "spec.analysis.metrics": [],
                "spec.analysis.stepWeights": [10, 30, 20],
            },
            ["spec.analysis.stepWeights: must be strictly increasing"],
            id="stepWeights-order",
        ),
        pytest.param(
            {"spec.analysis.stepWeightPromotion": 0},
            ["spec.analysis.stepWeightPromotion: must be between 1 and 100 (got 0)"],
            id="stepWeightPromotion-0",
        ),
        pytest.param(
            {"spec.analysis.stepWeightPromotion": 101},
            ["spec.analysis.stepWeightPromotion: must be between 1 and 100 (got 101)"],
            id="stepWeightPromotion-101",
        ),
        pytest.param(
            {"spec.analysis.stepWeightPromotion": "half"},
            [
                "spec.analysis.stepWeightPromotion: must be a valid integer, "
                "unable to parse string as an integer"
            ],
            id="stepWeightPromotion-text",
        ),
        pytest.param(
            {
                "spec.analysis.stepWeight": DELETE,
                "spec.analysis.metrics": [],
                "spec.analysis.maxWeight": DELETE,
                "spec.analysis.iterations": 5,
                "spec.analysis.stepWeightPromotion": 20,
            },
            [
                "spec.analysis.stepWeightPromotion: only for the canary strategy (stepWeight or "
                "stepWeights); with iterations the switch to the primary is at once"
            ],
            id="stepWeightPromotion-blue-green",
        ),
        pytest.param(
            {"spec.analysis.stepWeight": 60},
            ["spec.analysis.stepWeight: must not exceed maxWeight (60 > 50)"],
            id="stepWeight-over-max",
        ),
        pytest.param(
            {"spec.analysis.metrics[0].thresholdRange": {"min": 99, "max": 50}},
            ["spec.analysis.metrics[0].thresholdRange: min must not exceed max (99 > 50)"],
            id="thresholdRange-min-over-max",
        ),
        pytest.param(
            {"spec.analysis.threshold": -1},
            ["spec.analysis.threshold: must not be negative (got -1)"],
            id="threshold-negative",
        ),
        pytest.param(
            {"spec.analysis.metrics[1]": {"name": "error-rate", "thresholdRange": {"max": 1}}},
            [
                "spec.analysis.metrics[1]: 'error-rate' is neither a built-in metric "
                "(request-success-rate, request-duration) nor has a query or templateRef"
            ],
            id="metric-without-query",
        ),
        pytest.param(
            {"spec.analysis.webhooks[3].type": "pre-flight"},
            [
                "spec.analysis.webhooks[3].type: unknown value 'pre-flight' (expected one of "
                "'confirm-rollout', 'pre-rollout', 'rollout', 'confirm-traffic-increase', "
                "'confirm-promotion', 'post-rollout', 'rollback' or 'event')"
            ],
            id="webhook-type",
        ),
        pytest.param(
            {"spec.analysis.webhooks[0].url": "ftp://flagger-loadtester.test/"},
            [
                "spec.analysis.webhooks[0].url: must be an http(s) URL "
                "(got 'ftp://flagger-loadtester.test/')"
            ],
            id="webhook-url-scheme",
        ),
        pytest.param(
            {"spec.analysis.webhooks[4].url": "flagger-loadtester.test/gate"},
            [
                "spec.analysis.webhooks[4].url: must be an http(s) URL "
                "(got 'flagger-loadtester.test/gate')"
            ],
            id="webhook-url-no-scheme",
        ),
        pytest.param(
            {"spec.analysis.webhooks[6].url": "https://x/\x1b[2J"},
            ["spec.analysis.webhooks[6].url: must be an http(s) URL (got 'https://x/\\x1b[2J')"],
            id="webhook-url-escape",
        ),
        pytest.param(
            {"spec.analysis.webhooks[6].url": "https:///done"},
            ["spec.analysis.webhooks[6].url: must be an http(s) URL (got 'https:///done')"],
            id="webhook-url-no-host",
        ),
        pytest.param(
            {"spec.provider": "foo"},
            [
                "spec.provider: unknown provider 'foo' (supported: istio, traefik, kubernetes, "
                "gatewayapi:v1, gatewayapi:v1beta1)"
            ],
            id="provider-unknown",
        ),
        pytest.param(
            {"spec.provider": "linkerd"},
            [
                "spec.provider: provider 'linkerd' is not supported by coalmine yet "
                "(supported: istio, traefik, kubernetes, "
                "gatewayapi:v1, gatewayapi:v1beta1)"
            ],
            id="provider-flagger-only",
        ),
        pytest.param(
            {"spec.service.port": 0},
            ["spec.service.port: must be greater than 0"],
            id="service-port",
        ),
        pytest.param(
            {"spec.analysis.stepWeight": DELETE},
            ["spec.analysis: needs stepWeight (with maxWeight), stepWeights or iterations"],
            id="no-steps",
        ),
        pytest.param(
            {"spec.analysis.iterations": 0},
            ["spec.analysis.iterations: must be at least 1 (got 0)"],
            id="iterations-zero",
        ),
        pytest.param(
            {"spec.analysis.match": [{"headers": {"x-canary": {"exact": "insider"}}}]},
            ["spec.analysis.iterations: required with match (A/B testing)"],
            id="match-without-iterations",
        ),
    ],
)
def test_one_problem_naming_the_field(edits: dict[str, Any], expected: list[str]) -> None:
    assert problems_of(edited(edits)) == expected


def test_several_spec_problems_are_reported_together() -> None:
    text = edited(
        {
            "spec.provider": "foo",
            "spec.targetRef.kind": "StatefulSet",
            "spec.analysis.maxWeight": 120,
            "spec.analysis.metrics[0].thresholdRange": {"min": 99, "max": 50},
            "spec.analysis.webhooks[1].url": "ftp://x/",
        }
    )
    assert problems_of(text) == [
        "spec.provider: unknown provider 'foo' (supported: istio, traefik, kubernetes, "
        "gatewayapi:v1, gatewayapi:v1beta1)",
        "spec.targetRef.kind: unsupported kind 'StatefulSet' (supported: Deployment, LocalProcess)",
        "spec.analysis.maxWeight: must be between 1 and 100 (got 120)",
        "spec.analysis.metrics[0].thresholdRange: min must not exceed max (99 > 50)",
        "spec.analysis.webhooks[1].url: must be an http(s) URL (got 'ftp://x/')",
    ]


def test_several_field_problems_are_reported_together() -> None:
    text = edited(
        {
            "spec.targetRef.name": DELETE,
            "spec.analysis.interval": "1x",
            "spec.analysis.metrics[1].interval": "abc",
            "spec.analysis.webhooks[3].type": "later",
        }
    )
    problems = problems_of(text)
    assert len(problems) == 4
    assert [problem.split(":")[0] for problem in problems] == [
        "spec.targetRef.name",
        "spec.analysis.interval",
        "spec.analysis.metrics[1].interval",
        "spec.analysis.webhooks[3].type",
    ]


# -- strategies ------------------------------------------------------------------------------

CANARY_STEPS = {"spec.analysis.stepWeight": 20, "spec.analysis.maxWeight": 50}
KUBERNETES = {"spec.provider": "kubernetes", "spec.analysis.metrics": []}
"""No router, so no built-in metrics either."""
NO_WEIGHTS = {"spec.analysis.stepWeight": DELETE, "spec.analysis.maxWeight": DELETE}
MATCH = [{"headers": {"x-canary": {"exact": "insider"}}}]


@pytest.mark.parametrize(
    ("edits", "strategy", "weights"),
    [
        pytest.param(CANARY_STEPS, Strategy.CANARY, [20, 40, 50], id="canary"),
        pytest.param(
            {"spec.analysis.stepWeight": 25, "spec.analysis.maxWeight": DELETE},
            Strategy.CANARY,
            [25, 50, 75, 100],
            id="canary-default-max",
        ),
        pytest.param(
            {**NO_WEIGHTS, "spec.analysis.stepWeights": [5, 10, 50]},
            Strategy.CANARY,
            [5, 10, 50],
            id="canary-stepWeights",
        ),
        pytest.param(
            {**NO_WEIGHTS, "spec.analysis.iterations": 10, "spec.analysis.match": MATCH},
            Strategy.AB_TESTING,
            None,
            id="ab-testing",
        ),
        pytest.param(
            {**NO_WEIGHTS, "spec.analysis.iterations": 10},
            Strategy.BLUE_GREEN,
            None,
            id="blue-green",
        ),
        pytest.param(
            {**NO_WEIGHTS, "spec.analysis.iterations": 10, "spec.analysis.mirror": True},
            Strategy.BLUE_GREEN_MIRROR,
            None,
            id="blue-green-mirror",
        ),
        pytest.param(
            {**NO_WEIGHTS, **KUBERNETES, "spec.analysis.iterations": 5},
            Strategy.BLUE_GREEN,
            None,
            id="kubernetes-blue-green",
        ),
    ],
)
def test_strategy(edits: dict[str, Any], strategy: Strategy, weights: list[int] | None) -> None:
    canary: Canary = load(edited(edits)).canary
    assert canary.spec.analysis.strategy == strategy
    if weights is not None:
        assert canary.spec.analysis.weights == weights


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        pytest.param(
            KUBERNETES,
            "spec.analysis.stepWeight: provider 'kubernetes' has no traffic router; "
            "use iterations (blue/green)",
            id="stepWeight",
        ),
        pytest.param(
            {**NO_WEIGHTS, **KUBERNETES, "spec.analysis.stepWeights": [10, 50]},
            "spec.analysis.stepWeights: provider 'kubernetes' has no traffic router; "
            "use iterations (blue/green)",
            id="stepWeights",
        ),
        pytest.param(
            {
                **NO_WEIGHTS,
                **KUBERNETES,
                "spec.analysis.iterations": 5,
                "spec.analysis.mirror": True,
            },
            "spec.analysis.mirror: provider 'kubernetes' cannot match or mirror traffic",
            id="mirror",
        ),
        pytest.param(
            {
                **NO_WEIGHTS,
                **KUBERNETES,
                "spec.analysis.iterations": 5,
                "spec.analysis.match": MATCH,
            },
            "spec.analysis.match: provider 'kubernetes' cannot match or mirror traffic",
            id="match",
        ),
    ],
)
def test_kubernetes_provider_refuses_traffic_shaping(edits: dict[str, Any], expected: str) -> None:
    assert problems_of(edited(edits)) == [expected]


# -- the embedded platform (LocalProcess + traefik) -------------------------------------------


def demo_doc() -> dict[str, Any]:
    path = Path(__file__).resolve().parents[2] / "demo" / "podinfo-local.yaml"
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def test_the_demo_spec_loads() -> None:
    canary = load(yaml.safe_dump(demo_doc())).canary
    assert canary.spec.provider == "traefik"
    assert canary.spec.target_ref.kind == "LocalProcess"
    assert canary.spec.local is not None
    assert canary.spec.local.image == "v1"
    assert canary.spec.traefik is not None
    assert canary.spec.analysis.weights == [20, 40, 60]


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        (
            {"spec.local": DELETE},
            ["spec.local: required when spec.targetRef.kind is LocalProcess"],
        ),
        (
            {"spec.traefik": DELETE},
            ["spec.traefik: required when provider traefik routes a LocalProcess"],
        ),
        (
            {"spec.provider": "istio", "spec.traefik": DELETE},
            ["spec.provider: a LocalProcess target needs provider traefik (got 'istio')"],
        ),
        (
            {"spec.local.canaryPort": 18081},
            ["spec.local.canaryPort: must differ from primaryPort"],
        ),
        (
            {"spec.local.command": ""},
            ["spec.local.command: must not be empty"],
        ),
        (
            {"spec.targetRef.kind": "Deployment"},
            [
                "spec.local: only for spec.targetRef.kind LocalProcess (got 'Deployment')",
                "spec.traefik: only for a LocalProcess target (provider traefik writes a "
                "TraefikService for a Deployment)",
            ],
        ),
    ],
    ids=[
        "no-local",
        "no-traefik",
        "local-without-traefik",
        "same-ports",
        "empty-command",
        "traefik-for-deployment",
    ],
)
def test_half_configured_local_platform_is_refused(
    edits: dict[str, Any], expected: list[str]
) -> None:
    assert problems_of(edited(edits, demo_doc())) == expected


# -- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        pytest.param(
            {"metadata.namespace": "Test"},
            "metadata.namespace: must be a Kubernetes name: lower-case letters, digits and '-', "
            "starting and ending with a letter or digit (got 'Test')",
            id="namespace-upper-case",
        ),
        pytest.param(
            {"metadata.name": "pod.info"},
            "metadata.name: must be a Kubernetes name: lower-case letters, digits and '-', "
            "starting and ending with a letter or digit (got 'pod.info')",
            id="name-with-dot",
        ),
        pytest.param(
            {"spec.targetRef.name": "1podinfo"},
            "spec.targetRef.name: must be a Kubernetes name: lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, starting with a letter (got '1podinfo')",
            id="target-names-the-services",
        ),
        pytest.param(
            {"spec.service.name": "p" * 56},
            "spec.service.name: must be at most 55 characters so that '<name>-primary' fits in 63 "
            "(got 56)",
            id="service-name-56",
        ),
        pytest.param(
            {"spec.service.portName": "HTTP"},
            "spec.service.portName: must be an IANA service name: lower-case letters, digits and "
            "'-', starting and ending with a letter or digit, with a letter and no '--' "
            "(got 'HTTP')",
            id="portName-upper-case",
        ),
        pytest.param(
            {"spec.service.targetPort": "http-metrics-port"},
            "spec.service.targetPort: must be at most 15 characters (got 17)",
            id="targetPort-name-16-plus",
        ),
        pytest.param(
            {"spec.service.targetPort": 70000},
            "spec.service.targetPort: must be a port number between 1 and 65535 or a port name "
            "(got 70000)",
            id="targetPort-number",
        ),
        pytest.param(
            {"spec.autoscalerRef.name": "podinfo_hpa"},
            "spec.autoscalerRef.name: must be a Kubernetes name: lower-case letters, digits and "
            "'-', starting and ending with a letter or digit (got 'podinfo_hpa')",
            id="autoscaler-name",
        ),
        pytest.param(
            {"spec.analysis.webhooks[0].name": "gate\x1b]0;owned\x07"},
            "spec.analysis.webhooks[0].name: must not contain control characters "
            "(such as terminal escapes)",
            id="webhook-name-escape",
        ),
    ],
)
def test_names_are_kubernetes_names(edits: dict[str, Any], expected: str) -> None:
    assert problems_of(edited(edits)) == [expected]


def test_valid_derived_names_load() -> None:
    text = edited(
        {
            "spec.targetRef.name": "1" + "p" * 54,
            "spec.service.name": "s" * 55,
            "spec.service.portName": "grpc-web",
            "spec.service.targetPort": "http",
        }
    )
    service = load(text).canary.spec.service
    assert (service.name, service.port_name, service.target_port) == ("s" * 55, "grpc-web", "http")


def test_workflow_ids_of_different_targets_differ() -> None:
    first = load(edited({"metadata.namespace": "a", "metadata.name": "b-c"})).canary
    second = load(edited({"metadata.namespace": "a-b", "metadata.name": "c"})).canary
    assert first.workflow_id == "canary-a.b-c"
    assert second.workflow_id == "canary-a-b.c"


def test_unknown_field_names_are_shown_escaped() -> None:
    result = load(edited({"spec.\x1b[31mred": 1}))
    assert result.warnings == ["spec.'\\x1b[31mred': unknown field, ignored"]


# -- bounds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        pytest.param(
            {"spec.analysis.interval": "25h"},
            "spec.analysis.interval: must be at most 24h",
            id="interval",
        ),
        pytest.param(
            {"spec.analysis.metrics[0].interval": "1441m"},
            "spec.analysis.metrics[0].interval: must be at most 24h",
            id="metric-interval",
        ),
        pytest.param(
            {"spec.analysis.webhooks[1].timeout": "61m"},
            "spec.analysis.webhooks[1].timeout: must be at most 1h",
            id="webhook-timeout",
        ),
        pytest.param(
            {"spec.progressDeadlineSeconds": 604801},
            "spec.progressDeadlineSeconds: must be less than or equal to 604800",
            id="progress-deadline",
        ),
        pytest.param(
            {"spec.analysis.canaryReadyThreshold": 0},
            "spec.analysis.canaryReadyThreshold: must be greater than or equal to 1",
            id="canary-ready-threshold",
        ),
        pytest.param(
            {"spec.analysis.primaryReadyThreshold": 101},
            "spec.analysis.primaryReadyThreshold: must be less than or equal to 100",
            id="primary-ready-threshold",
        ),
        pytest.param(
            {"spec.analysis.metrics[0].thresholdRange.min": float("nan")},
            "spec.analysis.metrics[0].thresholdRange.min: must be a finite number",
            id="nan",
        ),
        pytest.param(
            {"spec.analysis.metrics[1].thresholdRange.max": float("-inf")},
            "spec.analysis.metrics[1].thresholdRange.max: must be a finite number",
            id="infinite",
        ),
    ],
)
def test_durations_and_thresholds_are_bounded(edits: dict[str, Any], expected: str) -> None:
    assert problems_of(edited(edits)) == [expected]


def test_longest_durations_load() -> None:
    text = edited(
        {
            "spec.analysis.interval": "24h",
            "spec.analysis.webhooks[1].timeout": "1h",
            "spec.progressDeadlineSeconds": 604800,
        }
    )
    canary = load(text).canary
    assert canary.spec.analysis.interval == 24 * 3600.0
    assert canary.spec.progress_deadline_seconds == 604800


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "a: &a [1, *a]\n",
            f"{SOURCE}:1: alias *a refers to its own anchor",
            id="recursive-alias",
        ),
        pytest.param(
            "spec:\n  analysis:\n    threshold: 1\n  analysis: {}\n",
            f"{SOURCE}:4: invalid YAML: duplicate key 'analysis'",
            id="duplicate-nested-key",
        ),
        pytest.param(
            "a: " + "[" * 65 + "]" * 65 + "\n",
            f"{SOURCE}:1: nested more than 64 levels deep",
            id="depth-65",
        ),
        pytest.param(
            "a: [" + ", ".join(["1"] * 10_001) + "]\n",
            f"{SOURCE}:1: more than 10000 values",
            id="too-many-values",
        ),
        pytest.param(
            "a: 0x" + "f" * 17 + "\n",
            f"{SOURCE}:1: invalid YAML: integer beyond the 64-bit range",
            id="hex-integer",
        ),
        pytest.param(
            "a: 1\nb: !!binary gICA\n",
            f"{SOURCE}:2: invalid YAML: binary values (!!binary) have no place in a spec",
            id="binary",
        ),
    ],
)
def test_yaml_bounds(text: str, expected: str) -> None:
    assert problems_of(text) == [expected]


def test_anchors_and_merge_keys_still_work() -> None:
    text = read("podinfo.yaml").replace(
        "      - name: request-duration\n        thresholdRange:\n          max: 500\n",
        "      - &duration\n        name: request-duration\n        thresholdRange:\n"
        "          max: 500\n        interval: 30s\n"
        "      - <<: *duration\n        name: latency\n        query: sum(x)\n",
    )
    metrics = load(text).canary.spec.analysis.metrics
    assert [(m.name, m.threshold_range.max if m.threshold_range else None) for m in metrics] == [
        ("request-success-rate", None),
        ("request-duration", 500.0),
        ("latency", 500.0),
    ]


# -- Flagger's loader semantics ----------------------------------------------------------------


def test_threshold_omitted_is_1_as_in_flagger() -> None:
    result = load(edited({"spec.analysis.threshold": DELETE}))
    assert result.canary.spec.analysis.threshold == 1
    assert result.warnings == []


@pytest.mark.parametrize("zero", [0, 0.0])
def test_threshold_0_is_1_with_a_warning(zero: float) -> None:
    result = load(edited({"spec.analysis.threshold": zero}))
    assert result.canary.spec.analysis.threshold == 1
    assert result.warnings == ["spec.analysis.threshold: 0 read as 1, as Flagger reads it"]


def test_lists_and_mappings_written_without_a_value_are_empty() -> None:
    text = edited(
        {
            "metadata.labels": None,
            "spec.service.gateways": None,
            "spec.service.hosts": None,
            "spec.analysis.webhooks": None,
            "spec.analysis.alerts": None,
            "spec.analysis.match": None,
            "spec.analysis.metrics": [
                {"name": "errors", "query": "sum(x)", "templateVariables": None}
            ],
        }
    )
    assert "webhooks: null" in text
    result = load(text)
    canary = result.canary
    assert canary.metadata.labels == {}
    assert (canary.spec.service.gateways, canary.spec.service.hosts) == ([], [])
    analysis = canary.spec.analysis
    assert (analysis.webhooks, analysis.alerts, analysis.match) == ([], [], [])
    assert analysis.metrics[0].template_variables == {}
    assert result.warnings == []


def test_null_metrics_read_as_empty() -> None:
    analysis = load(edited({"spec.analysis.metrics": None})).canary.spec.analysis
    assert analysis.metrics == []


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        pytest.param({}, [None, None], id="worker-default"),
        pytest.param(
            {"spec.metricsServer": "http://spec:9090"},
            ["http://spec:9090", "http://spec:9090"],
            id="spec",
        ),
        pytest.param(
            {
                "spec.metricsServer": "http://spec:9090",
                "spec.analysis.metricsServer": "http://analysis:9090",
            },
            ["http://analysis:9090", "http://analysis:9090"],
            id="analysis-wins",
        ),
    ],
)
def test_metrics_server_of_each_metric(edits: dict[str, Any], expected: list[str | None]) -> None:
    canary = load(edited(edits)).canary
    assert [
        canary.metrics_server_for(metric) for metric in canary.spec.analysis.metrics
    ] == expected


def test_a_metric_template_address_wins_over_spec_metrics_server() -> None:
    docs = list(yaml.safe_load_all(read("podinfo-metric-template.yaml")))
    docs[1]["spec"]["metricsServer"] = "http://spec:9090"
    canary = load(yaml.safe_dump_all(docs)).canary
    servers = [canary.metrics_server_for(metric) for metric in canary.spec.analysis.metrics]
    assert servers == ["http://spec:9090", "http://prometheus.istio-system:9090"]


QUERY_WITH_EVERY_PLACEHOLDER = (
    'sum(rate(x{a="{{ name }}", b="{{ namespace }}", c="{{ target }}", d="{{ service }}",'
    ' e="{{ ingress }}", f="{{route}}", g="{{ variables.code }}"}[{{ interval }}]))'
)


def test_every_flagger_placeholder_is_accepted_with_flagger_values() -> None:
    text = edited(
        {
            "spec.ingressRef": {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "name": "web",
            },
            "spec.analysis.metrics[1]": {
                "name": "custom",
                "query": QUERY_WITH_EVERY_PLACEHOLDER,
                "templateVariables": {"code": "503"},
            },
        }
    )
    result = load(text)
    assert result.warnings == []
    assert result.canary.query_values() == {
        "name": "podinfo",
        "namespace": "test",
        "target": "podinfo",
        "service": "podinfo",
        "ingress": "web",
        "route": "podinfo",
    }


def test_route_ref_names_the_route() -> None:
    canary = load(edited({"spec.routeRef": {"name": "public"}})).canary
    assert canary.query_values()["route"] == "public"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(
            'sum(x{a="{{ pod }}"})',
            "spec.analysis.metrics[1]: the query of 'custom' has an unknown placeholder "
            "'{{ pod }}' (known: name, namespace, target, service, ingress, route, interval and "
            "variables.NAME)",
            id="unknown",
        ),
        pytest.param(
            'sum(x{a="{{ variables.direction }}"})',
            "spec.analysis.metrics[1]: the query of 'custom' has an unknown placeholder "
            "'{{ variables.direction }}' (templateVariables has no 'direction')",
            id="missing-variable",
        ),
        pytest.param(
            'sum(x{a="{{\n  pod }}"})',
            "spec.analysis.metrics[1]: the query of 'custom' has an unknown placeholder "
            "'{{\\n  pod }}' (known: name, namespace, target, service, ingress, route, interval "
            "and variables.NAME)",
            id="across-lines",
        ),
        pytest.param(
            'sum(x{a="{{ .Target }}"})',
            "spec.analysis.metrics[1]: the query of 'custom' has an unknown placeholder "
            "'{{ .Target }}' (known: name, namespace, target, service, ingress, route, interval "
            "and variables.NAME)",
            id="go-field",
        ),
    ],
)
def test_an_unknown_placeholder_is_refused_naming_metric_and_placeholder(
    query: str, expected: str
) -> None:
    metric = {"name": "custom", "query": query, "templateVariables": {"code": "1"}}
    assert problems_of(edited({"spec.analysis.metrics[1]": metric})) == [expected]


def test_an_unknown_placeholder_in_a_metric_template_is_refused() -> None:
    docs = list(yaml.safe_load_all(read("podinfo-metric-template.yaml")))
    docs[0]["spec"]["query"] = 'sum(x{a="{{ workload }}"})'
    assert problems_of(yaml.safe_dump_all(docs)) == [
        "spec.analysis.metrics[1]: the query of '404s percentage' has an unknown placeholder "
        "'{{ workload }}' (known: name, namespace, target, service, ingress, route, interval and "
        "variables.NAME)"
    ]


def test_other_kinds_in_the_file_are_ignored_with_one_warning() -> None:
    alert_provider = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "AlertProvider",
        "metadata": {"name": "on-call", "namespace": "test"},
        "spec": {"type": "slack", "channel": "alerts"},
    }
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "podinfo"}}
    docs = list(yaml.safe_load_all(read("podinfo-metric-template.yaml")))
    text = yaml.safe_dump_all([alert_provider, *docs, deployment])
    result = load(text)
    assert result.warnings == [
        f"{SOURCE}: ignored what is neither a Canary nor a MetricTemplate: "
        "'AlertProvider' 'on-call', 'Deployment' 'podinfo'"
    ]
    assert result.canary.spec.analysis.metrics[1].query == docs[0]["spec"]["query"]


@pytest.mark.parametrize("provider", ["linkerd", "contour:v2", "knative", "nginx"])
def test_a_flagger_provider_coalmine_lacks_is_named_before_field_errors(provider: str) -> None:
    problems = problems_of(edited({"spec.provider": provider, "spec.service.port": DELETE}))
    assert problems == [
        f"spec.provider: provider '{provider}' is not supported by coalmine yet "
        "(supported: istio, traefik, kubernetes, "
        "gatewayapi:v1, gatewayapi:v1beta1)",
        "spec.service.port: is required",
    ]


@pytest.mark.parametrize("metric", ["request-success-rate", "request-duration"])
def test_a_builtin_metric_without_router_is_refused_naming_it(metric: str) -> None:
    text = edited(
        {
            **NO_WEIGHTS,
            "spec.provider": "kubernetes",
            "spec.analysis.iterations": 5,
            "spec.analysis.metrics": [{"name": metric, "thresholdRange": {"min": 1}}],
        }
    )
    assert problems_of(text) == [
        f"spec.analysis.metrics[0]: built-in metric '{metric}' has no query for provider "
        "'kubernetes' (it routes no traffic to measure); give the metric a query or templateRef"
    ]


def test_a_custom_metric_with_provider_kubernetes_loads() -> None:
    text = edited(
        {
            **NO_WEIGHTS,
            "spec.provider": "kubernetes",
            "spec.analysis.iterations": 5,
            "spec.analysis.metrics": [{"name": "errors", "query": 'sum(x{ns="{{ namespace }}"})'}],
        }
    )
    assert load(text).canary.spec.analysis.metrics[0].query is not None


# -- what the router can do (canary.providers) -------------------------------------------------


AB_TESTING = {**NO_WEIGHTS, "spec.analysis.iterations": 5}


@pytest.mark.parametrize(
    ("doc", "match", "expected"),
    [
        pytest.param(
            "demo",
            [{"sourceLabels": {"app": "frontend"}}],
            "spec.analysis.match[0].sourceLabels: provider 'traefik' cannot match on it "
            "(it matches headers, method, queryParams, uri)",
            id="traefik-sourceLabels",
        ),
        pytest.param(
            "demo",
            [{"uri": {"suffix": ".html"}}],
            "spec.analysis.match[0].uri: provider 'traefik' takes one of exact, prefix, regex here",
            id="traefik-uri-suffix",
        ),
        pytest.param(
            "demo",
            [{"method": {"exact": "GET"}, "headers": {"x-canary": "yes"}}],
            "spec.analysis.match[0].headers.x-canary: provider 'traefik' takes one of exact, "
            "prefix, regex, suffix here",
            id="traefik-header-without-kind",
        ),
        pytest.param(
            "podinfo",
            [{"headers": {"x-canary": {"exact": "1"}}}, {"cookies": {"exact": "canary"}}],
            "spec.analysis.match[1].cookies: provider 'istio' cannot match on it (it matches "
            + ", ".join(sorted(providers.ISTIO_MATCH_FIELDS))
            + ")",
            id="istio-unknown-field",
        ),
    ],
)
def test_a_match_the_router_cannot_apply_is_refused(
    doc: str, match: list[dict[str, Any]], expected: str
) -> None:
    base = demo_doc() if doc == "demo" else podinfo_doc()
    edits = {**AB_TESTING, "spec.analysis.match": match}
    assert problems_of(edited(edits, base)) == [expected]


@pytest.mark.parametrize("doc", ["demo", "podinfo"])
def test_header_cookie_and_query_matches_load_on_routers_that_apply_them(doc: str) -> None:
    match = [
        {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
        {"queryParams": {"canary": {"exact": "yes"}}},
    ]
    base = demo_doc() if doc == "demo" else podinfo_doc()
    canary = load(edited({**AB_TESTING, "spec.analysis.match": match}, base)).canary
    assert canary.spec.analysis.strategy == Strategy.AB_TESTING
    assert canary.spec.analysis.match == match


def test_a_canary_without_provider_gets_the_default_provider() -> None:
    text = edited({"spec.provider": DELETE})
    assert load(text).canary.spec.provider == "istio"
    assert load(text).default_provider
    assert not load(edited({})).default_provider

    blue_green = edited({"spec.provider": DELETE, **AB_TESTING, "spec.analysis.metrics": []})
    loaded = loader.load_canary(blue_green, SOURCE, default_provider="kubernetes")
    assert loaded.canary.spec.provider == "kubernetes"
    assert problems_of_default(edited({"spec.provider": DELETE}), "kubernetes") == [
        "spec.analysis.stepWeight: provider 'kubernetes' has no traffic router; "
        "use iterations (blue/green)",
        "spec.analysis.metrics[0]: built-in metric 'request-success-rate' has no query for "
        "provider 'kubernetes' (it routes no traffic to measure); give the metric a query "
        "or templateRef",
        "spec.analysis.metrics[1]: built-in metric 'request-duration' has no query for "
        "provider 'kubernetes' (it routes no traffic to measure); give the metric a query "
        "or templateRef",
    ]


def problems_of_default(text: str, default_provider: str) -> list[str]:
    with pytest.raises(loader.SpecError) as raised:
        loader.load_canary(text, SOURCE, default_provider=default_provider)
    return raised.value.problems


def test_a_metric_template_names_its_metrics_provider() -> None:
    canary = load(read("podinfo-metric-template.yaml")).canary
    from_template = [m for m in canary.spec.analysis.metrics if m.template_ref is not None]
    assert from_template
    assert {metric.metrics_provider for metric in from_template} == {"prometheus"}


def test_an_unknown_metrics_provider_written_on_a_metric_is_refused() -> None:
    problems = problems_of(edited({"spec.analysis.metrics[0].metricsProvider": "foo"}))
    assert problems == [
        "spec.analysis.metrics[0].metricsProvider: unknown metrics provider 'foo' "
        "(supported: prometheus, datadog, newrelic, graphite)"
    ]


def test_a_metrics_provider_written_on_a_metric_needs_what_its_template_would() -> None:
    metric = {"name": "errors", "query": "sum:errors{*}", "metricsProvider": "datadog"}
    problems = problems_of(edited({"spec.analysis.metrics": [metric]}))
    assert problems == [
        "spec.analysis.metrics[0].metricsSecretRef: required with provider 'datadog' "
        "(a Secret with datadog_api_key and datadog_application_key)"
    ]
    metric["metricsSecretRef"] = "datadog"
    [loaded] = load(edited({"spec.analysis.metrics": [metric]})).canary.spec.analysis.metrics
    assert (loaded.metrics_provider, loaded.metrics_secret_ref) == ("datadog", "datadog")


# -- Gateway API -----------------------------------------------------------------------------


def gatewayapi_doc() -> list[Any]:
    return list(yaml.safe_load_all(read("gatewayapi-podinfo.yaml")))


@pytest.mark.parametrize("provider", ["gatewayapi:v1", "gatewayapi:v1beta1"])
def test_flaggers_gatewayapi_tutorial_canary_loads_with_that_mesh_provider(provider: str) -> None:
    loaded = loader.load_canary(read("gatewayapi-podinfo.yaml"), SOURCE, provider)
    canary = loaded.canary
    assert loaded.warnings == []
    assert loaded.default_provider
    assert canary.spec.provider == provider
    refs = canary.spec.service.gateway_refs
    assert [(ref.name, ref.namespace) for ref in refs] == [("gateway", "istio-ingress")]
    assert canary.spec.service.hosts == ["www.example.com"]
    assert canary.spec.analysis.weights == [10, 20, 30, 40, 50]
    assert [metric.metrics_server for metric in canary.spec.analysis.metrics] == [
        "http://prometheus.istio-system:9090"
    ] * 2


def test_gatewayapi_needs_gateway_refs() -> None:
    docs = gatewayapi_doc()
    del docs[-1]["spec"]["service"]["gatewayRefs"]
    docs[-1]["spec"]["provider"] = "gatewayapi:v1"
    assert problems_of(yaml.safe_dump_all(docs)) == [
        "spec.service.gatewayRefs: required with provider 'gatewayapi:v1'"
    ]


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        (
            {"headers": {"x-canary": {"prefix": "in"}}},
            "spec.analysis.match[0].headers.x-canary: provider 'gatewayapi:v1' takes one of "
            "exact, regex here",
        ),
        (
            {"sourceLabels": {"app": "web"}},
            "spec.analysis.match[0].sourceLabels: provider 'gatewayapi:v1' cannot match on it "
            "(it matches headers, method, queryParams, uri)",
        ),
    ],
)
def test_gatewayapi_refuses_a_match_an_http_route_cannot_express(
    match: dict[str, Any], expected: str
) -> None:
    docs = gatewayapi_doc()
    analysis = docs[-1]["spec"]["analysis"]
    analysis.update(iterations=10, match=[match])
    del analysis["maxWeight"], analysis["stepWeight"]
    docs[-1]["spec"]["provider"] = "gatewayapi:v1"
    assert problems_of(yaml.safe_dump_all(docs)) == [expected]


def test_gatewayapi_has_the_builtin_metrics_of_flaggers_observer() -> None:
    text = edited(
        {
            "spec.provider": "gatewayapi:v1",
            "spec.service.gatewayRefs": [{"name": "gateway"}],
            "spec.analysis.webhooks": [],
        }
    )
    canary = load(text).canary
    assert [metric.name for metric in canary.spec.analysis.metrics] == [
        "request-success-rate",
        "request-duration",
    ]


@pytest.mark.parametrize("provider", ["gatewayapi", "gatewayapi:v2"])
def test_gatewayapi_needs_a_known_version(provider: str) -> None:
    problems = problems_of(edited({"spec.provider": provider}))
    assert problems[0].startswith(f"spec.provider: unknown provider '{provider}' (supported: ")


def gatewayapi_variant(name: str) -> str:
    """A Canary of Flagger's Gateway API tutorial with the tutorial's MetricTemplates."""
    templates = gatewayapi_doc()[:-1]
    return yaml.safe_dump_all([*templates, yaml.safe_load(read(name))])


@pytest.mark.parametrize("provider", ["gatewayapi:v1", "gatewayapi:v1beta1"])
def test_flaggers_gatewayapi_ab_testing_canary_loads(provider: str) -> None:
    loaded = loader.load_canary(gatewayapi_variant("gatewayapi-podinfo-ab.yaml"), SOURCE, provider)
    analysis = loaded.canary.spec.analysis
    assert loaded.warnings == []
    assert analysis.strategy == Strategy.AB_TESTING
    assert analysis.iterations == 10
    assert [list(match["headers"]) for match in analysis.match] == [["user-agent"], ["cookie"]]


def test_flaggers_gatewayapi_session_affinity_canary_loads() -> None:
    text = gatewayapi_variant("gatewayapi-podinfo-session-affinity.yaml")
    loaded = loader.load_canary(text, SOURCE, "gatewayapi:v1")
    affinity = loaded.canary.spec.analysis.session_affinity
    assert loaded.warnings == []
    assert affinity is not None
    assert (affinity.cookie_name, affinity.max_age) == ("flagger-cookie", 21600)
    assert loaded.canary.spec.analysis.weights == [10, 20, 30, 40, 50]


def test_flaggers_gatewayapi_mirroring_canary_loads_with_the_builtin_metrics() -> None:
    loaded = loader.load_canary(read("gatewayapi-podinfo-mirror.yaml"), SOURCE, "gatewayapi:v1")
    analysis = loaded.canary.spec.analysis
    assert loaded.warnings == []
    assert analysis.strategy == Strategy.BLUE_GREEN_MIRROR
    assert [metric.builtin for metric in analysis.metrics] == [True, True]


def gatewayapi_with(edits: dict[str, Any]) -> str:
    return edited(
        {
            "spec.provider": "gatewayapi:v1",
            "spec.service.gatewayRefs": [{"name": "gateway"}],
            "spec.service.gateways": DELETE,
            "spec.service.trafficPolicy": DELETE,
            "spec.analysis.webhooks": [],
            **edits,
        }
    )


def test_gatewayapi_applies_timeout_headers_match_rewrite_and_apex_but_not_retries() -> None:
    text = gatewayapi_with(
        {
            "spec.service.timeout": "30s",
            "spec.service.headers": {"request": {"set": {"x-canary": "yes"}}},
            "spec.service.match": [{"uri": {"prefix": "/api"}}],
            "spec.service.rewrite": {"uri": "/", "type": "ReplacePrefixMatch"},
            "spec.service.apex": {"labels": {"team": "web"}},
            "spec.service.retries": {"attempts": 3, "perTryTimeout": "1s"},
            "spec.service.corsPolicy": {"allowOrigin": ["https://example.com"]},
        }
    )
    assert load(text).warnings == [
        "spec.service.retries: provider 'gatewayapi:v1' does not apply it, ignored",
        "spec.service.corsPolicy: provider 'gatewayapi:v1' does not apply it, ignored",
    ]


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        (
            {"spec.service.headers": {"request": {"set": ["x-canary"]}}},
            "spec.service.headers.request.set: must map header names to string values",
        ),
        (
            {"spec.service.headers": {"request": {"remove": "x-debug"}}},
            "spec.service.headers.request.remove: must be a list of header names",
        ),
        (
            {"spec.service.headers": {"requests": {"set": {"a": "b"}}}},
            "spec.service.headers.requests: unknown, expected request or response",
        ),
        (
            {"spec.service.headers": {"response": {"append": {"a": "b"}}}},
            "spec.service.headers.response.append: unknown, expected one of set, add, remove",
        ),
        (
            {"spec.service.rewrite": {"uri": "/", "type": "ReplaceEverything"}},
            "spec.service.rewrite.type: unknown type 'ReplaceEverything' "
            "(expected one of ReplaceFullPath, ReplacePrefixMatch)",
        ),
        (
            {"spec.service.match": [{"sourceLabels": {"app": "web"}}]},
            "spec.service.match[0].sourceLabels: provider 'gatewayapi:v1' cannot match on it "
            "(it matches headers, method, queryParams, uri)",
        ),
        (
            {
                "spec.analysis.iterations": 5,
                "spec.analysis.stepWeight": DELETE,
                "spec.analysis.match": [{"headers": {"x-canary": {"exact": "yes"}}}],
                "spec.analysis.sessionAffinity": {"cookieName": "canary"},
            },
            "spec.analysis.sessionAffinity: not with match (A/B testing routes by the match alone)",
        ),
    ],
    ids=[
        "set-list",
        "remove-string",
        "unknown-direction",
        "unknown-operation",
        "rewrite-type",
        "service-match",
        "affinity-with-match",
    ],
)
def test_gatewayapi_refuses_routing_it_cannot_write(edits: dict[str, Any], expected: str) -> None:
    assert problems_of(gatewayapi_with(edits)) == [expected]


def test_gatewayapi_mirrors_and_keeps_sessions() -> None:
    mirrored = gatewayapi_with(
        {
            "spec.analysis.iterations": 5,
            "spec.analysis.stepWeight": DELETE,
            "spec.analysis.mirror": True,
            "spec.analysis.mirrorWeight": 20,
        }
    )
    sticky = gatewayapi_with({"spec.analysis.sessionAffinity": {"cookieName": "canary"}})
    assert load(mirrored).canary.spec.analysis.strategy == Strategy.BLUE_GREEN_MIRROR
    assert load(sticky).canary.spec.analysis.session_affinity is not None


# -- Traefik on Kubernetes -------------------------------------------------------------------


def traefik_doc() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(read("traefik-podinfo.yaml"))
    return loaded


def test_flaggers_traefik_tutorial_canary_loads() -> None:
    loaded = load(read("traefik-podinfo.yaml"))
    canary = loaded.canary
    assert loaded.warnings == []
    assert canary.spec.provider == "traefik"
    assert canary.spec.target_ref.kind == "Deployment"
    assert canary.spec.traefik is None
    assert canary.spec.service.port == 80
    assert canary.spec.analysis.weights == list(range(5, 55, 5))
    assert [metric.name for metric in canary.spec.analysis.metrics] == [
        "request-success-rate",
        "request-duration",
    ]


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        (
            {
                "spec.analysis.iterations": 5,
                "spec.analysis.stepWeight": DELETE,
                "spec.analysis.match": [{"headers": {"x-canary": {"exact": "yes"}}}],
            },
            "spec.analysis.match: provider 'traefik' cannot match or mirror traffic",
        ),
        (
            {"spec.analysis.iterations": 5, "spec.analysis.mirror": True},
            "spec.analysis.mirror: provider 'traefik' cannot match or mirror traffic",
        ),
        (
            {"spec.analysis.sessionAffinity": {"cookieName": "canary"}},
            "spec.analysis.sessionAffinity: provider 'traefik' cannot keep sessions on the canary",
        ),
        (
            {"spec.traefik": {"configFile": "traefik/podinfo.yaml"}},
            "spec.traefik: only for a LocalProcess target (provider traefik writes a "
            "TraefikService for a Deployment)",
        ),
    ],
    ids=["ab-testing", "mirroring", "session-affinity", "file-config"],
)
def test_traefik_with_a_deployment_refuses_what_a_traffic_service_cannot_do(
    edits: dict[str, Any], expected: str
) -> None:
    assert problems_of(edited(edits, traefik_doc())) == [expected]


def test_traefik_with_a_deployment_warns_of_the_routing_fields_it_does_not_apply() -> None:
    text = edited(
        {"spec.service.hosts": ["app.example.com"], "spec.service.apex": {"labels": {"a": "b"}}},
        traefik_doc(),
    )
    assert load(text).warnings == [
        "spec.service.hosts: provider 'traefik' does not apply it, ignored"
    ]


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "127.0.0.1:8080", "http://[::1/", "http://\x1b[31m.test/"]
)
def test_traefik_api_url_must_be_an_http_url(url: str) -> None:
    doc = demo_doc()
    doc["spec"]["traefik"]["apiUrl"] = url
    problems = problems_of(yaml.safe_dump(doc))
    assert problems == [f"spec.traefik.apiUrl: must be an http(s) URL (got {url!r})"]


def test_traefik_still_routes_a_local_process_by_its_file_provider() -> None:
    doc = demo_doc()
    doc["spec"]["analysis"]["match"] = [{"headers": {"x-canary": {"exact": "yes"}}}]
    doc["spec"]["analysis"]["iterations"] = 3
    canary = load(yaml.safe_dump(doc)).canary
    assert canary.spec.analysis.strategy == Strategy.AB_TESTING
    assert canary.spec.traefik is not None
