"""IstioRouter against a kmock Kubernetes emulator over real HTTP."""

from typing import Any

import kubernetes
import pytest

from activities.errors import PermanentError
from activities.istio_router import IstioRouter, IstioSettings, StickySessions
from canary.decision import Routes
from canary.spec import Canary
from tests.support.kube import (
    DESTINATION_RULES,
    NAMESPACE,
    VIRTUAL_SERVICES,
    ServedEmulator,
    kube_fixture,  # noqa: F401
)

RETRIES = {"attempts": 3, "perTryTimeout": "1s", "retryOn": "gateway-error,connect-failure"}
TRAFFIC_POLICY = {"tls": {"mode": "ISTIO_MUTUAL"}}
MATCH = (
    {"headers": {"x-canary": {"exact": "insider"}}},
    {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
)


def router(kube: ServedEmulator, **settings: Any) -> IstioRouter:
    return IstioRouter(kube.api, NAMESPACE, IstioSettings(service="podinfo", **settings))


def destination(host: str, weight: int) -> dict[str, Any]:
    return {"destination": {"host": host}, "weight": weight}


def http_routes(kube: ServedEmulator) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = kube.get(VIRTUAL_SERVICES, NAMESPACE, "podinfo")["spec"]["http"]
    return routes


def test_reconcile_creates_destination_rules_and_a_virtual_service(kube: ServedEmulator) -> None:
    router(kube, traffic_policy=TRAFFIC_POLICY).reconcile()

    for host in ("podinfo-primary", "podinfo-canary"):
        rule = kube.get(DESTINATION_RULES, NAMESPACE, host)
        assert rule["apiVersion"] == "networking.istio.io/v1beta1"
        assert rule["kind"] == "DestinationRule"
        assert rule["spec"] == {"host": host, "trafficPolicy": TRAFFIC_POLICY}
    service = kube.get(VIRTUAL_SERVICES, NAMESPACE, "podinfo")
    assert service["kind"] == "VirtualService"
    assert service["spec"] == {
        "hosts": ["podinfo"],
        "gateways": ["mesh"],
        "http": [
            {"route": [destination("podinfo-primary", 100), destination("podinfo-canary", 0)]}
        ],
    }


def test_reconcile_uses_hosts_gateways_retries_and_port(kube: ServedEmulator) -> None:
    router(
        kube,
        hosts=("app.example.com",),
        gateways=("public-gateway.istio-system.svc.cluster.local",),
        retries=RETRIES,
        port=9898,
    ).reconcile()

    spec = kube.get(VIRTUAL_SERVICES, NAMESPACE, "podinfo")["spec"]
    assert spec["hosts"] == ["app.example.com", "podinfo"]
    assert spec["gateways"] == ["public-gateway.istio-system.svc.cluster.local"]
    port = {"number": 9898}
    assert spec["http"] == [
        {
            "route": [
                {"destination": {"host": "podinfo-primary", "port": port}, "weight": 100},
                {"destination": {"host": "podinfo-canary", "port": port}, "weight": 0},
            ],
            "retries": RETRIES,
        }
    ]
    assert kube.get(DESTINATION_RULES, NAMESPACE, "podinfo-canary")["spec"] == {
        "host": "podinfo-canary"
    }


def test_set_routes_stores_absolute_weights(kube: ServedEmulator) -> None:
    istio = router(kube)
    istio.reconcile()

    istio.set_routes(Routes(primary_weight=70, canary_weight=30))

    assert http_routes(kube) == [
        {"route": [destination("podinfo-primary", 70), destination("podinfo-canary", 30)]}
    ]
    assert istio.get_routes() == Routes(primary_weight=70, canary_weight=30)


def test_set_routes_is_idempotent(kube: ServedEmulator) -> None:
    istio = router(kube, retries=RETRIES)
    istio.reconcile()
    istio.set_routes(Routes(primary_weight=70, canary_weight=30))
    stored = kube.get(VIRTUAL_SERVICES, NAMESPACE, "podinfo")
    writes = kube.writes()

    istio.set_routes(Routes(primary_weight=70, canary_weight=30))

    assert kube.writes() == writes
    assert kube.get(VIRTUAL_SERVICES, NAMESPACE, "podinfo") == stored


def test_set_routes_for_ab_testing_routes_matching_requests_only(kube: ServedEmulator) -> None:
    istio = router(kube, match=MATCH, retries=RETRIES)
    istio.reconcile()

    istio.set_routes(Routes(primary_weight=0, canary_weight=100))

    assert http_routes(kube) == [
        {
            "match": list(MATCH),
            "route": [destination("podinfo-primary", 0), destination("podinfo-canary", 100)],
            "retries": RETRIES,
        },
        {"route": [destination("podinfo-primary", 100)], "retries": RETRIES},
    ]
    assert istio.get_routes() == Routes(primary_weight=0, canary_weight=100)


def test_set_routes_with_mirror_copies_traffic_to_the_canary(kube: ServedEmulator) -> None:
    istio = router(kube)
    istio.reconcile()

    istio.set_routes(Routes(primary_weight=100, canary_weight=50, mirror=True))

    assert http_routes(kube) == [
        {
            "route": [destination("podinfo-primary", 100), destination("podinfo-canary", 0)],
            "mirror": {"host": "podinfo-canary"},
            "mirrorPercentage": {"value": 50},
        }
    ]
    assert istio.get_routes() == Routes(primary_weight=100, canary_weight=50, mirror=True)

    istio.set_routes(Routes(primary_weight=0, canary_weight=100))

    assert http_routes(kube) == [
        {"route": [destination("podinfo-primary", 0), destination("podinfo-canary", 100)]}
    ]
    assert istio.get_routes() == Routes(primary_weight=0, canary_weight=100)


def test_reconcile_keeps_weights_and_refreshes_the_rest(kube: ServedEmulator) -> None:
    router(kube).reconcile()
    router(kube).set_routes(Routes(primary_weight=60, canary_weight=40))

    refreshed = router(kube, hosts=("app.example.com",), gateways=("gw",), retries=RETRIES)
    refreshed.reconcile()

    spec = kube.get(VIRTUAL_SERVICES, NAMESPACE, "podinfo")["spec"]
    assert spec["hosts"] == ["app.example.com", "podinfo"]
    assert spec["gateways"] == ["gw"]
    assert spec["http"] == [
        {
            "route": [destination("podinfo-primary", 60), destination("podinfo-canary", 40)],
            "retries": RETRIES,
        }
    ]
    assert refreshed.get_routes() == Routes(primary_weight=60, canary_weight=40)


def test_reconcile_keeps_mirroring(kube: ServedEmulator) -> None:
    istio = router(kube)
    istio.reconcile()
    istio.set_routes(Routes(primary_weight=100, canary_weight=20, mirror=True))

    istio.reconcile()

    assert istio.get_routes() == Routes(primary_weight=100, canary_weight=20, mirror=True)


def test_reconcile_is_idempotent(kube: ServedEmulator) -> None:
    istio = router(kube, traffic_policy=TRAFFIC_POLICY, retries=RETRIES, match=MATCH, port=80)
    istio.reconcile()
    istio.set_routes(Routes(primary_weight=90, canary_weight=10))
    objects = {key: obj.raw for key, obj in kube.emulator.objects.items()}
    writes = kube.writes()

    istio.reconcile()

    assert kube.writes() == writes
    assert {key: obj.raw for key, obj in kube.emulator.objects.items()} == objects


def test_reconcile_removes_a_dropped_traffic_policy(kube: ServedEmulator) -> None:
    router(kube, traffic_policy=TRAFFIC_POLICY).reconcile()

    router(kube).reconcile()

    assert kube.get(DESTINATION_RULES, NAMESPACE, "podinfo-primary")["spec"] == {
        "host": "podinfo-primary"
    }


def test_reconcile_takes_over_a_virtual_service_without_our_routes(kube: ServedEmulator) -> None:
    kube.put(
        VIRTUAL_SERVICES,
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "VirtualService",
            "metadata": {"name": "podinfo", "namespace": NAMESPACE},
            "spec": {
                "hosts": ["podinfo"],
                "exportTo": ["."],
                "http": [{"route": [{"destination": {"host": "podinfo"}}]}],
            },
        },
    )
    istio = router(kube)

    istio.reconcile()

    spec = kube.get(VIRTUAL_SERVICES, NAMESPACE, "podinfo")["spec"]
    assert spec["exportTo"] == ["."]
    assert istio.get_routes() == Routes(primary_weight=100, canary_weight=0)


