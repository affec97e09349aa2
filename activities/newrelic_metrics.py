"""New Relic metrics provider: NRQL through the Insights query API
(`GET /v1/accounts/<account id>/query?nrql=...`).

The query is asked `SINCE <the metric's interval> seconds ago`; its value is the one value of
its one result (`{"results": [{"result": 1.5}]}`, `[{"average": 12}]`, or a percentile's
`[{"percentiles": {"99": 230}}]`). The account id and the query key come from the template's
Secret (`newrelic_account_id`, `newrelic_query_key`, as Flagger reads them).
"""

import math
from typing import Any

import httpx

from activities.errors import PermanentError
from activities.metrics_http import MetricsAccess, MetricsServer

ACCOUNT_ID = "newrelic_account_id"
QUERY_KEY = "newrelic_query_key"
KEYS = f"{ACCOUNT_ID} and {QUERY_KEY}"
QUERY_KEY_HEADER = "X-Query-Key"
AVAILABILITY_QUERY = "SELECT count(*) FROM Metric"


class NewRelicMetrics:
    def __init__(
        self,
        address: str,
        client: httpx.AsyncClient,
        timeout_seconds: float = 10.0,
        access: MetricsAccess | None = None,
    ) -> None:
        access = access or MetricsAccess()
        self._server = MetricsServer("newrelic", address, client, timeout_seconds, access)
        account = access.credential(ACCOUNT_ID, "newrelic", KEYS)
        if not account.isdigit():
            raise PermanentError(f"Secret {access.secret}: {ACCOUNT_ID} is not a number")
        self._path = f"/v1/accounts/{account}/query"
        self._headers = {
            QUERY_KEY_HEADER: access.credential(QUERY_KEY, "newrelic", KEYS),
            "Accept": "application/json",
        }
        self._since = f"SINCE {math.ceil(access.window_seconds)} seconds ago"

    async def check_available(self) -> None:
        """Raise unless New Relic answers a query with this account and key."""
        await self._results(AVAILABILITY_QUERY)

    async def query_value(self, query: str) -> float | None:
        """The one value of the query's one result; None when it has none."""
        results = await self._results(query)
        if not results:
            return None
        if len(results) > 1:
            raise PermanentError(
                f"query returns {len(results)} results, not one; aggregate it"
                f" (no FACET or TIMESERIES); query: {query}"
            )
        return _single_value(results[0], query)

    async def _results(self, query: str) -> list[Any]:
        nrql = f"{query.strip()} {self._since}"
        document = await self._server.get_json(
            self._path, {"nrql": nrql}, nrql, headers=self._headers
        )
        if isinstance(document, dict) and isinstance(document.get("error"), str):
            raise self._server.rejected(" ".join(document["error"].split()), nrql)
        results = document.get("results") if isinstance(document, dict) else None
        if not isinstance(results, list):
            raise self._server.unavailable("the answer is not a New Relic query result")
        return results


def _single_value(result: Any, query: str) -> float | None:
    """The value of `{"name": value}`, a value being a number, null or one named number."""
    value = result
    for _ in range(2):
        if not isinstance(value, dict):
            break
        if len(value) != 1:
            raise PermanentError(
                f"query returns {len(value)} values, not one (select one); query: {query}"
            )
        value = next(iter(value.values()))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PermanentError(f"query returns {value!r}, not a number; query: {query}")
    return None if math.isnan(value) else float(value)
