"""TraefikServiceRouter (provider traefik with a Deployment) against a kmock Kubernetes emulator
over real HTTP: the TraefikService it stores, field by field, for the Canary of Flagger's
Traefik tutorial. Then a real Traefik reads it from the emulator (its Kubernetes CRD provider)
and routes to real `demo.app` processes, and a real Prometheus scraping that Traefik answers
the built-in queries."""

import asyncio
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from activities import bounded_http
from activities import providers as registry
from activities.errors import PermanentError
from activities.prometheus_metrics import PrometheusMetrics, builtin_query
from activities.scope import WorkerScope
from activities.traefik_router import TraefikRouter
from activities.traefik_service_router import TraefikServiceRouter
from canary.decision import ALL_TO_CANARY, ALL_TO_PRIMARY, Routes
from canary.loader import load_canary
from canary.spec import Canary
from demo.load import BackgroundLoad
from tests.support.kube import (
    NAMESPACE,
    ServedEmulator,
    kube_fixture,  # noqa: F401
    served_emulator,
)
from tests.support.prometheus import running_prometheus, static_scrape_config
from tests.support.traefik import (
    RunningApp,
    RunningTraefik,
    bump_resource_version,
    local_service,
    running_demo_app,
    running_traefik_crd,
)

TRAEFIK_SERVICES = "traefik.io/v1alpha1/traefikservices"
SPECS = Path(__file__).resolve().parents[1] / "canary" / "specs"
TUTORIAL = SPECS / "traefik-podinfo.yaml"


def tutorial(service: dict[str, Any] | None = None) -> Canary:
    document = yaml.safe_load(TUTORIAL.read_text())
    document["spec"]["service"].update(service or {})
    loaded = load_canary(yaml.safe_dump(document), TUTORIAL.name)
    assert loaded.warnings == []
    return loaded.canary


def router_for(canary: Canary, kube: ServedEmulator, scope: WorkerScope | None = None) -> Any:
    return registry.router_for(canary, lambda: kube.api, scope or WorkerScope())


def weighted(*services: tuple[str, int]) -> dict[str, Any]:
    return {
        "weighted": {
            "services": [
                {"name": name, "namespace": NAMESPACE, "port": 80, "weight": weight}
                for name, weight in services
            ]
        }
    }


def stored_spec(kube: ServedEmulator, name: str = "podinfo") -> dict[str, Any]:
    spec: dict[str, Any] = kube.get(TRAEFIK_SERVICES, NAMESPACE, name)["spec"]
    return spec


def test_the_tutorial_canary_gets_flaggers_traefik_service(kube: ServedEmulator) -> None:
    router = router_for(tutorial(), kube)
    assert isinstance(router, TraefikServiceRouter)

    router.reconcile()

    assert kube.get(TRAEFIK_SERVICES, NAMESPACE, "podinfo") == {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "TraefikService",
        "metadata": {"name": "podinfo", "namespace": NAMESPACE},
        "spec": weighted(("podinfo-primary", 100)),
    }
    assert router.get_routes() == ALL_TO_PRIMARY


def test_set_routes_weighs_both_services_and_writes_only_changes(kube: ServedEmulator) -> None:
    router = router_for(tutorial(), kube)
    router.reconcile()

    router.set_routes(Routes(primary_weight=95, canary_weight=5))
    writes = kube.writes()
    router.set_routes(Routes(primary_weight=95, canary_weight=5))

    assert kube.writes() == writes, "the same weights are not written again"
    assert stored_spec(kube) == weighted(("podinfo-primary", 95), ("podinfo-canary", 5))
    assert router.get_routes() == Routes(primary_weight=95, canary_weight=5)


@pytest.mark.parametrize(
    ("routes", "services"),
    [
        (ALL_TO_CANARY, [("podinfo-canary", 100)]),
        (ALL_TO_PRIMARY, [("podinfo-primary", 100)]),
    ],
    ids=["all-to-canary", "all-to-primary"],
)
def test_a_service_without_a_share_is_left_out(
    kube: ServedEmulator, routes: Routes, services: list[tuple[str, int]]
) -> None:
    """Traefik reads a missing weight as 1: a weight of 0 is written by leaving the service out."""
    router = router_for(tutorial(), kube)
    router.reconcile()
    router.set_routes(Routes(primary_weight=50, canary_weight=50))

    router.set_routes(routes)

    assert stored_spec(kube) == weighted(*services)
    assert router.get_routes() == routes


