"""GatewayAPIRouter against a kmock Kubernetes emulator over real HTTP: the HTTPRoute it stores,
field by field, for the Canaries of Flagger's Gateway API tutorial (weights, A/B testing,
session affinity, mirroring) and for the `spec.service` fields it applies."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from activities import gatewayapi_router
from activities import providers as registry
from activities.errors import PermanentError
from activities.gatewayapi_router import GatewayAPIRouter, GatewaySettings
from activities.scope import WorkerScope
from canary.decision import Routes
from canary.loader import load_canary
from canary.spec import Canary
from tests.support.kube import NAMESPACE, ServedEmulator, kube_fixture  # noqa: F401

HTTP_ROUTES = "gateway.networking.k8s.io/v1/httproutes"
HTTP_ROUTES_V1BETA1 = "gateway.networking.k8s.io/v1beta1/httproutes"
SPECS = Path(__file__).resolve().parents[1] / "canary" / "specs"
TUTORIAL = SPECS / "gatewayapi-podinfo.yaml"
EVERY_PATH = {"path": {"type": "PathPrefix", "value": "/"}}
AB_MATCH = [
    {"headers": {"user-agent": {"regex": ".*Firefox.*"}}},
    {"headers": {"cookie": {"regex": "^(.*?;)?(type=insider)(;.*)?$"}}},
]


def tutorial(
    provider: str = "gatewayapi:v1",
    variant: str = "gatewayapi-podinfo.yaml",
    service: dict[str, Any] | None = None,
    **analysis: Any,
) -> Canary:
    """A Canary of the tutorial (`variant`: its file) with the tutorial's MetricTemplates, the
    analysis and service fields given changed; refused when the loader warns."""
    templates = list(yaml.safe_load_all(TUTORIAL.read_text()))[:-1]
    document = list(yaml.safe_load_all((SPECS / variant).read_text()))[-1]
    document["spec"]["analysis"].update(analysis)
    document["spec"]["service"].update(service or {})
    text = yaml.safe_dump_all([*templates, document])
    loaded = load_canary(text, variant, default_provider=provider)
    assert loaded.warnings == []
    return loaded.canary


def router_for(canary: Canary, kube: ServedEmulator) -> GatewayAPIRouter:
    router = registry.router_for(canary, lambda: kube.api, WorkerScope())
    assert isinstance(router, GatewayAPIRouter)
    return router


def backend(name: str, weight: int, **extra: Any) -> dict[str, Any]:
    return {"group": "", "kind": "Service", "name": name, "port": 9898, "weight": weight, **extra}


def stored_rules(kube: ServedEmulator) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = kube.get(HTTP_ROUTES, NAMESPACE, "podinfo")["spec"]["rules"]
    return rules


def test_the_tutorial_canary_gets_flaggers_http_route(kube: ServedEmulator) -> None:
    router_for(tutorial(), kube).reconcile()

    route = kube.get(HTTP_ROUTES, NAMESPACE, "podinfo")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["kind"] == "HTTPRoute"
    assert route["metadata"]["name"] == "podinfo"
    assert route["metadata"]["namespace"] == NAMESPACE
    spec = route["spec"]
    assert spec["parentRefs"] == [{"name": "gateway", "namespace": "istio-ingress"}]
    assert spec["hostnames"] == ["www.example.com"]
    assert len(spec["rules"]) == 1
    rule = spec["rules"][0]
    assert rule["matches"] == [EVERY_PATH]
    assert rule["backendRefs"] == [backend("podinfo-primary", 100), backend("podinfo-canary", 0)]
    assert set(spec) == {"parentRefs", "hostnames", "rules"}


def test_v1beta1_writes_the_route_in_that_version(kube: ServedEmulator) -> None:
    router_for(tutorial("gatewayapi:v1beta1"), kube).reconcile()

    route = kube.get(HTTP_ROUTES_V1BETA1, NAMESPACE, "podinfo")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1beta1"
    assert route["spec"]["rules"][0]["backendRefs"][1] == backend("podinfo-canary", 0)


def test_set_routes_writes_absolute_weights_once(kube: ServedEmulator) -> None:
    router = router_for(tutorial(), kube)
    router.reconcile()

    router.set_routes(Routes(primary_weight=70, canary_weight=30))
    writes = kube.writes()
    router.set_routes(Routes(primary_weight=70, canary_weight=30))

    assert kube.writes() == writes, "the same weights are not written again"
    rules = kube.get(HTTP_ROUTES, NAMESPACE, "podinfo")["spec"]["rules"]
    assert rules[0]["backendRefs"] == [
        backend("podinfo-primary", 70),
        backend("podinfo-canary", 30),
    ]
    assert router.get_routes() == Routes(primary_weight=70, canary_weight=30)


def test_reconcile_keeps_the_weights_and_restores_what_it_owns(kube: ServedEmulator) -> None:
    router = router_for(tutorial(), kube)
    router.reconcile()
    router.set_routes(Routes(primary_weight=40, canary_weight=60))
    route = kube.get(HTTP_ROUTES, NAMESPACE, "podinfo")
    route["spec"]["hostnames"] = ["changed.example.com"]
    kube.put(HTTP_ROUTES, route)

    router.reconcile()

    spec = kube.get(HTTP_ROUTES, NAMESPACE, "podinfo")["spec"]
    assert spec["hostnames"] == ["www.example.com"]
    assert router.get_routes() == Routes(primary_weight=40, canary_weight=60)


def test_flaggers_ab_testing_canary_routes_matching_requests_and_the_rest_to_the_primary(
    kube: ServedEmulator,
) -> None:
    router = router_for(tutorial(variant="gatewayapi-podinfo-ab.yaml"), kube)
    router.reconcile()

    ab_rule = {
        "matches": [
            {
                **EVERY_PATH,
                "headers": [
                    {"type": "RegularExpression", "name": "user-agent", "value": ".*Firefox.*"}
                ],
            },
            {
                **EVERY_PATH,
                "headers": [
                    {
                        "type": "RegularExpression",
                        "name": "cookie",
                        "value": "^(.*?;)?(type=insider)(;.*)?$",
                    }
                ],
            },
        ],
        "backendRefs": [backend("podinfo-primary", 100), backend("podinfo-canary", 0)],
    }
    rest = {"matches": [EVERY_PATH], "backendRefs": [backend("podinfo-primary", 100)]}
    route = kube.get(HTTP_ROUTES, NAMESPACE, "podinfo")
    assert route["spec"]["parentRefs"] == [{"name": "gateway", "namespace": "istio-ingress"}]
    assert route["spec"]["hostnames"] == ["www.example.com"]
    assert route["spec"]["rules"] == [ab_rule, rest]

    router.set_routes(Routes(primary_weight=0, canary_weight=100))

    ab_rule["backendRefs"] = [backend("podinfo-primary", 0), backend("podinfo-canary", 100)]
    assert stored_rules(kube) == [ab_rule, rest]
    assert router.get_routes() == Routes(primary_weight=0, canary_weight=100)


def test_query_params_path_and_method_become_route_matches(kube: ServedEmulator) -> None:
    match = {
        "queryParams": {"canary": {"exact": "yes"}},
        "uri": {"prefix": "/api"},
        "method": {"exact": "GET"},
    }
    settings = GatewaySettings(
        service="podinfo", port=9898, parent_refs=({"name": "gateway"},), match=(match,)
    )
    GatewayAPIRouter(kube.api, NAMESPACE, settings).reconcile()

    matches = kube.get(HTTP_ROUTES, NAMESPACE, "podinfo")["spec"]["rules"][0]["matches"]
    assert matches == [
        {
            "path": {"type": "PathPrefix", "value": "/api"},
            "queryParams": [{"type": "Exact", "name": "canary", "value": "yes"}],
            "method": "GET",
        }
    ]


@pytest.mark.parametrize(
    ("match", "message"),
    [
        ({"headers": {"x-canary": {"prefix": "in"}}}, r"match\[0\]\.headers\.x-canary: must"),
        ({"sourceLabels": {"app": "web"}}, r"match\[0\]\.sourceLabels: provider gatewayapi"),
    ],
)
def test_a_match_http_route_cannot_express_is_refused_before_any_write(
    kube: ServedEmulator, match: dict[str, Any], message: str
) -> None:
    settings = GatewaySettings(
        service="podinfo", port=9898, parent_refs=({"name": "gateway"},), match=(match,)
    )
    with pytest.raises(PermanentError, match=message):
        GatewayAPIRouter(kube.api, NAMESPACE, settings)
    assert kube.writes() == 0


def test_get_routes_of_a_missing_route_is_an_error_naming_it(kube: ServedEmulator) -> None:
    with pytest.raises(PermanentError, match="podinfo"):
        router_for(tutorial(), kube).get_routes()


# -- session affinity --------------------------------------------------------------------------

SESSION_TUTORIAL = "gatewayapi-podinfo-session-affinity.yaml"
COOKIE_RULE = re.compile(r"\.\*flagger-cookie=([0-9a-f]{16})\.\*")


def cookie_match(regex: str, name: str = "Cookie") -> dict[str, Any]:
    return {**EVERY_PATH, "headers": [{"type": "RegularExpression", "name": name, "value": regex}]}


def set_cookie(value: str) -> dict[str, Any]:
    return {
        "type": "ResponseHeaderModifier",
        "responseHeaderModifier": {"add": [{"name": "Set-Cookie", "value": value}]},
    }


def canary_token(rules: list[dict[str, Any]]) -> str:
    """The token of the canary cookie the first rule matches."""
    found = COOKIE_RULE.fullmatch(rules[0]["matches"][0]["headers"][0]["value"])
    assert found, rules[0]
    return found.group(1)


def test_session_affinity_sends_cookie_holders_to_the_canary_while_it_has_a_share(
    kube: ServedEmulator,
) -> None:
    """Flagger's rules, but for the regex (the cookie's `name=token`, not name then token) and
    the path the API server defaults on the cookie rule's match."""
    router = router_for(tutorial(variant=SESSION_TUTORIAL), kube)
    router.reconcile()
    assert stored_rules(kube) == [
        {
            "matches": [EVERY_PATH],
            "backendRefs": [backend("podinfo-primary", 100), backend("podinfo-canary", 0)],
        }
    ]

    router.set_routes(Routes(primary_weight=90, canary_weight=10))

    rules = stored_rules(kube)
    token = canary_token(rules)
    cookie = f"flagger-cookie={token}"
    assert rules == [
        {
            "matches": [cookie_match(f".*flagger-cookie={token}.*")],
            "backendRefs": [backend("podinfo-primary", 0), backend("podinfo-canary", 100)],
        },
        {
            "matches": [EVERY_PATH],
            "backendRefs": [
                backend("podinfo-primary", 90),
                backend("podinfo-canary", 10, filters=[set_cookie(f"{cookie}; Max-Age=21600")]),
            ],
        },
    ]
    assert router.get_routes() == Routes(primary_weight=90, canary_weight=10)

    router.set_routes(Routes(primary_weight=80, canary_weight=20))
    writes = kube.writes()
    router.set_routes(Routes(primary_weight=80, canary_weight=20))
    router.reconcile()

    assert kube.writes() == writes, "the same weights and cookie are not written again"
    assert canary_token(stored_rules(kube)) == token, "one token for the whole rollout"
    assert router.get_routes() == Routes(primary_weight=80, canary_weight=20)


