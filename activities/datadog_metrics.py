"""Datadog metrics provider: the v1 timeseries query API (`GET /api/v1/query`).

A query is asked over the metric's interval up to now; its value is the last point of its one
series. The API and application keys come from the template's Secret (`datadog_api_key`,
`datadog_application_key`, as Flagger reads them) and go in Datadog's key headers.
"""

import math
import time
from typing import Any

import httpx

from activities.errors import PermanentError
from activities.metrics_http import MetricsAccess, MetricsServer

API_KEY = "datadog_api_key"
APPLICATION_KEY = "datadog_application_key"
KEYS = f"{API_KEY} and {APPLICATION_KEY}"
API_KEY_HEADER = "DD-API-KEY"
APPLICATION_KEY_HEADER = "DD-APPLICATION-KEY"


class DatadogMetrics:
    """Timeseries queries against one Datadog site (`https://api.datadoghq.com`, or the EU's
    and others' as the template's address)."""

    def __init__(
        self,
        address: str,
        client: httpx.AsyncClient,
        timeout_seconds: float = 10.0,
        access: MetricsAccess | None = None,
    ) -> None:
        access = access or MetricsAccess()
        self._server = MetricsServer("datadog", address, client, timeout_seconds, access)
        self._keys = {
            API_KEY_HEADER: access.credential(API_KEY, "datadog", KEYS),
            APPLICATION_KEY_HEADER: access.credential(APPLICATION_KEY, "datadog", KEYS),
        }
        self._window_seconds = access.window_seconds

    async def check_available(self) -> None:
        """Raise unless Datadog accepts the API key (`GET /api/v1/validate`)."""
        document = await self._server.get_json(
            "/api/v1/validate", {}, "validate", headers=self._keys
        )
        if not isinstance(document, dict) or document.get("valid") is not True:
            raise self._server.unavailable("the API key is not valid")

    async def query_value(self, query: str) -> float | None:
        """The last point of the query's one series over the window; None without points."""
        now = int(time.time())
        params = {"from": now - math.ceil(self._window_seconds), "to": now, "query": query}
        document = await self._server.get_json("/api/v1/query", params, query, headers=self._keys)
        if isinstance(document, dict) and document.get("status") == "error":
            raise self._server.rejected(" ".join(str(document.get("error")).split()), query)
        if not isinstance(document, dict) or not isinstance(document.get("series"), list):
            raise self._server.unavailable("the answer is not a Datadog query result")
        return _last_point(document["series"], query)


def _last_point(series: list[Any], query: str) -> float | None:
    if not series:
        return None
    if len(series) > 1:
        raise PermanentError(
            f"query returns {len(series)} series, not one; aggregate it"
            f" (e.g. sum:metric{{...}}); query: {query}"
        )
    points = series[0].get("pointlist") if isinstance(series[0], dict) else None
    if not isinstance(points, list):
        raise PermanentError(f"query returns a malformed series; query: {query}")
    for point in reversed(points):
        if not isinstance(point, list) or len(point) != 2:
            raise PermanentError(f"query returns a malformed point; query: {query}")
        value = point[1]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PermanentError(f"query returns {value!r}, not a number; query: {query}")
        return None if math.isnan(value) else float(value)
    return None
