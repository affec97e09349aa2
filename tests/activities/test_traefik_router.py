"""TraefikRouter against a real Traefik routing to real `demo.app` processes, and the traefik
built-in metrics against a real Prometheus scraping that Traefik.

One Traefik serves the module; each test writes its own config file whose router matches its
own Host, so the tests do not see each other's routes.
"""

import asyncio
import dataclasses
import itertools
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from activities import bounded_http
from activities.errors import PermanentError
from activities.prometheus_metrics import PrometheusMetrics, builtin_query
from activities.traefik_router import (
    TraefikConfigError,
    TraefikRouter,
    TraefikSettings,
    match_rule,
)
from canary.decision import ALL_TO_PRIMARY, Routes
from canary.spec import LOCAL_KIND
from demo.load import BackgroundLoad
from tests.support.net import free_port
from tests.support.prometheus import running_prometheus, static_scrape_config
from tests.support.traefik import RunningApp, RunningTraefik, running_demo_app, running_traefik

_names = itertools.count(1)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("traefik")


@pytest.fixture(scope="module")
def traefik(workdir: Path) -> Iterator[RunningTraefik]:
    with running_traefik(workdir / "traefik") as running:
        yield running


@pytest.fixture(scope="module")
def v1(workdir: Path) -> Iterator[RunningApp]:
    with running_demo_app("v1", log_path=workdir / "v1.log") as app:
        yield app


@pytest.fixture(scope="module")
def v2(workdir: Path) -> Iterator[RunningApp]:
    with running_demo_app("v2", log_path=workdir / "v2.log") as app:
        yield app


def make_router(
    traefik: RunningTraefik,
    primary_port: int,
    canary_port: int,
    **overrides: object,
) -> TraefikRouter:
    name = f"app{next(_names)}"
    settings = TraefikSettings(
        config_file=traefik.config_file(name),
        service=name,
        target=name,
        primary_port=primary_port,
        canary_port=canary_port,
        entry_point=traefik.entry_point,
        rule=f"Host(`{name}.test`)",
        description=f"test/{name}",
    )
    return TraefikRouter(dataclasses.replace(settings, **overrides))  # type: ignore[arg-type]


def host(router: TraefikRouter) -> str:
    return f"{router.settings.service}.test"


def apply(traefik: RunningTraefik, router: TraefikRouter, routes: Routes) -> None:
    router.set_routes(routes)
    traefik.wait_for_weights(
        router.settings.service,
        {
            router.primary_service: routes.primary_weight,
            router.canary_service: routes.canary_weight,
        },
    )


def test_reconcile_routes_everything_to_the_primary(
    traefik: RunningTraefik, v1: RunningApp
) -> None:
    # The canary's port has nothing behind it: with weight 0 no request may go there.
    router = make_router(traefik, v1.port, free_port())
    assert not router.settings.config_file.exists()
    router.reconcile()
    assert router.get_routes() == ALL_TO_PRIMARY
    traefik.wait_for_weights(
        router.settings.service, {router.primary_service: 100, router.canary_service: 0}
    )
    assert Counter(traefik.versions(100, host=host(router))) == {"v1": 100}


def test_absolute_weights_split_the_traffic(
    traefik: RunningTraefik, v1: RunningApp, v2: RunningApp
) -> None:
    router = make_router(traefik, v1.port, v2.port)
    router.reconcile()

    apply(traefik, router, Routes(primary_weight=0, canary_weight=100))
    assert Counter(traefik.versions(100, host=host(router))) == {"v2": 100}
    assert router.get_routes() == Routes(primary_weight=0, canary_weight=100)

    apply(traefik, router, Routes(primary_weight=50, canary_weight=50))
    counts = Counter(traefik.versions(200, host=host(router)))
    assert set(counts) == {"v1", "v2"}
    assert abs(counts["v1"] - 100) <= 20, counts

    apply(traefik, router, Routes(primary_weight=80, canary_weight=20))
    counts = Counter(traefik.versions(200, host=host(router)))
    assert set(counts) == {"v1", "v2"}
    assert abs(counts["v2"] - 40) <= 15, counts

    apply(traefik, router, ALL_TO_PRIMARY)
    assert Counter(traefik.versions(100, host=host(router))) == {"v1": 100}