def test_with_no_canary_share_the_cookie_rule_is_gone_and_the_cookie_expires(
    kube: ServedEmulator,
) -> None:
    router = router_for(tutorial(variant=SESSION_TUTORIAL), kube)
    router.reconcile()
    router.set_routes(Routes(primary_weight=50, canary_weight=50))
    token = canary_token(stored_rules(kube))

    router.set_routes(Routes(primary_weight=100, canary_weight=0))

    to_primary = [backend("podinfo-primary", 100), backend("podinfo-canary", 0)]
    assert stored_rules(kube) == [
        {
            "matches": [cookie_match(f".*flagger-cookie={token}.*")],
            "filters": [set_cookie(f"flagger-cookie={token}; Max-Age=-1")],
            "backendRefs": to_primary,
        },
        {"matches": [EVERY_PATH], "backendRefs": to_primary},
    ]
    assert router.get_routes() == Routes(primary_weight=100, canary_weight=0)

    router.set_routes(Routes(primary_weight=90, canary_weight=10))

    assert canary_token(stored_rules(kube)) != token, "the next rollout has a cookie of its own"
    assert [rule["backendRefs"][1]["weight"] for rule in stored_rules(kube)] == [100, 10]


def test_a_primary_cookie_keeps_primary_users_on_the_primary_for_an_interval(
    kube: ServedEmulator,
) -> None:
    affinity = {"cookieName": "canary", "primaryCookieName": "primary", "maxAge": 600}
    router = router_for(tutorial(sessionAffinity=affinity), kube)
    router.reconcile()

    router.set_routes(Routes(primary_weight=70, canary_weight=30))

    rules = stored_rules(kube)
    assert len(rules) == 3
    canary_cookie = rules[2]["backendRefs"][1]["filters"][0]["responseHeaderModifier"]["add"][0]
    primary_cookie = rules[2]["backendRefs"][0]["filters"][0]["responseHeaderModifier"]["add"][0]
    assert re.fullmatch(r"canary=[0-9a-f]{16}; Max-Age=600", canary_cookie["value"])
    assert re.fullmatch(r"primary=[0-9a-f]{16}; Max-Age=60", primary_cookie["value"])
    primary_token = primary_cookie["value"].split(";")[0].split("=")[1]
    assert rules[1] == {
        "matches": [cookie_match(f".*primary={primary_token}.*")],
        "backendRefs": [backend("podinfo-primary", 100), backend("podinfo-canary", 0)],
    }
    assert [backend["weight"] for backend in rules[0]["backendRefs"]] == [0, 100]
    assert router.get_routes() == Routes(primary_weight=70, canary_weight=30)

    router.set_routes(Routes(primary_weight=60, canary_weight=40))

    again = stored_rules(kube)[2]["backendRefs"][0]["filters"][0]["responseHeaderModifier"]
    assert again["add"][0]["value"] == primary_cookie["value"]