def test_get_routes_of_a_virtual_service_without_our_routes_is_permanent(
    kube: ServedEmulator,
) -> None:
    kube.put(
        VIRTUAL_SERVICES,
        {
            "metadata": {"name": "podinfo", "namespace": NAMESPACE},
            "spec": {"http": [{"route": [{"destination": {"host": "other"}}]}]},
        },
    )

    with pytest.raises(PermanentError, match="has no route to podinfo-primary and podinfo-canary"):
        router(kube).get_routes()


@pytest.mark.parametrize(
    "call",
    [
        lambda istio: istio.get_routes(),
        lambda istio: istio.set_routes(Routes(primary_weight=90, canary_weight=10)),
    ],
)
def test_a_missing_virtual_service_is_permanent(kube: ServedEmulator, call: Any) -> None:
    with pytest.raises(PermanentError, match=r"^virtualservice test/podinfo not found$"):
        call(router(kube))


def test_an_rbac_refusal_is_permanent(kube: ServedEmulator) -> None:
    router(kube).reconcile()
    kube.refuse("patch", VIRTUAL_SERVICES)

    with pytest.raises(
        PermanentError,
        match=r"^RBAC refusal: not allowed to patch virtualservices.networking.istio.io "
        r"in namespace test",
    ):
        router(kube).set_routes(Routes(primary_weight=50, canary_weight=50))


