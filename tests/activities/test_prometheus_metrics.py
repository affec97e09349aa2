"""PrometheusMetrics against a real Prometheus scraping an exporter with known rates, and
against local servers that answer what Prometheus never would."""

import asyncio
import base64
import json
import socket
import threading
import tracemalloc
from collections.abc import AsyncIterator, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from activities import bounded_http
from activities.errors import MetricsUnavailableError, PermanentError
from activities.metrics_http import MetricsAccess
from activities.prometheus_metrics import PrometheusMetrics, builtin_query, render_query
from canary import providers
from canary.spec import BUILTIN_METRICS, QUERY_PLACEHOLDERS
from tests.support.exporter import MetricsExporter
from tests.support.hostile_http import ODDITIES, HostileServer, vector
from tests.support.metrics_api import MetricsApi, SeenRequest
from tests.support.net import free_port
from tests.support.prometheus import RunningPrometheus, running_prometheus, static_scrape_config

NAMESPACE = "test"
TARGET = "podinfo"
ODD_WORKLOAD = 'odd"name\\with-quote'
"""A label value holding `"` and `\\`: pasted unescaped, it would end the PromQL string."""
DURATION_SHARES = {25.0: 0.50, 50.0: 0.30, 100.0: 0.15, 250.0: 0.03, 500.0: 0.02}
HTTP_DURATION_SHARES = {ms / 1000: share for ms, share in DURATION_SHARES.items()}
"""The same durations in seconds, as a workload's own `http_request_duration_seconds`."""
CANARY_POD = f"{TARGET}-7d9f8b6c4-x2x9z"


def istio_labels(workload: str, namespace: str = NAMESPACE, **extra: str) -> dict[str, str]:
    return {
        "reporter": "destination",
        "destination_workload_namespace": namespace,
        "destination_workload": workload,
        **extra,
    }


def prometheus_quantile(q: float, shares: Mapping[float, float]) -> float:
    """histogram_quantile's rule: find the bucket holding rank q, interpolate linearly in it
    (the first bucket starts at 0; a rank in the +Inf bucket gives the highest finite bound)."""
    below = 0.0
    lower = 0.0
    for upper in sorted(shares):
        if below + shares[upper] >= q:
            return lower + (upper - lower) * (q - below) / shares[upper]
        below += shares[upper]
        lower = upper
    return lower


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPrometheus]:
    exporter = MetricsExporter()
    requests_total = "istio_requests_total"
    exporter.set_rate(requests_total, istio_labels(TARGET, response_code="200"), 98.0)
    exporter.set_rate(requests_total, istio_labels(TARGET, response_code="503"), 2.0)
    # Series the built-in queries must leave out: another reporter, namespace and workload.
    source = {**istio_labels(TARGET, response_code="500"), "reporter": "source"}
    exporter.set_rate(requests_total, source, 50.0)
    exporter.set_rate(requests_total, istio_labels(TARGET, "other", response_code="500"), 50.0)
    exporter.set_rate(requests_total, istio_labels(f"{TARGET}-primary", response_code="500"), 50.0)
    exporter.set_rate(requests_total, istio_labels("idle", response_code="200"), 0.0)
    exporter.set_rate(requests_total, istio_labels(ODD_WORKLOAD, response_code="200"), 7.0)
    duration = "istio_request_duration_milliseconds"
    exporter.set_histogram(duration, istio_labels(TARGET), 100.0, DURATION_SHARES)
    exporter.set_histogram(duration, istio_labels(f"{TARGET}-primary"), 100.0, {5000.0: 1.0})
    # What the workload reports itself (the Gateway API router's built-in metrics): 95 of 100
    # canary requests a second succeed; the primary's pods, with one more name part, fail.
    http = "http_request_duration_seconds"
    for pod, status, rate in (
        (CANARY_POD, "200", 95.0),
        (CANARY_POD, "503", 5.0),
        (f"{TARGET}-primary-5c7d9b-q8r2t", "500", 50.0),
    ):
        labels = {"kubernetes_namespace": NAMESPACE, "kubernetes_pod_name": pod, "status": status}
        exporter.set_histogram(http, labels, rate, HTTP_DURATION_SHARES)

    workdir = tmp_path_factory.mktemp("prometheus")
    scrape = static_scrape_config("istio", [exporter.target], scrape_interval="1s")
    with exporter, running_prometheus(workdir, [scrape]) as server:
        # Seven samples a second apart: enough for the 5s-window rates below to be whole.
        server.wait_for(
            f'count_over_time({requests_total}{{destination_workload="{TARGET}"}}[1m]) >= 7'
        )
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with bounded_http.new_client() as client:
        yield client


@pytest.fixture
def metrics(prometheus: RunningPrometheus, client: httpx.AsyncClient) -> PrometheusMetrics:
    return PrometheusMetrics(prometheus.address, client)