def test_mirroring_answers_from_the_primary_and_copies_to_the_canary(
    traefik: RunningTraefik, v1: RunningApp, v2: RunningApp
) -> None:
    router = make_router(traefik, v1.port, v2.port)
    routes = Routes(primary_weight=100, canary_weight=50, mirror=True)
    router.set_routes(routes)
    assert router.get_routes() == routes
    traefik.wait_for_mirror(router.settings.service, router.canary_service, 50)
    assert Counter(traefik.versions(100, host=host(router))) == {"v1": 100}
    mirrored = [
        line
        for line in traefik.metrics().splitlines()
        if line.startswith("traefik_service_requests_total{")
        and f'service="{router.canary_service}@file"' in line
    ]
    assert mirrored, "no request was mirrored to the canary"
    assert 30 <= sum(float(line.rsplit(" ", 1)[1]) for line in mirrored) <= 70


def test_ab_testing_sends_matching_requests_by_the_weights(
    traefik: RunningTraefik, v1: RunningApp, v2: RunningApp
) -> None:
    match = ({"headers": {"x-canary": {"exact": "insider"}}},)
    router = make_router(traefik, v1.port, v2.port, match=match)
    apply(traefik, router, Routes(primary_weight=0, canary_weight=100))
    insider = {"x-canary": "insider"}
    assert Counter(traefik.versions(20, host=host(router), headers=insider)) == {"v2": 20}
    assert Counter(traefik.versions(20, host=host(router))) == {"v1": 20}
    apply(traefik, router, ALL_TO_PRIMARY)
    assert Counter(traefik.versions(20, host=host(router), headers=insider)) == {"v1": 20}


def test_with_its_api_a_written_split_is_served_when_the_call_returns(
    traefik: RunningTraefik, v1: RunningApp, v2: RunningApp
) -> None:
    """No wait between the call and the traffic: the call itself waited for Traefik."""
    router = make_router(
        traefik, v1.port, v2.port, api_url=f"http://127.0.0.1:{traefik.admin_port}"
    )
    router.reconcile()
    assert Counter(traefik.versions(50, host=host(router))) == {"v1": 50}
    router.set_routes(Routes(primary_weight=0, canary_weight=100))
    assert Counter(traefik.versions(50, host=host(router))) == {"v2": 50}
    router.set_routes(Routes(primary_weight=100, canary_weight=30, mirror=True))
    service = traefik.service(router.settings.service) or {}
    assert service.get("mirroring", {}).get("mirrors") == [
        {"name": router.canary_service, "percent": 30}
    ]
    router.set_routes(ALL_TO_PRIMARY)
    assert Counter(traefik.versions(50, host=host(router))) == {"v1": 50}


@pytest.mark.parametrize("api", ["traefik", "nothing"])
def test_a_split_traefik_does_not_serve_fails_the_call_naming_the_file(
    traefik: RunningTraefik, tmp_path: Path, api: str
) -> None:
    """A file Traefik does not watch (or no API there) never shows the split: the call fails
    after the timeout, retryably, saying what it saw last."""
    api_url = (
        f"http://127.0.0.1:{traefik.admin_port}"
        if api == "traefik"
        else f"http://127.0.0.1:{free_port()}"
    )
    config_file = tmp_path / "unwatched.yaml"
    router = make_router(
        traefik,
        free_port(),
        free_port(),
        config_file=config_file,
        api_url=api_url,
        apply_timeout_seconds=0.5,
    )
    with pytest.raises(TraefikConfigError) as raised:
        router.set_routes(Routes(primary_weight=50, canary_weight=50))
    message = str(raised.value)
    assert message.startswith(f"Traefik has not applied {config_file} within 0.5s (last seen: ")
    seen = "no such service" if api == "traefik" else "Connection refused"
    assert seen in message, message
    assert router.get_routes() == Routes(primary_weight=50, canary_weight=50)