def test_a_cookie_name_is_matched_literally() -> None:
    assert gatewayapi_router.cookie_pattern("a.b*c-d", "f00d") == r".*a\.b\*c-d=f00d.*"


# -- mirroring ---------------------------------------------------------------------------------


def mirror_filter(**extra: Any) -> dict[str, Any]:
    reference = {"group": "", "kind": "Service", "name": "podinfo-canary", "port": 9898}
    return {"type": "RequestMirror", "requestMirror": {"backendRef": reference, **extra}}


def test_flaggers_mirroring_canary_copies_every_request_to_the_canary(
    kube: ServedEmulator,
) -> None:
    router = router_for(tutorial(variant="gatewayapi-podinfo-mirror.yaml"), kube)
    router.reconcile()

    router.set_routes(Routes(primary_weight=100, canary_weight=100, mirror=True))

    assert stored_rules(kube) == [
        {
            "matches": [EVERY_PATH],
            "filters": [mirror_filter()],
            "backendRefs": [backend("podinfo-primary", 100), backend("podinfo-canary", 0)],
        }
    ]
    assert router.get_routes() == Routes(primary_weight=100, canary_weight=100, mirror=True)

    router.set_routes(Routes(primary_weight=0, canary_weight=100))

    assert stored_rules(kube) == [
        {
            "matches": [EVERY_PATH],
            "backendRefs": [backend("podinfo-primary", 0), backend("podinfo-canary", 100)],
        }
    ]