def test_server_errors_propagate_to_be_retried(kube: ServedEmulator) -> None:
    kube.refuse("get", DESTINATION_RULES, status=500, reason="InternalError")

    with pytest.raises(kubernetes.client.ApiException) as raised:
        router(kube).reconcile()
    assert raised.value.status == 500


# -- what Flagger's router writes besides weights ---------------------------------------------


def test_ab_matches_apply_within_the_service_match(kube: ServedEmulator) -> None:
    """Each analysis match within each service match, its headers replacing the service's."""
    service_match = (
        {"uri": {"prefix": "/api"}, "headers": {"x-tenant": {"exact": "a"}}},
        {"uri": {"prefix": "/v2"}},
    )
    istio = router(kube, match=MATCH, service_match=service_match)
    istio.reconcile()

    istio.set_routes(Routes(primary_weight=0, canary_weight=100))

    matched, default = http_routes(kube)
    assert matched["match"] == [
        {"uri": {"prefix": "/api"}, "headers": {"x-canary": {"exact": "insider"}}},
        {"uri": {"prefix": "/v2"}, "headers": {"x-canary": {"exact": "insider"}}},
        {"uri": {"prefix": "/api"}, **MATCH[1]},
        {"uri": {"prefix": "/v2"}, **MATCH[1]},
    ]
    assert default == {
        "match": list(service_match),
        "route": [destination("podinfo-primary", 100)],
    }


def test_rewrite_keeps_what_istio_rewrites(kube: ServedEmulator) -> None:
    """Flagger's rewrite `type` is the Gateway API's; Istio takes the uri and authority."""
    rewrite = {"uri": "/", "authority": "api.example.com", "type": "ReplacePrefixMatch"}
    router(kube, rewrite=rewrite).reconcile()

    [route] = http_routes(kube)
    assert route["rewrite"] == {"uri": "/", "authority": "api.example.com"}


def test_reconcile_adds_apex_metadata_and_keeps_the_objects_own(kube: ServedEmulator) -> None:
    kube.put(
        VIRTUAL_SERVICES,
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "VirtualService",
            "metadata": {
                "name": "podinfo",
                "namespace": NAMESPACE,
                "labels": {"team": "old", "app": "podinfo"},
                "annotations": {"kept": "yes"},
            },
            "spec": {"hosts": ["podinfo"], "http": []},
        },
    )

    router(kube, labels={"team": "web"}, annotations={"owner": "web"}).reconcile()

    metadata = kube.get(VIRTUAL_SERVICES, NAMESPACE, "podinfo")["metadata"]
    assert metadata["labels"] == {"team": "web", "app": "podinfo"}
    assert metadata["annotations"] == {"kept": "yes", "owner": "web"}


STICKY = StickySessions(cookie_name="canary", max_age=600)