async def test_builtin_success_rate_is_the_percent_of_non_5xx_requests(
    metrics: PrometheusMetrics,
) -> None:
    query = builtin_query(
        "istio", "request-success-rate", namespace=NAMESPACE, target=TARGET, interval="1m"
    )

    assert await metrics.query_value(query) == pytest.approx(98.0, abs=0.01)


async def test_builtin_duration_is_the_p99_in_milliseconds(metrics: PrometheusMetrics) -> None:
    query = builtin_query(
        "istio", "request-duration", namespace=NAMESPACE, target=TARGET, interval="1m"
    )
    expected = prometheus_quantile(0.99, DURATION_SHARES)

    assert expected == pytest.approx(375.0)
    assert await metrics.query_value(query) == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("provider", ["gatewayapi:v1", "gatewayapi:v1beta1"])
async def test_gatewayapi_builtins_read_what_the_canary_pods_report(
    metrics: PrometheusMetrics, provider: str
) -> None:
    def query(metric: str) -> str:
        return builtin_query(provider, metric, namespace=NAMESPACE, target=TARGET, interval="1m")

    success = await metrics.query_value(query("request-success-rate"))
    duration = await metrics.query_value(query("request-duration"))

    assert success == pytest.approx(95.0, abs=0.01)
    assert duration == pytest.approx(prometheus_quantile(0.99, DURATION_SHARES), rel=1e-3)


@pytest.mark.parametrize("metric", ["request-success-rate", "request-duration"])
async def test_a_target_without_series_has_no_values(
    metrics: PrometheusMetrics, metric: str
) -> None:
    query = builtin_query("istio", metric, namespace=NAMESPACE, target="absent", interval="1m")

    assert await metrics.query_value(query) is None


async def test_no_traffic_makes_nan_which_is_no_values(
    metrics: PrometheusMetrics, prometheus: RunningPrometheus
) -> None:
    query = builtin_query(
        "istio", "request-success-rate", namespace=NAMESPACE, target="idle", interval="1m"
    )

    assert prometheus.query(query)[0]["value"][1] == "NaN"
    assert await metrics.query_value(query) is None


async def test_a_rendered_custom_query_gives_its_rate(metrics: PrometheusMetrics) -> None:
    template = (
        'sum(rate(istio_requests_total{reporter="{{ variables.reporter }}",'
        ' destination_workload_namespace="{{namespace}}", destination_workload="{{ target }}",'
        ' response_code=~"5.."}[{{ interval }}]))'
    )
    query = render_query(
        template,
        namespace=NAMESPACE,
        target=TARGET,
        interval="5s",
        variables={"reporter": "destination"},
    )

    # the 5xx series alone (2/s; the others are 98/s and 50/s); a 5 s rate moves with late
    # scrapes on a busy machine, so the bound tells the series apart, no more
    assert await metrics.query_value(query) == pytest.approx(2.0, rel=0.5)


async def test_a_value_with_quote_and_backslash_matches_its_own_series_only(
    metrics: PrometheusMetrics,
) -> None:
    template = (
        'sum(rate(istio_requests_total{destination_workload="{{ variables.workload }}",'
        ' destination_workload_namespace="{{ namespace }}"}[{{ interval }}]))'
    )
    query = render_query(
        template,
        namespace=NAMESPACE,
        target=TARGET,
        interval="5s",
        variables={"workload": ODD_WORKLOAD},
    )

    assert await metrics.query_value(query) == pytest.approx(7.0, rel=0.3)  # not 2, 50 or 98


@pytest.mark.parametrize("order", ["sort_desc", "sort"])
async def test_several_series_are_an_error_naming_how_many(
    metrics: PrometheusMetrics, order: str
) -> None:
    """Which of several series counts would be arbitrary (here 98/s or 2/s)."""
    query = (
        f'{order}(sum by (response_code) (rate(istio_requests_total{{reporter="destination",'
        f' destination_workload_namespace="{NAMESPACE}", destination_workload="{TARGET}"}}[5s])))'
    )

    with pytest.raises(PermanentError) as raised:
        await metrics.query_value(query)

    assert str(raised.value) == (
        f"query returns 2 series, not one; aggregate it (e.g. sum(...)); query: {query}"
    )


async def test_a_scalar_result_is_its_value(metrics: PrometheusMetrics) -> None:
    assert await metrics.query_value("2 * 21") == 42.0


async def test_invalid_promql_is_permanent_with_prometheus_error_text(
    metrics: PrometheusMetrics,
) -> None:
    query = "sum(rate(istio_requests_total[1m])"

    with pytest.raises(PermanentError) as raised:
        await metrics.query_value(query)

    assert "status 400" in str(raised.value)
    assert "parse error" in str(raised.value)
    assert str(raised.value).endswith(f"query: {query}")


