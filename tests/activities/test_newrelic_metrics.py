"""NewRelicMetrics against a local server answering as New Relic's Insights query API does."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from activities import bounded_http
from activities.errors import MetricsUnavailableError, PermanentError
from activities.metrics_http import MetricsAccess
from activities.newrelic_metrics import NewRelicMetrics
from canary import providers
from tests.support.metrics_api import MetricsApi, SeenRequest

ACCOUNT = "2718281"
QUERY_KEY = "NRIQ-0123456789abcdefghijklmnop"
ACCESS = MetricsAccess(
    credentials={"newrelic_account_id": ACCOUNT, "newrelic_query_key": QUERY_KEY},
    secret="test/newrelic",
    template="test/errors",
    window_seconds=90,
)
QUERY = (
    "SELECT filter(sum(nginx_ingress_controller_requests), WHERE status >= '500') /\n"
    "  sum(nginx_ingress_controller_requests) * 100 FROM Metric WHERE ingress = 'podinfo'\n"
)


def results(*found: dict[str, Any]) -> dict[str, Any]:
    """An Insights answer: the results, and metadata as New Relic sends it."""
    return {
        "results": list(found),
        "performanceStats": {"inspectedCount": 120, "wallClockTime": 12},
        "metadata": {
            "eventTypes": ["Metric"],
            "eventType": "Metric",
            "openEnded": True,
            "beginTimeMillis": 1_700_000_000_000,
            "endTimeMillis": 1_700_000_090_000,
            "rawSince": "90 SECONDS AGO",
            "rawUntil": "NOW",
            "contents": [{"function": "alias", "alias": "result"}],
        },
    }


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with bounded_http.new_client() as client:
        yield client


async def ask(answer: tuple[int, Any], client: httpx.AsyncClient) -> tuple[Any, SeenRequest]:
    with MetricsApi(lambda request: answer) as api:
        try:
            value: Any = await NewRelicMetrics(api.url, client, 5.0, ACCESS).query_value(QUERY)
        except (PermanentError, MetricsUnavailableError) as error:
            value = error
    [request] = api.requests
    return value, request


async def test_the_value_of_the_one_result_over_the_interval(client: httpx.AsyncClient) -> None:
    value, request = await ask((200, results({"result": 1.25})), client)

    assert value == 1.25
    assert request.path == f"/v1/accounts/{ACCOUNT}/query"
    assert request.param("nrql") == f"{QUERY.strip()} SINCE 90 seconds ago"
    assert request.headers["x-query-key"] == QUERY_KEY


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"average": 12}, 12.0),
        ({"percentiles": {"99": 230.5}}, 230.5),
        ({"result": None}, None),
    ],
)
async def test_a_single_named_value_is_the_value(
    client: httpx.AsyncClient, result: dict[str, Any], expected: float | None
) -> None:
    assert (await ask((200, results(result)), client))[0] == expected


async def test_no_results_is_no_values(client: httpx.AsyncClient) -> None:
    assert (await ask((200, results()), client))[0] is None


@pytest.mark.parametrize(
    ("found", "message"),
    [
        ([{"result": 1}, {"result": 2}], "query returns 2 results, not one"),
        ([{"count": 1, "average": 2}], "query returns 2 values, not one"),
        ([{"result": "high"}], "query returns 'high', not a number"),
    ],
)
async def test_what_is_not_one_number_is_an_error(
    client: httpx.AsyncClient, found: list[dict[str, Any]], message: str
) -> None:
    value, _ = await ask((200, results(*found)), client)

    assert isinstance(value, PermanentError)
    assert str(value).startswith(message)


async def test_an_nrql_syntax_error_is_permanent_with_its_text(client: httpx.AsyncClient) -> None:
    value, _ = await ask((400, {"error": "NRQL Syntax Error: Error at line 1 position 7"}), client)

    assert isinstance(value, PermanentError)
    assert "rejected the query (status 400): NRQL Syntax Error" in str(value)


@pytest.mark.parametrize("status", [401, 403])
async def test_a_rejected_query_key_is_permanent(client: httpx.AsyncClient, status: int) -> None:
    value, _ = await ask((status, {"error": "Invalid query key"}), client)

    assert isinstance(value, PermanentError)
    assert str(value) == f"newrelic rejected the credentials (status {status})"


async def test_a_server_error_is_unavailable(client: httpx.AsyncClient) -> None:
    value, _ = await ask((503, {"error": "Service Unavailable"}), client)

    assert isinstance(value, MetricsUnavailableError)


def test_an_account_id_that_is_not_a_number_is_refused_without_quoting_it(
    client: httpx.AsyncClient,
) -> None:
    access = MetricsAccess(
        credentials={"newrelic_account_id": "acct/../x", "newrelic_query_key": QUERY_KEY},
        secret="test/newrelic",
    )

    with pytest.raises(PermanentError) as raised:
        NewRelicMetrics("http://127.0.0.1:1", client, 5.0, access)

    assert str(raised.value) == "Secret test/newrelic: newrelic_account_id is not a number"


async def test_available_when_a_query_answers(client: httpx.AsyncClient) -> None:
    with MetricsApi(lambda request: (200, results({"count": 0}))) as api:
        await NewRelicMetrics(api.url, client, 5.0, ACCESS).check_available()

    assert api.requests[0].headers["x-query-key"] == QUERY_KEY


def test_the_default_address_is_the_insights_api_as_in_flagger() -> None:
    traits = providers.METRICS_PROVIDERS["newrelic"]
    assert traits.default_address == "https://insights-api.newrelic.com"
