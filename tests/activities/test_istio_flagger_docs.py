"""The Canaries of Flagger's Istio docs validate as written and get the VirtualService and
DestinationRules Flagger makes of them (the router against a kmock emulator over real HTTP).

The Canaries are in `istio_docs/`, each saying where in Flagger's docs it comes from. The
expected objects are written from those docs (the FAQ shows the objects for its Canaries) and,
where the docs show none, from what Flagger's Istio router writes.
"""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from activities import providers as registry
from activities.scope import WorkerScope
from canary import activity_specs, loader
from canary.decision import Routes
from canary.spec import Canary
from tests.support.kube import (
    DEPLOYMENTS,
    DESTINATION_RULES,
    NAMESPACE,
    SERVICES,
    VIRTUAL_SERVICES,
    ServedEmulator,
    kube_fixture,  # noqa: F401
    podinfo_deployment,
)

DOCS = Path(__file__).parent / "istio_docs"
RETRIES = {
    "attempts": 3,
    "perTryTimeout": "1s",
    "retryOn": "gateway-error,connect-failure,refused-stream",
}
TLS_DISABLED = {"tls": {"mode": "DISABLE"}}
GATEWAY = "istio-system/public-gateway"
COOKIE_VALUE = "[A-Za-z]{10}"


def validated(name: str, **edits: Any) -> Canary:
    """The Canary of `istio_docs/<name>` (with `edits` to its `spec`, `a.b` for nested keys)
    as `coalmine validate` loads it: no problems and no warnings; then as the router
    activities receive it."""
    text = (DOCS / name).read_text()
    if edits:
        doc = yaml.safe_load(text)
        for path, value in edits.items():
            *parents, last = path.split(".")
            node = doc["spec"]
            for key in parents:
                node = node.setdefault(key, {})
            node[last] = value
        text = yaml.safe_dump(doc)
    result = loader.load_canary(text, name)
    assert result.warnings == []
    return activity_specs.for_target(result.canary)


def istio(kube: ServedEmulator, canary: Canary) -> registry.Router:
    return registry.router_for(canary, lambda: kube.api, WorkerScope())


def destination(host: str, weight: int, port: int | None = None) -> dict[str, Any]:
    target: dict[str, Any] = {"host": host}
    if port is not None:
        target["port"] = {"number": port}
    return {"destination": target, "weight": weight}


def virtual_service(kube: ServedEmulator, name: str = "podinfo") -> dict[str, Any]:
    found: dict[str, Any] = kube.get(VIRTUAL_SERVICES, NAMESPACE, name)
    return found


def http_routes(kube: ServedEmulator, name: str = "podinfo") -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = virtual_service(kube, name)["spec"]["http"]
    return routes


def destination_rules(kube: ServedEmulator, service: str) -> dict[str, dict[str, Any]]:
    return {
        host: kube.get(DESTINATION_RULES, NAMESPACE, host)["spec"]
        for host in (f"{service}-primary", f"{service}-canary")
    }


# -- the Istio progressive delivery tutorial --------------------------------------------------


def test_progressive_delivery_tutorial(kube: ServedEmulator) -> None:
    router = istio(kube, validated("progressive-delivery.yaml"))

    router.reconcile()

    stored = virtual_service(kube)
    assert (stored["apiVersion"], stored["kind"]) == (
        "networking.istio.io/v1beta1",
        "VirtualService",
    )
    assert stored["metadata"] == {"name": "podinfo", "namespace": NAMESPACE}
    assert stored["spec"] == {
        "hosts": ["app.example.com", "podinfo"],
        "gateways": [GATEWAY],
        "http": [
            {
                "route": [destination("podinfo-primary", 100), destination("podinfo-canary", 0)],
                "retries": RETRIES,
            }
        ],
    }
    assert destination_rules(kube, "podinfo") == {
        "podinfo-primary": {"host": "podinfo-primary", "trafficPolicy": TLS_DISABLED},
        "podinfo-canary": {"host": "podinfo-canary", "trafficPolicy": TLS_DISABLED},
    }

    router.set_routes(Routes(primary_weight=90, canary_weight=10))

    assert http_routes(kube) == [
        {
            "route": [destination("podinfo-primary", 90), destination("podinfo-canary", 10)],
            "retries": RETRIES,
        }
    ]
    assert router.get_routes() == Routes(primary_weight=90, canary_weight=10)