def test_sticky_sessions_wait_for_live_canary_traffic(kube: ServedEmulator) -> None:
    """A mirrored step gives the canary no sessions: no cookie, no sticky route."""
    istio = router(kube, sticky=STICKY)
    istio.reconcile()

    istio.set_routes(Routes(primary_weight=100, canary_weight=50, mirror=True))

    [route] = http_routes(kube)
    assert route["mirror"] == {"host": "podinfo-canary"}
    assert all("headers" not in item for item in route["route"])
    assert istio.get_routes() == Routes(primary_weight=100, canary_weight=50, mirror=True)


def test_a_canary_that_loses_its_share_gets_a_new_cookie_when_it_is_back(
    kube: ServedEmulator,
) -> None:
    istio = router(kube, sticky=STICKY)
    istio.reconcile()
    istio.set_routes(Routes(primary_weight=80, canary_weight=20))
    first = http_routes(kube)[0]["match"]

    istio.set_routes(Routes(primary_weight=100, canary_weight=0))
    istio.set_routes(Routes(primary_weight=80, canary_weight=20))

    assert len(http_routes(kube)) == 2
    assert http_routes(kube)[0]["match"] != first
    assert istio.get_routes() == Routes(primary_weight=80, canary_weight=20)


def test_sticky_routes_carry_the_service_route_settings(kube: ServedEmulator) -> None:
    headers = {"response": {"add": {"x-served-by": "podinfo"}}}
    istio = router(kube, sticky=STICKY, headers=headers, timeout="5s", retries=RETRIES)
    istio.reconcile()
    istio.set_routes(Routes(primary_weight=80, canary_weight=20))

    sticky, weighted = http_routes(kube)
    for route in (sticky, weighted):
        assert (route["headers"], route["timeout"], route["retries"]) == (headers, "5s", RETRIES)

    istio.set_routes(Routes(primary_weight=100, canary_weight=0))

    expiring, weighted = http_routes(kube)
    added = expiring["headers"]["response"]["add"]
    assert added["x-served-by"] == "podinfo"
    assert added["Set-Cookie"].endswith("; Max-Age=-1")
    assert weighted["headers"] == headers


def test_a_regex_character_in_a_cookie_name_is_matched_literally(kube: ServedEmulator) -> None:
    istio = router(kube, sticky=StickySessions(cookie_name="a.b*c", max_age=60))
    istio.reconcile()

    istio.set_routes(Routes(primary_weight=90, canary_weight=10))

    regex = http_routes(kube)[0]["match"][0]["headers"]["cookie"]["regex"]
    assert regex.startswith(r".*a\.b\*c.*")


def canary_of(service: dict[str, Any], analysis: dict[str, Any] | None = None) -> Canary:
    return Canary.model_validate(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": NAMESPACE},
            "spec": {
                "provider": "istio",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898, **service},
                "analysis": analysis or {"stepWeight": 10, "maxWeight": 50},
            },
        }
    )


@pytest.mark.parametrize(
    ("service", "port"),
    [
        ({}, None),
        ({"portDiscovery": True}, None),
        ({"portDiscovery": True, "gateways": ["mesh", "public"]}, None),
        ({"portDiscovery": True, "gateways": ["public", "mesh"]}, 9898),
        ({"portDiscovery": True, "delegation": True}, 9898),
        ({"gateways": ["public"]}, None),
    ],
)
def test_destinations_name_the_port_of_a_multi_port_service_behind_a_gateway(
    service: dict[str, Any], port: int | None
) -> None:
    assert IstioSettings.for_canary(canary_of(service)).port == port


@pytest.mark.parametrize(
    ("analysis", "sticky"),
    [
        ({"stepWeight": 10, "sessionAffinity": {"cookieName": "c"}}, True),
        ({"iterations": 5, "sessionAffinity": {"cookieName": "c"}}, False),
        (
            {
                "iterations": 5,
                "match": [{"headers": {"x": {"exact": "y"}}}],
                "sessionAffinity": {"cookieName": "c"},
            },
            False,
        ),
        ({"stepWeight": 10}, False),
    ],
)
def test_only_weighted_releases_keep_sessions(analysis: dict[str, Any], sticky: bool) -> None:
    settings = IstioSettings.for_canary(canary_of({}, {"interval": "2m", **analysis}))
    assert (settings.sticky is not None) == sticky
    if settings.sticky is not None:
        assert settings.sticky.primary_max_age == 120