def test_a_mirror_weight_is_the_mirror_filters_percent(kube: ServedEmulator) -> None:
    canary = tutorial(variant="gatewayapi-podinfo-mirror.yaml", mirrorWeight=25)
    router = router_for(canary, kube)
    router.reconcile()

    router.set_routes(Routes(primary_weight=100, canary_weight=25, mirror=True))

    assert stored_rules(kube)[0]["filters"] == [mirror_filter(percent=25)]
    assert router.get_routes() == Routes(primary_weight=100, canary_weight=25, mirror=True)


# -- spec.service ------------------------------------------------------------------------------

HEADERS = {
    "request": {
        "add": {"x-custom-header": "custom-value"},
        "set": {"x-api-version": "v1"},
        "remove": ["x-debug-header"],
    },
    "response": {
        "add": {"x-frame-options": "DENY", "x-content-type-options": "nosniff"},
        "set": {"cache-control": "no-cache"},
        "remove": ["x-powered-by"],
    },
}
HEADER_FILTERS = [
    {
        "type": "RequestHeaderModifier",
        "requestHeaderModifier": {
            "add": [{"name": "x-custom-header", "value": "custom-value"}],
            "set": [{"name": "x-api-version", "value": "v1"}],
            "remove": ["x-debug-header"],
        },
    },
    {
        "type": "ResponseHeaderModifier",
        "responseHeaderModifier": {
            "add": [
                {"name": "x-content-type-options", "value": "nosniff"},
                {"name": "x-frame-options", "value": "DENY"},
            ],
            "set": [{"name": "cache-control", "value": "no-cache"}],
            "remove": ["x-powered-by"],
        },
    },
]