def test_reconcile_keeps_the_weights_and_restores_the_spec(kube: ServedEmulator) -> None:
    router = router_for(tutorial(), kube)
    router.reconcile()
    router.set_routes(Routes(primary_weight=60, canary_weight=40))
    changed = kube.get(TRAEFIK_SERVICES, NAMESPACE, "podinfo")
    changed["spec"]["weighted"]["services"][0]["port"] = 8080
    changed["spec"]["mirroring"] = {"name": "elsewhere", "port": 80}
    kube.put(TRAEFIK_SERVICES, changed)

    router.reconcile()

    assert stored_spec(kube) == weighted(("podinfo-primary", 60), ("podinfo-canary", 40))


def test_service_name_and_apex_metadata_name_the_traefik_service(kube: ServedEmulator) -> None:
    apex = {"labels": {"team": "web"}, "annotations": {"owner": "web@example.com"}}
    router = router_for(tutorial({"name": "frontend", "apex": apex}), kube)
    router.reconcile()
    router.set_routes(Routes(primary_weight=90, canary_weight=10))

    stored = kube.get(TRAEFIK_SERVICES, NAMESPACE, "frontend")
    assert stored["metadata"]["labels"] == {"team": "web"}
    assert stored["metadata"]["annotations"] == {"owner": "web@example.com"}
    assert stored["spec"] == weighted(("frontend-primary", 90), ("frontend-canary", 10))


def test_a_deployment_needs_no_local_targets_but_a_namespace_the_worker_may_touch(
    kube: ServedEmulator,
) -> None:
    canary = tutorial()
    router = router_for(canary, kube, WorkerScope(allow_local_targets=False))
    assert isinstance(router, TraefikServiceRouter)
    assert not isinstance(router, TraefikRouter)

    with pytest.raises(PermanentError, match="may not touch Kubernetes namespace 'test'"):
        router_for(canary, kube, WorkerScope(namespaces=frozenset({"other"})))


def test_get_routes_of_a_missing_traefik_service_is_an_error_naming_it(
    kube: ServedEmulator,
) -> None:
    with pytest.raises(PermanentError, match="traefikservice test/podinfo not found"):
        router_for(tutorial(), kube).get_routes()


def test_the_builtin_queries_select_the_canary_service_as_flaggers_observer_does() -> None:
    query = builtin_query(
        "traefik",
        "request-duration",
        namespace=NAMESPACE,
        target="podinfo",
        interval="1m",
        target_kind="Deployment",
    )
    assert query == (
        "histogram_quantile(0.99, sum by (le) (rate(traefik_service_request_duration_seconds_bucket"
        '{service=~"test-podinfo-canary-[0-9a-zA-Z-]+@kubernetescrd"}[1m]))) * 1000'
    )


def test_mirrored_routes_are_refused(kube: ServedEmulator) -> None:
    router = router_for(tutorial(), kube)
    router.reconcile()
    with pytest.raises(PermanentError, match="cannot mirror"):
        router.set_routes(Routes(primary_weight=100, canary_weight=100, mirror=True))


# -- a real Traefik reading the emulator ------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    kube: ServedEmulator
    traefik: RunningTraefik
    workdir: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("traefik-crd")
    with (
        served_emulator() as kube,
        running_traefik_crd(workdir / "traefik", kube, NAMESPACE) as traefik,
    ):
        yield Cluster(kube, traefik, workdir)


def expose(cluster: Cluster, service: str, primary: RunningApp, canary: RunningApp) -> str:
    """What the cluster has besides coalmine's TraefikService: the user's IngressRoute for
    host `<service>.example.com`, and Services `<service>-primary`/`-canary` on port 80 with
    the apps as their ready endpoints. Answers the host."""
    host = f"{service}.example.com"
    # Created through the API, so that Traefik's watches see them.
    core = kubernetes.client.CoreV1Api(cluster.kube.api)
    discovery = kubernetes.client.DiscoveryV1Api(cluster.kube.api)
    for name, app in ((f"{service}-primary", primary), (f"{service}-canary", canary)):
        kubernetes_service, endpoints = local_service(NAMESPACE, name, 80, app)
        core.create_namespaced_service(NAMESPACE, kubernetes_service)  # type: ignore[arg-type]
        discovery.create_namespaced_endpoint_slice(NAMESPACE, endpoints)  # type: ignore[arg-type]
    route = {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "IngressRoute",
        "metadata": {"name": service, "namespace": NAMESPACE},
        "spec": {
            "entryPoints": ["web"],
            "routes": [
                {
                    "match": f"Host(`{host}`)",
                    "kind": "Rule",
                    "services": [{"name": service, "kind": "TraefikService"}],
                }
            ],
        },
    }
    kubernetes.client.CustomObjectsApi(cluster.kube.api).create_namespaced_custom_object(
        "traefik.io", "v1alpha1", NAMESPACE, "ingressroutes", route
    )
    return host


