"""The activities' registry: one builder per entry of the capability table, unknown names
refused, and the metrics providers behind the `MetricsProvider` protocol."""

import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import kubernetes
import pytest

from activities import bounded_http
from activities import providers as registry
from activities.errors import MetricsUnavailableError, PermanentError
from activities.no_router import NoRouter
from activities.prometheus_metrics import PrometheusMetrics
from activities.scope import WorkerScope
from activities.traefik_router import TraefikRouter
from activities.traefik_service_router import TraefikServiceRouter
from canary import providers
from canary.decision import ALL_TO_PRIMARY
from canary.spec import (
    LOCAL_KIND,
    Analysis,
    Canary,
    CanarySpec,
    LocalProcess,
    ObjectMeta,
    ObjectRef,
    Service,
    Traefik,
)


def deployment_canary(provider: str | None) -> Canary:
    return Canary(
        api_version="flagger.app/v1beta1",
        kind="Canary",
        metadata=ObjectMeta(name="podinfo", namespace="test"),
        spec=CanarySpec(
            provider=provider,
            target_ref=ObjectRef(kind="Deployment", name="podinfo"),
            service=Service(port=9898),
            analysis=Analysis(iterations=5),
        ),
    )


def no_api() -> object:
    raise AssertionError("this router needs no Kubernetes client")


kube_api = kubernetes.client.ApiClient(kubernetes.client.Configuration(host="http://127.0.0.1:1"))
"""A client the registry hands to a Kubernetes router; building one sends no request."""


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with bounded_http.new_client() as client:
        yield client


def test_the_registry_has_one_builder_per_entry_of_the_capability_table() -> None:
    assert set(registry.ROUTERS) == set(providers.ROUTERS)
    assert set(registry.TARGETS) == set(providers.TARGET_KINDS)
    assert set(registry.METRICS) == set(providers.METRICS_PROVIDERS)


def test_every_router_routes_only_target_kinds_coalmine_runs() -> None:
    for name, entry in providers.ROUTERS.items():
        assert entry.target_kinds, name
        assert set(entry.target_kinds) <= set(providers.TARGET_KINDS), name
        assert set(entry.by_target_kind) <= set(entry.target_kinds), name
        for kind, way in entry.by_target_kind.items():
            assert way.target_kinds == (kind,), (name, kind)
            assert not way.by_target_kind, (name, kind)
            assert providers.router(name, kind) is way


def test_traefik_routes_and_measures_each_target_kind_its_own_way() -> None:
    service = providers.router("traefik", "Deployment")
    local = providers.router("traefik", LOCAL_KIND)
    assert service is not None and local is not None
    assert not service.match_fields and not service.mirroring and not service.session_affinity
    assert local.header_match and local.mirroring
    assert "@kubernetescrd" in service.builtin_metrics["request-success-rate"]
    assert "@file" in local.builtin_metrics["request-success-rate"]
    assert providers.router("istio", "Deployment") is providers.router("istio")


def test_traefik_builds_the_router_of_the_target_kind(tmp_path: Path) -> None:
    deployment = deployment_canary("traefik")
    service_router = registry.router_for(deployment, lambda: kube_api, WorkerScope())
    assert isinstance(service_router, TraefikServiceRouter)

    spec = deployment.spec.model_copy(
        update={
            "target_ref": ObjectRef(kind=LOCAL_KIND, name="podinfo"),
            "local": LocalProcess(command="app", image="v1", primary_port=1, canary_port=2),
            "traefik": Traefik(config_file="podinfo.yaml"),
        }
    )
    local = deployment.model_copy(update={"spec": spec})
    scope = WorkerScope(allow_local_targets=True, local_root=tmp_path)
    assert isinstance(registry.router_for(local, no_api, scope), TraefikRouter)  # type: ignore[arg-type]


@pytest.mark.parametrize("provider", ["nginx", "istio:v1", "kubernetes:"])
def test_an_unknown_router_is_refused_naming_it(provider: str) -> None:
    with pytest.raises(PermanentError, match=f"spec.provider: unknown provider {provider!r}"):
        registry.router_for(deployment_canary(provider), no_api, WorkerScope())  # type: ignore[arg-type]


def test_a_spec_without_provider_gets_the_workers_default() -> None:
    canary = deployment_canary(None)
    router = registry.router_for(canary, no_api, WorkerScope(), "kubernetes")  # type: ignore[arg-type]
    assert isinstance(router, NoRouter)
    assert router.get_routes() == ALL_TO_PRIMARY


def test_an_unknown_target_kind_is_refused_naming_it() -> None:
    canary = deployment_canary("kubernetes")
    spec = canary.spec.model_copy(update={"target_ref": ObjectRef(kind="StatefulSet", name="x")})
    with pytest.raises(PermanentError, match="unknown target kind 'StatefulSet'"):
        registry.target_for(canary.model_copy(update={"spec": spec}), no_api, WorkerScope())  # type: ignore[arg-type]


async def test_the_metrics_factory_builds_prometheus(client: httpx.AsyncClient) -> None:
    source = registry.metrics_provider_for("prometheus", "http://127.0.0.1:1", client, 1.0)
    assert isinstance(source, PrometheusMetrics)


@pytest.mark.parametrize("provider_type", ["cloudwatch", "Prometheus", ""])
async def test_the_metrics_factory_refuses_unknown_types(
    client: httpx.AsyncClient, provider_type: str
) -> None:
    with pytest.raises(PermanentError, match=f"unknown metrics provider {provider_type!r}"):
        registry.metrics_provider_for(provider_type, "http://127.0.0.1:1", client, 1.0)


@pytest.fixture
def empty_answers() -> Iterator[str]:
    """A server that answers every query with an empty vector, as a Prometheus with no data
    for it would, even `vector(1)`: something is there, but it is not a working Prometheus."""

    class Empty(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(
                {"status": "success", "data": {"resultType": "vector", "result": []}}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Empty) as server:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()


async def test_no_values_is_an_answer_but_not_availability(
    client: httpx.AsyncClient, empty_answers: str
) -> None:
    source = registry.metrics_provider_for("prometheus", empty_answers, client, 5.0)

    assert await source.query_value("up") is None
    with pytest.raises(MetricsUnavailableError, match=r"vector\(1\) does not answer 1"):
        await source.check_available()