def test_timeout_headers_and_rewrite_go_on_every_rule(kube: ServedEmulator) -> None:
    """The examples of Flagger's "Customising the HTTPRoute", on the A/B testing Canary."""
    service = {
        "timeout": "5s",
        "headers": HEADERS,
        "rewrite": {"uri": "/api/v2", "type": "ReplacePrefixMatch", "authority": "api.example.com"},
    }
    router = router_for(tutorial(variant="gatewayapi-podinfo-ab.yaml", service=service), kube)
    router.reconcile()

    rewrite = {
        "type": "URLRewrite",
        "urlRewrite": {
            "hostname": "api.example.com",
            "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/api/v2"},
        },
    }
    rules = stored_rules(kube)
    assert len(rules) == 2
    for rule in rules:
        assert rule["filters"] == [*HEADER_FILTERS, rewrite]
        assert rule["timeouts"] == {"request": "5s"}


def test_a_rewrite_replaces_the_whole_path_unless_told_otherwise(kube: ServedEmulator) -> None:
    router = router_for(tutorial(service={"rewrite": {"uri": "/v2/api"}}), kube)
    router.reconcile()

    assert stored_rules(kube)[0]["filters"] == [
        {
            "type": "URLRewrite",
            "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/v2/api"}},
        }
    ]


def test_an_expiring_cookie_joins_the_response_header_filter(kube: ServedEmulator) -> None:
    """A rule may hold one ResponseHeaderModifier: the Set-Cookie goes into the service's."""
    service = {"headers": {"response": {"add": {"x-frame-options": "DENY"}}}}
    router = router_for(tutorial(variant=SESSION_TUTORIAL, service=service), kube)
    router.reconcile()
    router.set_routes(Routes(primary_weight=90, canary_weight=10))
    token = canary_token(stored_rules(kube))

    router.set_routes(Routes(primary_weight=100, canary_weight=0))

    assert stored_rules(kube)[0]["filters"] == [
        {
            "type": "ResponseHeaderModifier",
            "responseHeaderModifier": {
                "add": [
                    {"name": "x-frame-options", "value": "DENY"},
                    {"name": "Set-Cookie", "value": f"flagger-cookie={token}; Max-Age=-1"},
                ]
            },
        }
    ]


def test_service_match_narrows_every_rule_and_ab_testing_adds_to_it(kube: ServedEmulator) -> None:
    service = {"match": [{"uri": {"prefix": "/api"}, "headers": {"x-tenant": {"exact": "a"}}}]}
    router = router_for(tutorial(variant="gatewayapi-podinfo-ab.yaml", service=service), kube)
    router.reconcile()

    tenant = {"type": "Exact", "name": "x-tenant", "value": "a"}
    api = {"type": "PathPrefix", "value": "/api"}
    rules = stored_rules(kube)
    assert rules[0]["matches"] == [
        {
            "path": api,
            "headers": [
                tenant,
                {"type": "RegularExpression", "name": "user-agent", "value": ".*Firefox.*"},
            ],
        },
        {
            "path": api,
            "headers": [
                tenant,
                {
                    "type": "RegularExpression",
                    "name": "cookie",
                    "value": "^(.*?;)?(type=insider)(;.*)?$",
                },
            ],
        },
    ]
    assert rules[1]["matches"] == [{"path": api, "headers": [tenant]}]


def test_apex_labels_and_annotations_go_on_the_route(kube: ServedEmulator) -> None:
    apex = {"labels": {"team": "web"}, "annotations": {"owner": "web@example.com"}}
    router = router_for(tutorial(service={"apex": apex}), kube)
    router.reconcile()

    metadata = kube.get(HTTP_ROUTES, NAMESPACE, "podinfo")["metadata"]
    assert metadata["labels"] == {"team": "web"}
    assert metadata["annotations"] == {"owner": "web@example.com"}

    route = kube.get(HTTP_ROUTES, NAMESPACE, "podinfo")
    route["metadata"]["labels"] = {"team": "other", "kept": "yes"}
    kube.put(HTTP_ROUTES, route)
    router.reconcile()

    assert kube.get(HTTP_ROUTES, NAMESPACE, "podinfo")["metadata"]["labels"] == {
        "team": "web",
        "kept": "yes",
    }


@pytest.mark.parametrize("timeout", ["1.5s", "30", "1d"])
def test_a_timeout_that_is_no_gateway_api_duration_is_refused_before_any_write(
    kube: ServedEmulator, timeout: str
) -> None:
    canary = tutorial(service={"timeout": timeout})
    with pytest.raises(PermanentError, match=r"spec\.service\.timeout: .* not a Gateway API dur"):
        router_for(canary, kube)
    assert kube.writes() == 0
