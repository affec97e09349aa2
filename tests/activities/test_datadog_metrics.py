"""DatadogMetrics against a local server answering as Datadog's v1 query API does."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from activities import bounded_http
from activities.datadog_metrics import DatadogMetrics
from activities.errors import MetricsUnavailableError, PermanentError
from activities.metrics_http import MetricsAccess
from canary import providers
from tests.support.metrics_api import MetricsApi, SeenRequest

API_KEY = "dd-api-key-0123456789abcdef"
APPLICATION_KEY = "dd-app-key-fedcba9876543210"
ACCESS = MetricsAccess(
    credentials={"datadog_api_key": API_KEY, "datadog_application_key": APPLICATION_KEY},
    secret="test/datadog",
    template="test/latency",
    window_seconds=300,
)
QUERY = "avg:trace.http.request.duration{service:podinfo-canary}"


def series(*points: tuple[int, float | None]) -> dict[str, Any]:
    """One series as the query API answers it (timestamps in milliseconds)."""
    pointlist = [[float(ms), value] for ms, value in points]
    return {
        "metric": "trace.http.request.duration",
        "display_name": "trace.http.request.duration",
        "scope": "service:podinfo-canary",
        "expression": QUERY,
        "pointlist": pointlist,
        "start": pointlist[0][0] if pointlist else 0,
        "end": pointlist[-1][0] if pointlist else 0,
        "interval": 60,
        "length": len(pointlist),
        "aggr": "avg",
        "unit": None,
        "tag_set": [],
    }


def result(*found: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": "ok",
        "res_type": "time_series",
        "resp_version": 1,
        "query": QUERY,
        "from_date": 1_700_000_000_000,
        "to_date": 1_700_000_300_000,
        "series": list(found),
        "values": [],
        "times": [],
        "message": "",
        "group_by": [],
    }


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with bounded_http.new_client() as client:
        yield client


async def ask(answer: tuple[int, Any], client: httpx.AsyncClient) -> tuple[Any, SeenRequest]:
    """The value (or the error raised) for QUERY, and the request the server saw."""
    with MetricsApi(lambda request: answer) as api:
        try:
            value: Any = await DatadogMetrics(api.url, client, 5.0, ACCESS).query_value(QUERY)
        except (PermanentError, MetricsUnavailableError) as error:
            value = error
    [request] = api.requests
    return value, request


async def test_the_value_is_the_last_point_of_the_series(client: httpx.AsyncClient) -> None:
    answer = result(series((1_700_000_000_000, 120.0), (1_700_000_060_000, 80.5)))

    value, request = await ask((200, answer), client)

    assert value == 80.5
    assert request.path == "/api/v1/query"
    assert request.param("query") == QUERY
    assert int(request.param("to")) - int(request.param("from")) == 300
    assert request.headers["dd-api-key"] == API_KEY
    assert request.headers["dd-application-key"] == APPLICATION_KEY


async def test_a_last_point_without_value_is_skipped(client: httpx.AsyncClient) -> None:
    answer = result(series((1, 42.0), (2, None)))

    assert (await ask((200, answer), client))[0] == 42.0


@pytest.mark.parametrize(
    "answer",
    [result(), result(series()), result(series((1, None), (2, None)))],
    ids=["no-series", "no-points", "only-nulls"],
)
async def test_an_empty_series_is_no_values(
    client: httpx.AsyncClient, answer: dict[str, Any]
) -> None:
    assert (await ask((200, answer), client))[0] is None


async def test_several_series_are_an_error(client: httpx.AsyncClient) -> None:
    value, _ = await ask((200, result(series((1, 1.0)), series((1, 2.0)))), client)

    assert isinstance(value, PermanentError)
    assert str(value).startswith("query returns 2 series, not one; aggregate it")


async def test_a_query_datadog_cannot_parse_is_permanent_with_its_error(
    client: httpx.AsyncClient,
) -> None:
    answer = {
        "errors": ["Error parsing query: unable to parse avg:trace{: Rule 'scope' didn't match"]
    }

    value, _ = await ask((400, answer), client)

    assert isinstance(value, PermanentError)
    assert "rejected the query (status 400): Error parsing query" in str(value)
    assert str(value).endswith(f"query: {QUERY}")


async def test_an_error_status_in_a_200_answer_is_permanent(client: httpx.AsyncClient) -> None:
    value, _ = await ask((200, {"status": "error", "error": "unknown metric"}), client)

    assert isinstance(value, PermanentError)
    assert "rejected the query: unknown metric" in str(value)


@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_keys_are_permanent_and_never_quoted(
    client: httpx.AsyncClient, status: int
) -> None:
    value, _ = await ask((status, {"errors": [f"Forbidden: {API_KEY}"]}), client)

    assert isinstance(value, PermanentError)
    assert str(value) == f"datadog rejected the credentials (status {status})"


@pytest.mark.parametrize("status", [429, 503])
async def test_rate_limits_and_server_errors_are_unavailable(
    client: httpx.AsyncClient, status: int
) -> None:
    value, _ = await ask((status, {"errors": ["Rate limit exceeded"]}), client)

    assert isinstance(value, MetricsUnavailableError)
    assert f"status {status}: Rate limit exceeded" in str(value)


def test_a_secret_without_a_key_is_refused_naming_the_key(client: httpx.AsyncClient) -> None:
    access = MetricsAccess(credentials={"datadog_api_key": API_KEY}, secret="test/datadog")

    with pytest.raises(PermanentError) as raised:
        DatadogMetrics("http://127.0.0.1:1", client, 5.0, access)

    assert str(raised.value) == (
        "Secret test/datadog has no key 'datadog_application_key' (datadog needs "
        "datadog_api_key and datadog_application_key)"
    )


async def test_available_when_datadog_validates_the_key(client: httpx.AsyncClient) -> None:
    with MetricsApi(lambda request: (200, {"valid": True})) as api:
        await DatadogMetrics(api.url, client, 5.0, ACCESS).check_available()
    refusing = MetricsApi(lambda request: (403, {"errors": ["Forbidden"]}))
    with refusing as api, pytest.raises(PermanentError, match="rejected the credentials"):
        await DatadogMetrics(api.url, client, 5.0, ACCESS).check_available()

    assert api.requests[0].path == "/api/v1/validate"
    assert api.requests[0].headers["dd-api-key"] == API_KEY


def test_the_default_address_is_datadogs_as_in_flagger() -> None:
    assert providers.METRICS_PROVIDERS["datadog"].default_address == "https://api.datadoghq.com"