async def test_a_range_vector_is_permanent(metrics: PrometheusMetrics) -> None:
    with pytest.raises(PermanentError, match="range vector"):
        await metrics.query_value("istio_requests_total[1m]")


async def test_a_running_prometheus_is_available(metrics: PrometheusMetrics) -> None:
    await metrics.check_available()


async def test_a_closed_port_is_not_available(client: httpx.AsyncClient) -> None:
    address = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(MetricsUnavailableError, match="connection refused"):
        await PrometheusMetrics(address, client).check_available()


async def test_a_closed_port_is_unavailable(client: httpx.AsyncClient) -> None:
    address = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(MetricsUnavailableError) as raised:
        await PrometheusMetrics(address, client).query_value("up")

    assert str(raised.value) == f"metrics unavailable: prometheus at {address}: connection refused"


async def test_a_server_that_never_answers_is_unavailable_after_the_timeout(
    client: httpx.AsyncClient,
) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"http://127.0.0.1:{silent.getsockname()[1]}"

        with pytest.raises(MetricsUnavailableError, match=r"timed out after 0\.5s$"):
            await PrometheusMetrics(address, client, timeout_seconds=0.5).query_value("up")


async def test_a_server_error_is_unavailable_with_its_error_text(
    client: httpx.AsyncClient,
) -> None:
    class Overloaded(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(
                {"status": "error", "errorType": "timeout", "error": "query timed out"}
            ).encode()
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Overloaded) as server:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        address = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            with pytest.raises(MetricsUnavailableError) as raised:
                await PrometheusMetrics(address, client).query_value("up")
        finally:
            server.shutdown()

    assert str(raised.value) == (
        f"metrics unavailable: prometheus at {address}: status 503: query timed out"
    )


@pytest.mark.parametrize(("path", "kind", "message"), ODDITIES)
async def test_an_answer_that_is_not_one_instant_value_is_an_error_never_a_crash(
    client: httpx.AsyncClient, path: str, kind: type[Exception], message: str
) -> None:
    with HostileServer() as server:
        address = f"{server.url}{path}"
        # only the dripping answers need the deadline; the others get room on a busy machine
        deadline = 1 if message.startswith("timed out") else 20
        prometheus = PrometheusMetrics(address, client, timeout_seconds=deadline)
        tracemalloc.start()
        try:
            with pytest.raises(kind) as raised:
                await asyncio.wait_for(prometheus.query_value("up"), timeout=30)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    unavailable = f"metrics unavailable: prometheus at {address}: "
    prefix = "" if kind is PermanentError else unavailable
    assert str(raised.value).startswith(prefix + message)
    assert peak < 32 * 1024 * 1024


def test_render_fills_every_placeholder_with_or_without_spaces() -> None:
    template = (
        "{{namespace}} {{ target }} {{  interval}} {{ service }} {{ variables.code }}"
        " {{variables.code}}"
    )

    rendered = render_query(
        template,
        namespace="test",
        target="podinfo",
        interval="1m30s",
        service="podinfo-svc",
        variables={"code": "503"},
    )

    assert rendered == "test podinfo 1m30s podinfo-svc 503 503"


def test_render_escapes_quotes_and_backslashes_in_every_value_but_the_interval() -> None:
    template = (
        'x{a="{{ namespace }}", b="{{ target }}", c="{{ service }}", d="{{ variables.v }}"}'
        "[{{ interval }}]"
    )

    rendered = render_query(
        template,
        namespace='ns"',
        target="t\\",
        interval="1m",
        service='"} or vector(1) #',
        variables={"v": '\\"'},
    )

    assert rendered == ('x{a="ns\\"", b="t\\\\", c="\\"} or vector(1) #", d="\\\\\\""}[1m]')


def test_render_fills_name_ingress_and_route_when_given() -> None:
    template = " ".join(f"{{{{ {name} }}}}" for name in QUERY_PLACEHOLDERS)

    rendered = render_query(
        template,
        name="canary",
        namespace="test",
        target="podinfo",
        service="svc",
        ingress="web",
        route="public",
        interval="1m",
    )

    assert rendered == "canary test podinfo svc web public 1m"


@pytest.mark.parametrize(
    ("router", "kind"),
    [
        (router, kind)
        for router in providers.router_names()
        for kind in providers.TARGET_KINDS
        if kind in (providers.router(router) or providers.ROUTERS["kubernetes"]).target_kinds
    ],
)
def test_every_builtin_query_of_the_capability_table_renders(router: str, kind: str) -> None:
    """The loader accepts a built-in metric when the router's table entry (for the target's
    kind) has a query for it; the activity renders that same query, so it must render for
    every router and kind that has it."""
    entry = providers.router(router, kind)
    assert entry is not None
    assert set(entry.builtin_metrics) <= set(BUILTIN_METRICS)
    for metric in entry.builtin_metrics:
        query = builtin_query(
            router, metric, namespace="ns", target="app", interval="30s", target_kind=kind
        )
        assert "{{" not in query and "[30s]" in query, query