def test_match_rules() -> None:
    assert match_rule([{"headers": {"x-canary": {"exact": "insider"}}}]) == (
        "Header(`x-canary`, `insider`)"
    )
    assert match_rule(
        [
            {"headers": {"cookie": {"regex": "^(.*?;)?(canary=always)(;.*)?$"}}},
            {"uri": {"prefix": "/api"}, "method": {"exact": "GET"}},
        ]
    ) == (
        "(HeaderRegexp(`cookie`, `^(.*?;)?(canary=always)(;.*)?$`))"
        " || (PathPrefix(`/api`) && Method(`GET`))"
    )
    with pytest.raises(PermanentError, match=r"match\[0\]\.sourceLabels: provider traefik"):
        match_rule([{"sourceLabels": {"app": "x"}}])
    with pytest.raises(PermanentError, match="backtick"):
        match_rule([{"headers": {"x": {"exact": "a`b"}}}])


def test_same_routes_leave_the_file_alone(traefik: RunningTraefik) -> None:
    router = make_router(traefik, free_port(), free_port())
    routes = Routes(primary_weight=70, canary_weight=30)
    router.set_routes(routes)
    path = router.settings.config_file
    before = path.stat()
    router.set_routes(routes)
    router.reconcile()  # keeps the weights it finds
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert router.get_routes() == routes
    config = yaml.safe_load(path.read_text())
    name = router.settings.service
    assert config["http"]["routers"][name] == {
        "entryPoints": ["web"],
        "rule": f"Host(`{name}.test`)",
        "service": name,
    }
    assert config["http"]["services"][name]["weighted"]["services"] == [
        {"name": f"{name}-primary", "weight": 70},
        {"name": f"{name}-canary", "weight": 30},
    ]


def test_writes_are_atomic(traefik: RunningTraefik, tmp_path: Path) -> None:
    """A reader polling the file never sees a partial config; no temporary file stays."""
    router = make_router(traefik, free_port(), free_port(), config_file=tmp_path / "app.yaml")
    router.reconcile()
    done = threading.Event()
    seen: list[Routes] = []
    problems: list[str] = []

    def read() -> None:
        while not done.is_set():
            text = router.settings.config_file.read_text()
            try:
                seen.append(router.get_routes())
            except PermanentError as error:
                problems.append(f"{error}: {text!r}")

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for weight in itertools.islice(itertools.cycle(range(0, 101, 10)), 100):
            router.set_routes(Routes(primary_weight=100 - weight, canary_weight=weight))
    finally:
        done.set()
        reader.join()
    assert not problems, problems[:3]
    assert len({route.canary_weight for route in seen}) > 1
    assert [path.name for path in tmp_path.iterdir()] == ["app.yaml"]


def test_an_unwritable_config_is_a_clear_error(traefik: RunningTraefik, tmp_path: Path) -> None:
    # Root ignores permission bits: a parent that is a regular file stops anyone.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    config_file = blocker / "app.yaml"
    router = make_router(traefik, free_port(), free_port(), config_file=config_file)
    with pytest.raises(TraefikConfigError, match=rf"Traefik config unwritable: {config_file}: "):
        router.set_routes(Routes(primary_weight=90, canary_weight=10))
    with pytest.raises(TraefikConfigError, match=rf"Traefik config .*: {config_file}: "):
        router.reconcile()
    # The config path itself is a folder.
    folder = tmp_path / "app.yaml"
    folder.mkdir()
    router = make_router(traefik, free_port(), free_port(), config_file=folder)
    with pytest.raises(TraefikConfigError, match=rf"Traefik config \w+: {folder}: .*directory"):
        router.set_routes(Routes(primary_weight=90, canary_weight=10))
    assert set(tmp_path.iterdir()) == {blocker, folder}
    assert not list(folder.iterdir())


