"""GraphiteMetrics against a local server answering as Graphite's render API does."""

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from activities import bounded_http
from activities.errors import MetricsUnavailableError, PermanentError
from activities.graphite_metrics import GraphiteMetrics
from activities.metrics_http import MetricsAccess
from tests.support.metrics_api import MetricsApi, SeenRequest

ACCESS = MetricsAccess(template="test/success", window_seconds=120)
PASSWORD = "graphite-password-42"
WITH_BASIC_AUTH = MetricsAccess(
    credentials={"username": "canary", "password": PASSWORD},
    secret="test/graphite-basic-auth",
    template="test/success",
    window_seconds=120,
)
TARGET = "asPercent(sumSeries(stats.podinfo.*.ok.count), sumSeries(stats.podinfo.*.count))"


def rendered(*points: list[float | None]) -> list[dict[str, Any]]:
    """A render answer with one series per list of values (timestamps in seconds)."""
    return [
        {
            "target": f"series{index}",
            "tags": {"name": f"series{index}"},
            "datapoints": [[value, 1_700_000_000 + 60 * at] for at, value in enumerate(values)],
        }
        for index, values in enumerate(points)
    ]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with bounded_http.new_client() as client:
        yield client


async def ask(
    answer: tuple[int, Any],
    client: httpx.AsyncClient,
    query: str = TARGET,
    access: MetricsAccess = ACCESS,
) -> tuple[Any, SeenRequest]:
    with MetricsApi(lambda request: answer) as api:
        try:
            value: Any = await GraphiteMetrics(api.url, client, 5.0, access).query_value(query)
        except (PermanentError, MetricsUnavailableError) as error:
            value = error
    [request] = api.requests
    return value, request


async def test_the_value_is_the_last_non_null_datapoint(client: httpx.AsyncClient) -> None:
    value, request = await ask((200, rendered([97.0, 99.5, None])), client)

    assert value == 99.5
    assert request.path == "/render"
    assert request.params == {"target": [TARGET], "from": ["-120s"], "format": ["json"]}
    assert "authorization" not in request.headers


async def test_a_flagger_query_of_render_parameters_keeps_its_own_from(
    client: httpx.AsyncClient,
) -> None:
    query = f"target=summarize(\n  {TARGET},\n  '1min', 'avg')&from=-10min"

    _, request = await ask((200, rendered([1.0])), client, query)

    assert request.params == {
        "target": [f"summarize( {TARGET}, '1min', 'avg')"],
        "from": ["-10min"],
        "format": ["json"],
    }


@pytest.mark.parametrize(
    "answer", [rendered(), rendered([]), rendered([None, None])], ids=["none", "empty", "nulls"]
)
async def test_no_datapoint_is_no_values(client: httpx.AsyncClient, answer: Any) -> None:
    assert (await ask((200, answer), client))[0] is None


async def test_several_series_are_an_error(client: httpx.AsyncClient) -> None:
    value, _ = await ask((200, rendered([1.0], [2.0])), client)

    assert isinstance(value, PermanentError)
    assert str(value).startswith("query returns 2 series, not one; aggregate it")


async def test_the_secret_gives_basic_authentication(client: httpx.AsyncClient) -> None:
    _, request = await ask((200, rendered([1.0])), client, access=WITH_BASIC_AUTH)

    expected = base64.b64encode(f"canary:{PASSWORD}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"


async def test_rejected_credentials_are_permanent(client: httpx.AsyncClient) -> None:
    value, _ = await ask((401, b"Unauthorized"), client, access=WITH_BASIC_AUTH)

    assert isinstance(value, PermanentError)
    assert str(value) == "graphite rejected the credentials (status 401)"


async def test_a_bad_target_is_permanent_and_a_crash_unavailable(
    client: httpx.AsyncClient,
) -> None:
    refused, _ = await ask((400, b"Invalid function 'sumSeriez'"), client)
    crashed, _ = await ask((500, b"Internal Server Error"), client)

    assert isinstance(refused, PermanentError)
    assert "rejected the query (status 400): Invalid function 'sumSeriez'" in str(refused)
    assert isinstance(crashed, MetricsUnavailableError)


async def test_an_answer_that_is_not_a_series_list_is_unavailable(
    client: httpx.AsyncClient,
) -> None:
    value, _ = await ask((200, {"hello": "world"}), client)

    assert isinstance(value, MetricsUnavailableError)
    assert str(value).endswith("the answer is not a Graphite render result")


async def test_available_when_the_render_api_answers(client: httpx.AsyncClient) -> None:
    with MetricsApi(lambda request: (200, rendered([1.0]))) as api:
        await GraphiteMetrics(api.url, client, 5.0, ACCESS).check_available()

    assert api.requests[0].param("target") == "constantLine(1)"