def test_mutual_tls_sets_both_destination_rules(kube: ServedEmulator) -> None:
    """Flagger's FAQ, "How can I enable mTLS for a canary?"."""
    canary = validated(
        "progressive-delivery.yaml", **{"service.trafficPolicy.tls.mode": "ISTIO_MUTUAL"}
    )

    istio(kube, canary).reconcile()

    mutual = {"tls": {"mode": "ISTIO_MUTUAL"}}
    assert destination_rules(kube, "podinfo") == {
        "podinfo-primary": {"host": "podinfo-primary", "trafficPolicy": mutual},
        "podinfo-canary": {"host": "podinfo-canary", "trafficPolicy": mutual},
    }


# -- session affinity ---------------------------------------------------------------------------


def sticky_route(cookie: str, primary: int, canary: int) -> dict[str, Any]:
    name, _, value = cookie.partition("=")
    return {
        "match": [{"headers": {"cookie": {"regex": f".*{name}.*{value}.*"}}}],
        "route": [destination("podinfo-primary", primary), destination("podinfo-canary", canary)],
        "retries": RETRIES,
    }


def with_set_cookie(route: dict[str, Any], value: str) -> dict[str, Any]:
    return {**route, "headers": {"response": {"add": {"Set-Cookie": value}}}}


def set_cookies(kube: ServedEmulator) -> dict[str, str]:
    """The `Set-Cookie` of each destination of the last (weighted) route, by host."""
    weighted = http_routes(kube)[-1]
    return {
        item["destination"]["host"]: item["headers"]["response"]["add"]["Set-Cookie"]
        for item in weighted["route"]
        if "headers" in item
    }


def test_session_affinity_keeps_canary_sessions_on_the_canary(kube: ServedEmulator) -> None:
    router = istio(kube, validated("session-affinity.yaml"))
    router.reconcile()
    weighted_at_start = {
        "route": [destination("podinfo-primary", 100), destination("podinfo-canary", 0)],
        "retries": RETRIES,
    }
    assert http_routes(kube) == [weighted_at_start]

    router.set_routes(Routes(primary_weight=90, canary_weight=10))

    set_cookie = set_cookies(kube)["podinfo-canary"]
    assert re.fullmatch(f"flagger-cookie={COOKIE_VALUE}; Max-Age=21600", set_cookie)
    cookie = set_cookie.split(";")[0]
    assert http_routes(kube) == [
        sticky_route(cookie, 0, 100),
        {
            "route": [
                destination("podinfo-primary", 90),
                with_set_cookie(destination("podinfo-canary", 10), set_cookie),
            ],
            "retries": RETRIES,
        },
    ]
    assert router.get_routes() == Routes(primary_weight=90, canary_weight=10)

    router.set_routes(Routes(primary_weight=80, canary_weight=20))

    assert set_cookies(kube) == {"podinfo-canary": set_cookie}
    assert http_routes(kube)[0] == sticky_route(cookie, 0, 100)
    assert router.get_routes() == Routes(primary_weight=80, canary_weight=20)
    writes = kube.writes()
    router.reconcile()
    router.set_routes(Routes(primary_weight=80, canary_weight=20))
    assert kube.writes() == writes

    router.set_routes(Routes(primary_weight=100, canary_weight=0))

    # the run is over: no sticky route; the run's cookie is expired where it is still sent
    expiring = with_set_cookie(sticky_route(cookie, 100, 0), f"{cookie}; Max-Age=-1")
    assert http_routes(kube) == [expiring, weighted_at_start]
    assert router.get_routes() == Routes(primary_weight=100, canary_weight=0)

    router.set_routes(Routes(primary_weight=90, canary_weight=10))

    next_cookie = set_cookies(kube)["podinfo-canary"].split(";")[0]
    assert next_cookie != cookie
    assert http_routes(kube)[0] == sticky_route(next_cookie, 0, 100)
    assert len(http_routes(kube)) == 2


