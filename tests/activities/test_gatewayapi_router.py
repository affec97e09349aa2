"""GatewayAPIRouter against a kmock Kubernetes emulator over real HTTP: the HTTPRoute it stores,
field by field, for Flagger's Gateway API tutorial Canary and for A/B testing."""

from pathlib import Path
from typing import Any

import pytest
import yaml

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
TUTORIAL = Path(__file__).resolve().parents[1] / "canary" / "specs" / "gatewayapi-podinfo.yaml"
EVERY_PATH = {"path": {"type": "PathPrefix", "value": "/"}}
AB_MATCH = [
    {"headers": {"user-agent": {"regex": ".*Firefox.*"}}},
    {"headers": {"cookie": {"regex": "^(.*?;)?(type=insider)(;.*)?$"}}},
]


def tutorial(provider: str = "gatewayapi:v1", **analysis: Any) -> Canary:
    document = list(yaml.safe_load_all(TUTORIAL.read_text()))
    document[-1]["spec"]["analysis"].update(analysis)
    text = yaml.safe_dump_all(document)
    return load_canary(text, str(TUTORIAL), default_provider=provider).canary


def router_for(canary: Canary, kube: ServedEmulator) -> GatewayAPIRouter:
    router = registry.router_for(canary, lambda: kube.api, WorkerScope())
    assert isinstance(router, GatewayAPIRouter)
    return router


def backend(name: str, weight: int) -> dict[str, Any]:
    return {"group": "", "kind": "Service", "name": name, "port": 9898, "weight": weight}


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


def test_ab_testing_routes_matching_requests_by_weight_and_the_rest_to_the_primary(
    kube: ServedEmulator,
) -> None:
    canary = tutorial(maxWeight=None, stepWeight=None, iterations=10, match=AB_MATCH)
    router = router_for(canary, kube)
    router.reconcile()
    router.set_routes(Routes(primary_weight=0, canary_weight=100))

    rules = kube.get(HTTP_ROUTES, NAMESPACE, "podinfo")["spec"]["rules"]
    assert rules == [
        {
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
            "backendRefs": [backend("podinfo-primary", 0), backend("podinfo-canary", 100)],
        },
        {"matches": [EVERY_PATH], "backendRefs": [backend("podinfo-primary", 100)]},
    ]
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