def apply(cluster: Cluster, router: TraefikServiceRouter, routes: Routes) -> None:
    """Set the routes and wait until Traefik has loaded the TraefikService's new weights."""
    router.set_routes(routes)
    service = router.settings.service
    bump_resource_version(cluster.kube, service, NAMESPACE)
    expected = {
        f"{NAMESPACE}-{name}-80": weight
        for name, weight in (
            (f"{service}-primary", routes.primary_weight),
            (f"{service}-canary", routes.canary_weight),
        )
        if weight
    }

    def loaded() -> bool:
        found = cluster.traefik.api(f"/api/http/services/{NAMESPACE}-{service}@kubernetescrd")
        children = ((found or {}).get("weighted") or {}).get("services") or []
        return {child["name"]: child.get("weight", 1) for child in children} == expected

    cluster.traefik.wait_for(loaded, f"weights {expected} of {service}")


def test_real_traefik_routes_by_the_traefik_service_written(cluster: Cluster) -> None:
    with (
        running_demo_app("v1", log_path=cluster.workdir / "v1.log") as v1,
        running_demo_app("v2", log_path=cluster.workdir / "v2.log") as v2,
    ):
        host = expose(cluster, "podinfo", v1, v2)
        router = router_for(tutorial(), cluster.kube)
        router.reconcile()

        apply(cluster, router, ALL_TO_PRIMARY)
        assert set(cluster.traefik.versions(10, host=host)) == {"v1"}

        apply(cluster, router, Routes(primary_weight=50, canary_weight=50))
        assert Counter(cluster.traefik.versions(20, host=host)) == {"v1": 10, "v2": 10}

        apply(cluster, router, ALL_TO_CANARY)
        assert set(cluster.traefik.versions(10, host=host)) == {"v2"}


async def query_values(address: str, queries: list[str]) -> list[float | None]:
    async with bounded_http.new_client() as client:
        metrics = PrometheusMetrics(address, client)
        return [await metrics.query_value(query) for query in queries]


def test_the_builtin_metrics_measure_the_canary_service_in_real_traefik(
    cluster: Cluster,
) -> None:
    """A canary that fails every fourth request and takes 20 ms, behind a TraefikService named
    by `service.name` (not the target): 75% success and a p99 of 20 ms or more."""
    workdir = cluster.workdir
    with (
        running_demo_app("v1", log_path=workdir / "stable.log") as v1,
        running_demo_app("v3", error_rate=0.25, latency_ms=20, log_path=workdir / "v3.log") as v3,
    ):
        host = expose(cluster, "frontend", v1, v3)
        router = router_for(tutorial({"name": "frontend"}), cluster.kube)
        router.reconcile()
        apply(cluster, router, Routes(primary_weight=50, canary_weight=50))
        scrape = static_scrape_config("traefik", [cluster.traefik.metrics_target])
        with (
            BackgroundLoad(
                f"{cluster.traefik.address}/", rate=100, duration=30, headers={"Host": host}
            ) as load,
            running_prometheus(workdir / "prometheus", [scrape]) as prometheus,
        ):
            series = (
                'traefik_service_requests_total{service="test-frontend-canary-80@kubernetescrd"}'
            )
            prometheus.wait_for(f"count_over_time({series}[1m]) >= 6")
            queries = [
                builtin_query(
                    "traefik",
                    metric,
                    namespace=NAMESPACE,
                    target="podinfo",
                    service=service,
                    interval="1m",
                    target_kind="Deployment",
                )
                for metric, service in [
                    ("request-success-rate", "frontend"),
                    ("request-duration", "frontend"),
                    ("request-success-rate", "idle"),
                ]
            ]
            success, duration, idle = asyncio.run(query_values(prometheus.address, queries))
        assert load.result.sent > 0
        assert idle is None
        assert success is not None and 72.0 <= success <= 78.0, success
        # milliseconds (seconds would be under 1); a busy machine adds its delay, up to the
        # largest bucket's 5 s
        assert duration is not None and 20.0 <= duration <= 5000.0, duration