def test_get_routes_without_a_config_is_an_error(tmp_path: Path) -> None:
    router = TraefikRouter(
        TraefikSettings(
            config_file=tmp_path / "none.yaml",
            service="app",
            target="app",
            primary_port=1,
            canary_port=2,
        )
    )
    with pytest.raises(PermanentError, match=r"none\.yaml does not exist"):
        router.get_routes()
    (tmp_path / "none.yaml").write_text("http: {}\n")
    with pytest.raises(PermanentError, match="no service 'app'"):
        router.get_routes()
    router.reconcile()  # a config without our routes is taken over at 100/0
    assert router.get_routes() == ALL_TO_PRIMARY


async def query_values(address: str, queries: list[str]) -> list[float | None]:
    async with bounded_http.new_client() as client:
        metrics = PrometheusMetrics(address, client)
        return [await metrics.query_value(query) for query in queries]


def test_traefik_builtin_metrics_measure_the_canary(
    traefik: RunningTraefik, v1: RunningApp, workdir: Path
) -> None:
    """Real Prometheus scrapes the Traefik above while a canary fails every fourth request
    and takes 20 ms: the built-in queries see 75% success and a p99 of 20 ms or more."""
    with running_demo_app("v3", error_rate=0.25, latency_ms=20, log_path=workdir / "v3.log") as v3:
        router = make_router(traefik, v1.port, v3.port)
        apply(traefik, router, Routes(primary_weight=50, canary_weight=50))
        target = router.settings.target
        headers = {"Host": host(router)}
        scrape = static_scrape_config("traefik", [traefik.metrics_target])
        with (
            BackgroundLoad(f"{traefik.address}/", rate=100, duration=30, headers=headers) as load,
            running_prometheus(workdir / "prometheus", [scrape]) as prometheus,
        ):
            series = f'traefik_service_requests_total{{service="{target}-canary@file"}}'
            prometheus.wait_for(f"count_over_time({series}[1m]) >= 6")
            labels = {item["metric"]["service"] for item in prometheus.query(series)}
            assert labels == {f"{target}-canary@file"}
            assert {item["metric"]["code"] for item in prometheus.query(series)} == {"200", "500"}

            queries = [
                builtin_query(
                    "traefik",
                    metric,
                    namespace="test",
                    target=name,
                    interval="1m",
                    target_kind=LOCAL_KIND,
                )
                for metric, name in [
                    ("request-success-rate", target),
                    ("request-duration", target),
                    ("request-success-rate", "idle"),
                ]
            ]
            success, duration, idle = asyncio.run(query_values(prometheus.address, queries))
        assert load.result.sent > 0
        assert idle is None  # no traffic: no value, not 0% and not an error
        assert success is not None and 72.0 <= success <= 78.0, success
        # Every canary answer takes 20 ms and more: the p99 is in milliseconds, about 24.85
        # (in the (10 ms, 25 ms] bucket) on an idle machine, and up to the largest bucket's
        # 5 s on a busy one; seconds would be under 1, microseconds over 5000.
        assert duration is not None and 20.0 <= duration <= 5000.0, duration


def test_traefik_builtin_queries_select_the_canary_service() -> None:
    query = builtin_query(
        "traefik",
        "request-success-rate",
        namespace="test",
        target="podinfo",
        interval="1m",
        target_kind=LOCAL_KIND,
    )
    assert query == (
        '(sum(rate(traefik_service_requests_total{service="podinfo-canary@file", code!~"5.."}'
        "[1m])) or vector(0)) / sum(rate(traefik_service_requests_total"
        '{service="podinfo-canary@file"}[1m])) * 100'
    )
