"""Graphite metrics provider: the render API (`GET /render?target=...&format=json&from=...`).

A query is a target expression, or render parameters as Flagger's templates write them
(`target=summarize(...)`, optionally `&from=-10min`); the window is the metric's interval
unless the query names its own `from`. Its value is the last non-null datapoint of its one
series. A Secret, when the template names one, holds `username` and `password` for basic
authentication.
"""

import math
import urllib.parse
from typing import Any

import httpx

from activities.errors import PermanentError
from activities.metrics_http import MetricsAccess, MetricsServer, basic_auth

AVAILABILITY_TARGET = "constantLine(1)"
KEYS = "username and password"


class GraphiteMetrics:
    def __init__(
        self,
        address: str,
        client: httpx.AsyncClient,
        timeout_seconds: float = 10.0,
        access: MetricsAccess | None = None,
    ) -> None:
        access = access or MetricsAccess()
        self._server = MetricsServer("graphite", address, client, timeout_seconds, access)
        self._auth: dict[str, str] = {}
        if access.secret is not None:
            username = access.credential("username", "graphite", KEYS)
            self._auth = basic_auth(username, access.credential("password", "graphite", KEYS))
        self._window = f"-{math.ceil(access.window_seconds)}s"

    async def check_available(self) -> None:
        """Raise unless the render API answers a constant target with a series list."""
        await self._series(f"target={AVAILABILITY_TARGET}")

    async def query_value(self, query: str) -> float | None:
        """The last non-null datapoint of the query's one series; None when it has none."""
        series = await self._series(query)
        if not series:
            return None
        if len(series) > 1:
            raise PermanentError(
                f"query returns {len(series)} series, not one; aggregate it"
                f" (e.g. sumSeries(...)); query: {query}"
            )
        return _last_datapoint(series[0], query)

    async def _series(self, query: str) -> list[Any]:
        params = render_parameters(query, self._window)
        document = await self._server.get_json("/render", params, query, headers=self._auth)
        if not isinstance(document, list):
            raise self._server.unavailable("the answer is not a Graphite render result")
        return document


def render_parameters(query: str, window: str) -> list[tuple[str, str]]:
    """The render API's parameters for `query`, with `format=json` and `from=<window>`
    unless the query names a `from` of its own."""
    text = " ".join(query.split())
    if text.startswith("target="):
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True)
    else:
        pairs = [("target", text)]
    pairs = [(name, value) for name, value in pairs if name != "format"]
    if not any(name == "from" for name, _ in pairs):
        pairs.append(("from", window))
    return [*pairs, ("format", "json")]


def _last_datapoint(series: Any, query: str) -> float | None:
    points = series.get("datapoints") if isinstance(series, dict) else None
    if not isinstance(points, list):
        raise PermanentError(f"query returns a malformed series; query: {query}")
    for point in reversed(points):
        if not isinstance(point, list) or len(point) != 2:
            raise PermanentError(f"query returns a malformed datapoint; query: {query}")
        value = point[0]
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PermanentError(f"query returns {value!r}, not a number; query: {query}")
        if not math.isnan(value):
            return float(value)
    return None
