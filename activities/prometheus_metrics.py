"""Prometheus metrics provider: instant queries, and the built-in checks' PromQL rendered from
the router's entry in `canary.providers`."""

import math
import re
from collections.abc import Mapping
from typing import Any

import httpx

from activities.errors import PermanentError
from activities.metrics_http import MetricsAccess, MetricsServer, basic_auth
from canary import providers
from canary.spec import QUERY_PLACEHOLDER

AVAILABILITY_QUERY = "vector(1)"


def render_query(
    template: str,
    *,
    namespace: str,
    target: str,
    interval: str,
    service: str | None = None,
    name: str | None = None,
    ingress: str | None = None,
    route: str | None = None,
    variables: Mapping[str, str] | None = None,
    quote: str | None = '"',
) -> str:
    """Fill `{{ namespace }}`, `{{ target }}`, `{{ interval }}` and `{{ variables.NAME }}`,
    and `{{ service }}`, `{{ name }}`, `{{ ingress }}`, `{{ route }}` when given (see
    `canary.spec.Canary.query_values`); the interval is a Prometheus duration such as `1m30s`.

    Values are escaped for a string of the query language quoted by `quote` (`\\` and the
    quote; PromQL's `"` by default), since placeholders sit inside label matchers: a value can
    end the quoted string it is pasted into. With `quote` None they are pasted as they are."""
    optional = {"service": service, "name": name, "ingress": ingress, "route": route}
    values = {"namespace": namespace, "target": target}
    values.update({key: value for key, value in optional.items() if value is not None})
    values.update({f"variables.{name}": value for name, value in (variables or {}).items()})
    if quote is not None:
        values = {name: string_content(value, quote) for name, value in values.items()}
    values["interval"] = interval

    def substitute(match: re.Match[str]) -> str:
        placeholder = match.group(1).strip()
        if placeholder not in values:
            raise ValueError(f"query template has an unknown placeholder {match.group(0)!r}")
        return values[placeholder]

    return QUERY_PLACEHOLDER.sub(substitute, template)


def string_content(value: str, quote: str) -> str:
    """`value` escaped with backslashes to stand between two `quote`s."""
    return value.replace("\\", "\\\\").replace(quote, "\\" + quote)


def builtin_query(
    router: str,
    metric: str,
    *,
    namespace: str,
    target: str,
    interval: str,
    target_kind: str | None = None,
    service: str | None = None,
) -> str:
    """The router's query for a built-in check, for a target of `target_kind` (its kinds may
    be measured differently) whose Services are named after `service` (default `target`)."""
    entry = providers.router(router, target_kind)
    if entry is None or not entry.builtin_metrics:
        known = ", ".join(
            name
            for name, item in providers.ROUTERS.items()
            if item.builtin_metrics
            or any(way.builtin_metrics for way in item.by_target_kind.values())
        )
        kind = f" for a {target_kind} target" if target_kind else ""
        raise ValueError(f"no built-in metrics for router {router!r}{kind}; known routers: {known}")
    templates = entry.builtin_metrics
    if metric not in templates:
        known = ", ".join(sorted(templates))
        raise ValueError(f"no built-in metric {metric!r} for router {router}; known: {known}")
    return render_query(
        templates[metric],
        namespace=namespace,
        target=target,
        service=service or target,
        interval=interval,
    )


class PrometheusMetrics:
    """Instant queries against one Prometheus server, over the caller's client (see
    `bounded_http.new_client`), so that no connection pool is shared between rollouts.

    Each query has one deadline and a cap on the answer. It does not retry: a
    `MetricsUnavailableError` (no usable answer) or `PermanentError` (the query is wrong) is
    left to the caller. With a Secret, its `token` is sent as a bearer token, else its
    `username` and `password` as basic authentication.
    """

    def __init__(
        self,
        address: str,
        client: httpx.AsyncClient,
        timeout_seconds: float = 10.0,
        access: MetricsAccess | None = None,
    ) -> None:
        access = access or MetricsAccess()
        self._server = MetricsServer("prometheus", address, client, timeout_seconds, access)
        self._auth = _authorization(access)

    async def check_available(self) -> None:
        """Raise `MetricsUnavailableError` unless the server answers `vector(1)` with 1."""
        if await self.query_value(AVAILABILITY_QUERY) != 1.0:
            raise self._server.unavailable(f"{AVAILABILITY_QUERY} does not answer 1")

    async def query_value(self, promql: str) -> float | None:
        """The instant query's value, or None when there is none (empty result or NaN).

        The query must return at most one series: with several, which one counts would be
        arbitrary, so that is an error; aggregate the query, e.g. wrap it in `sum(...)`.
        """
        document = await self._server.get_json(
            "/api/v1/query", {"query": promql}, promql, headers=self._auth
        )
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("resultType"), str):
            raise self._server.unavailable("the answer is not a Prometheus query result")
        return _instant_value(data, promql)


def _authorization(access: MetricsAccess) -> dict[str, str]:
    """The Authorization header the template's Secret makes: bearer `token`, else basic."""
    if access.secret is None:
        return {}
    if access.credentials.get("token"):
        return {"Authorization": f"Bearer {access.credentials['token']}"}
    needs = "token, or username and password"
    username = access.credential("username", "prometheus", needs)
    return basic_auth(username, access.credential("password", "prometheus", needs))


def _instant_value(data: Mapping[str, Any], promql: str) -> float | None:
    """The value of a `vector` (at most one series) or `scalar` result."""
    kind, result = data["resultType"], data.get("result")
    if kind == "matrix":
        raise PermanentError(f"query returns a range vector, not instant values; query: {promql}")
    if kind == "vector" and isinstance(result, list):
        if not result:
            return None
        if len(result) > 1:
            raise PermanentError(
                f"query returns {len(result)} series, not one; aggregate it"
                f" (e.g. sum(...)); query: {promql}"
            )
        sample = result[0].get("value") if isinstance(result[0], dict) else None
    elif kind == "scalar":
        sample = result
    else:
        raise PermanentError(f"query returns a {kind}, not a number; query: {promql}")
    if not isinstance(sample, list) or len(sample) != 2 or not isinstance(sample[1], str):
        raise PermanentError(f"query returns a malformed {kind}; query: {promql}")
    try:
        value = float(sample[1])
    except ValueError as error:
        raise PermanentError(
            f"query returns {sample[1]!r}, not a number; query: {promql}"
        ) from error
    return None if math.isnan(value) else value