def test_primary_cookie_keeps_sessions_on_the_primary_for_a_step(kube: ServedEmulator) -> None:
    """Flagger's deployment strategies doc, "Configuring stickiness for Primary deployment"."""
    canary = validated(
        "session-affinity.yaml",
        **{"analysis.sessionAffinity.primaryCookieName": "primary-flagger-cookie"},
    )
    router = istio(kube, canary)
    router.reconcile()

    router.set_routes(Routes(primary_weight=90, canary_weight=10))

    cookies = set_cookies(kube)
    assert re.fullmatch(f"flagger-cookie={COOKIE_VALUE}; Max-Age=21600", cookies["podinfo-canary"])
    # the primary's cookie lasts one analysis interval
    assert re.fullmatch(
        f"primary-flagger-cookie={COOKIE_VALUE}; Max-Age=60", cookies["podinfo-primary"]
    )
    canary_cookie = cookies["podinfo-canary"].split(";")[0]
    primary_cookie = cookies["podinfo-primary"].split(";")[0]
    assert http_routes(kube) == [
        sticky_route(canary_cookie, 0, 100),
        sticky_route(primary_cookie, 100, 0),
        {
            "route": [
                with_set_cookie(destination("podinfo-primary", 90), cookies["podinfo-primary"]),
                with_set_cookie(destination("podinfo-canary", 10), cookies["podinfo-canary"]),
            ],
            "retries": RETRIES,
        },
    ]
    writes = kube.writes()
    router.set_routes(Routes(primary_weight=90, canary_weight=10))
    router.reconcile()
    assert kube.writes() == writes

    router.set_routes(Routes(primary_weight=80, canary_weight=20))

    # a new step: a new primary cookie, the same canary one
    next_cookies = set_cookies(kube)
    assert next_cookies["podinfo-canary"] == cookies["podinfo-canary"]
    assert next_cookies["podinfo-primary"] != cookies["podinfo-primary"]
    assert router.get_routes() == Routes(primary_weight=80, canary_weight=20)


def test_cookie_attributes_follow_max_age(kube: ServedEmulator) -> None:
    """Flagger's deployment strategies doc, "Configuring additional cookie attributes"."""
    affinity = {
        "cookieName": "flagger-cookie",
        "maxAge": 21600,
        "domain": "fluxcd.io",
        "httpOnly": True,
        "partitioned": True,
        "path": "/flagger",
        "sameSite": "Strict",
        "secure": True,
    }
    router = istio(
        kube, validated("session-affinity.yaml", **{"analysis.sessionAffinity": affinity})
    )
    router.reconcile()
    router.set_routes(Routes(primary_weight=90, canary_weight=10))

    attributes = "; Domain=fluxcd.io; HttpOnly; Partitioned; Path=/flagger; SameSite=Strict; Secure"
    set_cookie = set_cookies(kube)["podinfo-canary"]
    assert re.fullmatch(
        f"flagger-cookie={COOKIE_VALUE}; Max-Age=21600{re.escape(attributes)}", set_cookie
    )

    router.set_routes(Routes(primary_weight=100, canary_weight=0))

    expired = http_routes(kube)[0]["headers"]["response"]["add"]["Set-Cookie"]
    assert expired == f"{set_cookie.split(';')[0]}; Max-Age=-1{attributes}"


# -- A/B testing ----------------------------------------------------------------------------------

AB_MATCH = [
    {"headers": {"user-agent": {"regex": ".*Firefox.*"}}},
    {"headers": {"cookie": {"regex": "^(.*?;)?(type=insider)(;.*)?$"}}},
]


def test_ab_testing_tutorial(kube: ServedEmulator) -> None:
    router = istio(kube, validated("ab-testing.yaml"))

    router.reconcile()

    assert virtual_service(kube)["spec"] == {
        "hosts": ["app.example.com", "podinfo"],
        "gateways": [GATEWAY],
        "http": [
            {
                "match": AB_MATCH,
                "route": [destination("podinfo-primary", 100), destination("podinfo-canary", 0)],
            },
            {"route": [destination("podinfo-primary", 100)]},
        ],
    }
    assert destination_rules(kube, "podinfo") == {
        "podinfo-primary": {"host": "podinfo-primary", "trafficPolicy": TLS_DISABLED},
        "podinfo-canary": {"host": "podinfo-canary", "trafficPolicy": TLS_DISABLED},
    }

    router.set_routes(Routes(primary_weight=0, canary_weight=100))

    # Flagger writes the split's primary weight (0) on the default route's one destination;
    # Istio sends a route with one destination all its traffic either way.
    assert http_routes(kube) == [
        {
            "match": AB_MATCH,
            "route": [destination("podinfo-primary", 0), destination("podinfo-canary", 100)],
        },
        {"route": [destination("podinfo-primary", 100)]},
    ]
    assert router.get_routes() == Routes(primary_weight=0, canary_weight=100)