@pytest.mark.parametrize(
    ("template", "named"),
    [
        ("up{job='{{ ingress }}'}", "{{ ingress }}"),
        ("{{ service }}", "{{ service }}"),
        ("{{ variables.missing }}", "{{ variables.missing }}"),
        ("{{ .Name }}", "{{ .Name }}"),
    ],
)
def test_render_refuses_an_unknown_placeholder_and_names_it(template: str, named: str) -> None:
    with pytest.raises(ValueError, match="unknown placeholder") as raised:
        render_query(template, namespace="test", target="podinfo", interval="1m")

    assert named in str(raised.value)


def test_builtin_queries_are_fully_rendered() -> None:
    for metric in ["request-success-rate", "request-duration"]:
        query = builtin_query("istio", metric, namespace="ns", target="app", interval="30s")

        assert "{{" not in query
        assert 'destination_workload_namespace="ns"' in query
        assert "[30s]" in query


@pytest.mark.parametrize(
    ("router", "metric", "message"),
    [
        ("linkerd", "request-success-rate", "no built-in metrics for router 'linkerd'"),
        ("istio", "error-budget", "no built-in metric 'error-budget' for router istio"),
    ],
)
def test_builtin_query_refuses_unknown_router_or_metric(
    router: str, metric: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        builtin_query(router, metric, namespace="test", target="podinfo", interval="1m")


def one_value(request: SeenRequest) -> tuple[int, Any]:
    return 200, vector("99.5")


@pytest.mark.parametrize(
    ("credentials", "authorization"),
    [
        ({"token": "eyJhbGciOiJSUzI1NiJ9.sa-token"}, "Bearer eyJhbGciOiJSUzI1NiJ9.sa-token"),
        (
            {"username": "flagger", "password": "s3cret-pass"},
            "Basic " + base64.b64encode(b"flagger:s3cret-pass").decode(),
        ),
        (
            {"token": "the-token-wins", "username": "flagger", "password": "s3cret-pass"},
            "Bearer the-token-wins",
        ),
    ],
    ids=["bearer", "basic", "token-first"],
)
async def test_the_templates_secret_authenticates_each_query(
    client: httpx.AsyncClient, credentials: dict[str, str], authorization: str
) -> None:
    access = MetricsAccess(
        credentials=credentials,
        secret="flagger/prom-auth",
        headers={"X-Scope-OrgID": ("tenant-1",)},
    )
    with MetricsApi(one_value) as api:
        assert await PrometheusMetrics(api.url, client, 5.0, access).query_value("up") == 99.5

    [request] = api.requests
    assert request.headers["authorization"] == authorization
    assert request.headers["x-scope-orgid"] == "tenant-1"


async def test_without_a_secret_no_authorization_is_sent(client: httpx.AsyncClient) -> None:
    with MetricsApi(one_value) as api:
        await PrometheusMetrics(api.url, client).query_value("up")

    assert "authorization" not in api.requests[0].headers


def test_a_secret_with_neither_token_nor_username_is_refused(client: httpx.AsyncClient) -> None:
    access = MetricsAccess(credentials={"user": "x"}, secret="flagger/prom-auth")

    with pytest.raises(PermanentError) as raised:
        PrometheusMetrics("http://127.0.0.1:1", client, 5.0, access)

    assert str(raised.value) == (
        "Secret flagger/prom-auth has no key 'username' (prometheus needs token, or username "
        "and password)"
    )


@pytest.mark.parametrize(
    ("template", "who"), [(None, "prometheus at {url}"), ("a/b", "prometheus")]
)
async def test_rejected_credentials_are_permanent(
    client: httpx.AsyncClient, template: str | None, who: str
) -> None:
    access = MetricsAccess(template=template)
    refusing = MetricsApi(lambda request: (401, {"status": "error", "error": "unauthorized"}))
    with refusing as api, pytest.raises(PermanentError) as raised:
        await PrometheusMetrics(api.url, client, 5.0, access).query_value("up")

    assert str(raised.value) == f"{who.format(url=api.url)} rejected the credentials (status 401)"


def test_render_escapes_for_the_quote_of_the_query_language() -> None:
    template = "a='{{ variables.v }}' b={{ target }}"
    values = {"namespace": "ns", "target": "t'", "interval": "1m", "variables": {"v": "x\\'y"}}

    assert render_query(template, quote="'", **values) == "a='x\\\\\\'y' b=t\\'"  # type: ignore[arg-type]
    assert render_query(template, quote=None, **values) == "a='x\\'y' b=t'"  # type: ignore[arg-type]