def test_ab_testing_on_headers_cookies_and_source_labels(kube: ServedEmulator) -> None:
    """The Istio example of Flagger's deployment strategies doc (A/B Testing), with the
    `mesh` gateway that `sourceLabels` need."""
    match = [
        {"headers": {"x-canary": {"exact": "insider"}}},
        {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
        {"sourceLabels": {"app.kubernetes.io/name": "scheduler"}},
    ]
    canary = validated(
        "ab-testing.yaml",
        **{
            "analysis.match": match,
            "analysis.threshold": 10,
            "analysis.iterations": 2,
            "service.gateways": [GATEWAY, "mesh"],
        },
    )
    router = istio(kube, canary)
    router.reconcile()

    router.set_routes(Routes(primary_weight=0, canary_weight=100))

    assert virtual_service(kube)["spec"]["gateways"] == [GATEWAY, "mesh"]
    assert http_routes(kube) == [
        {
            "match": match,
            "route": [destination("podinfo-primary", 0), destination("podinfo-canary", 100)],
        },
        {"route": [destination("podinfo-primary", 100)]},
    ]


# -- traffic mirroring --------------------------------------------------------------------------


def test_traffic_mirroring_tutorial(kube: ServedEmulator) -> None:
    router = istio(kube, validated("traffic-mirroring.yaml"))
    router.reconcile()

    router.set_routes(Routes(primary_weight=100, canary_weight=100, mirror=True))

    assert http_routes(kube) == [
        {
            "route": [destination("podinfo-primary", 100), destination("podinfo-canary", 0)],
            "mirror": {"host": "podinfo-canary"},
            "mirrorPercentage": {"value": 100},
        }
    ]
    assert router.get_routes() == Routes(primary_weight=100, canary_weight=100, mirror=True)

    router.set_routes(Routes(primary_weight=0, canary_weight=100))

    assert http_routes(kube) == [
        {"route": [destination("podinfo-primary", 0), destination("podinfo-canary", 100)]}
    ]


def test_a_full_mirror_without_mirror_weight_has_no_percentage(kube: ServedEmulator) -> None:
    canary = validated("traffic-mirroring.yaml", **{"analysis.mirrorWeight": None})
    router = istio(kube, canary)
    router.reconcile()

    router.set_routes(Routes(primary_weight=100, canary_weight=100, mirror=True))

    [route] = http_routes(kube)
    assert route["mirror"] == {"host": "podinfo-canary"}
    assert "mirrorPercentage" not in route
    assert router.get_routes() == Routes(primary_weight=100, canary_weight=100, mirror=True)


# -- the FAQ ----------------------------------------------------------------------------------


def test_faq_service_with_match_rewrite_headers_and_cors(kube: ServedEmulator) -> None:
    """The FAQ shows the VirtualService for this Canary; its destinations there say
    `podinfo-*`, a slip: Flagger names them after the service, `frontend-*`."""
    router = istio(kube, validated("frontend.yaml"))

    router.reconcile()

    assert virtual_service(kube, "frontend")["spec"] == {
        "gateways": [GATEWAY, "mesh"],
        "hosts": ["frontend.example.com", "frontend"],
        "http": [
            {
                "corsPolicy": {
                    "allowHeaders": ["x-some-header"],
                    "allowMethods": ["GET"],
                    "allowOrigin": ["example.com"],
                    "allowCredentials": False,
                    "maxAge": "24h",
                },
                "headers": {"request": {"add": {"x-some-header": "value"}}},
                "match": [{"uri": {"prefix": "/"}}],
                "rewrite": {"uri": "/"},
                "route": [
                    destination("frontend-primary", 100),
                    destination("frontend-canary", 0),
                ],
                "retries": RETRIES,
            }
        ],
    }
    assert destination_rules(kube, "frontend") == {
        "frontend-primary": {"host": "frontend-primary", "trafficPolicy": TLS_DISABLED},
        "frontend-canary": {"host": "frontend-canary", "trafficPolicy": TLS_DISABLED},
    }

    router.set_routes(Routes(primary_weight=60, canary_weight=40))

    [route] = http_routes(kube, "frontend")
    assert route["route"] == [
        destination("frontend-primary", 60),
        destination("frontend-canary", 40),
    ]
    assert route["match"] == [{"uri": {"prefix": "/"}}]
    assert route["rewrite"] == {"uri": "/"}


def test_faq_service_timeout(kube: ServedEmulator) -> None:
    router = istio(kube, validated("frontend.yaml", **{"service.timeout": "30s"}))

    router.reconcile()

    [route] = http_routes(kube, "frontend")
    assert route["timeout"] == "30s"


def test_faq_delegate_has_no_hosts_and_no_gateways(kube: ServedEmulator) -> None:
    """The FAQ's delegate: Flagger names the VirtualService after the service, which is the
    target here (`podinfo`, as the FAQ's destinations show)."""
    router = istio(kube, validated("delegation.yaml"))

    router.reconcile()

    assert virtual_service(kube)["spec"] == {
        "http": [{"route": [destination("podinfo-primary", 100), destination("podinfo-canary", 0)]}]
    }
    assert destination_rules(kube, "podinfo") == {
        "podinfo-primary": {"host": "podinfo-primary"},
        "podinfo-canary": {"host": "podinfo-canary"},
    }


def test_a_service_that_becomes_a_delegate_loses_its_hosts_and_gateways(
    kube: ServedEmulator,
) -> None:
    istio(kube, validated("progressive-delivery.yaml")).reconcile()

    delegate = validated(
        "progressive-delivery.yaml",
        **{"service.delegation": True, "service.hosts": [], "service.gateways": []},
    )
    istio(kube, delegate).reconcile()

    assert sorted(virtual_service(kube)["spec"]) == ["http"]


# -- TCP --------------------------------------------------------------------------------------


def test_tcp_service_gets_a_tcp_route(kube: ServedEmulator) -> None:
    router = istio(kube, validated("tcp.yaml"))

    router.reconcile()

    assert virtual_service(kube, "tcp-service")["spec"] == {
        "hosts": ["tcp-service"],
        "gateways": [GATEWAY],
        "tcp": [
            {
                "route": [
                    destination("tcp-service-primary", 100, port=7070),
                    destination("tcp-service-canary", 0, port=7070),
                ]
            }
        ],
    }

    router.set_routes(Routes(primary_weight=70, canary_weight=30))

    assert virtual_service(kube, "tcp-service")["spec"]["tcp"] == [
        {
            "route": [
                destination("tcp-service-primary", 70, port=7070),
                destination("tcp-service-canary", 30, port=7070),
            ]
        }
    ]
    assert router.get_routes() == Routes(primary_weight=70, canary_weight=30)


# -- apex metadata ------------------------------------------------------------------------------


def test_apex_labels_and_annotations_go_on_the_virtual_service(kube: ServedEmulator) -> None:
    apex = {"labels": {"team": "web"}, "annotations": {"example.com/owner": "web-team"}}
    canary = validated("progressive-delivery.yaml", **{"service.apex": apex})

    istio(kube, canary).reconcile()

    metadata = virtual_service(kube)["metadata"]
    assert metadata["labels"] == {"team": "web"}
    assert metadata["annotations"] == {"example.com/owner": "web-team"}


@pytest.mark.parametrize("name", sorted(path.name for path in DOCS.glob("*.yaml")))
def test_reconciling_a_docs_canary_twice_writes_nothing_more(
    kube: ServedEmulator, name: str
) -> None:
    router = istio(kube, validated(name))
    router.reconcile()
    writes = kube.writes()

    router.reconcile()

    assert kube.writes() == writes


# -- the generated Services -------------------------------------------------------------------


def test_generated_services_as_the_faq_shows_them(kube: ServedEmulator) -> None:
    """The FAQ's `<svc>-primary` Service, with the tutorial's podinfo (which has a metrics
    port besides 9898, exposed with portDiscovery) and each Service's own metadata."""
    kube.put(DEPLOYMENTS, podinfo_deployment())
    canary = validated(
        "progressive-delivery.yaml",
        **{
            "autoscalerRef": None,
            "service.portDiscovery": True,
            "service.appProtocol": "http",
            "service.primary": {"labels": {"tier": "stable"}},
            "service.canary": {"annotations": {"example.com/canary": "true"}},
        },
    )

    registry.target_for(canary, lambda: kube.api, WorkerScope()).initialize()

    primary = kube.get(SERVICES, NAMESPACE, "podinfo-primary")
    assert primary["metadata"]["labels"] == {"app": "podinfo-primary", "tier": "stable"}
    assert primary["spec"] == {
        "type": "ClusterIP",
        "ports": [
            {
                "name": "http",
                "port": 9898,
                "protocol": "TCP",
                "targetPort": 9898,
                "appProtocol": "http",
            },
            {"name": "http-metrics", "port": 9797, "protocol": "TCP", "targetPort": 9797},
        ],
        "selector": {"app": "podinfo-primary"},
    }
    canary_service = kube.get(SERVICES, NAMESPACE, "podinfo-canary")
    assert canary_service["metadata"]["annotations"] == {"example.com/canary": "true"}
    assert canary_service["spec"]["selector"] == {"app": "podinfo"}
    assert canary_service["spec"]["ports"] == primary["spec"]["ports"]
