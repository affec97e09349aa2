"""Prometheus metrics provider: instant queries, and the built-in checks' PromQL rendered from
the router's entry in `canary.providers`."""

import math
import re
from collections.abc import Mapping
from typing import Any

import httpx

from activities import bounded_http, errors
from activities.errors import MetricsUnavailableError, PermanentError
from canary import providers
from canary.spec import QUERY_PLACEHOLDER

MAX_RESPONSE_BYTES = 4 * bounded_http.MIB
"""An instant query that should return one series answers in a few hundred bytes."""
MAX_REDIRECTS = 5
MESSAGE_BODY_CHARS = 200
AVAILABILITY_QUERY = "vector(1)"

# Error statuses after which the same query may succeed later (besides any 5xx).
_TRANSIENT_STATUSES = frozenset({408, 429})


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
) -> str:
    """Fill `{{ namespace }}`, `{{ target }}`, `{{ interval }}` and `{{ variables.NAME }}`,
    and `{{ service }}`, `{{ name }}`, `{{ ingress }}`, `{{ route }}` when given (see
    `canary.spec.Canary.query_values`); the interval is a Prometheus duration such as `1m30s`.

    Values are escaped for a PromQL string (`\\` and `"`), since placeholders sit inside
    label matchers: a value can end the quoted string it is pasted into."""
    optional = {"service": service, "name": name, "ingress": ingress, "route": route}
    values = {"namespace": namespace, "target": target}
    values.update({key: value for key, value in optional.items() if value is not None})
    values.update({f"variables.{name}": value for name, value in (variables or {}).items()})
    values = {name: promql_string_content(value) for name, value in values.items()}
    values["interval"] = interval

    def substitute(match: re.Match[str]) -> str:
        placeholder = match.group(1).strip()
        if placeholder not in values:
            raise ValueError(f"query template has an unknown placeholder {match.group(0)!r}")
        return values[placeholder]

    return QUERY_PLACEHOLDER.sub(substitute, template)


def promql_string_content(value: str) -> str:
    """`value` escaped to stand between the double quotes of a PromQL string."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


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
    left to the caller.
    """

    def __init__(
        self, address: str, client: httpx.AsyncClient, timeout_seconds: float = 10.0
    ) -> None:
        self._address = address.rstrip("/")
        self._client = client
        self._timeout_seconds = timeout_seconds

    async def check_available(self) -> None:
        """Raise `MetricsUnavailableError` unless the server answers `vector(1)` with 1."""
        if await self.query_value(AVAILABILITY_QUERY) != 1.0:
            raise self._unavailable(f"{AVAILABILITY_QUERY} does not answer 1")

    async def query_value(self, promql: str) -> float | None:
        """The instant query's value, or None when there is none (empty result or NaN).

        The query must return at most one series: with several, which one counts would be
        arbitrary, so that is an error; aggregate the query, e.g. wrap it in `sum(...)`.
        """
        try:
            reply = await bounded_http.request(
                self._client,
                "GET",
                f"{self._address}/api/v1/query",
                params={"query": promql},
                deadline_seconds=self._timeout_seconds,
                max_bytes=MAX_RESPONSE_BYTES,
                max_redirects=MAX_REDIRECTS,
            )
        except TimeoutError as error:
            raise self._unavailable(f"timed out after {self._timeout_seconds:g}s") from error
        except httpx.TooManyRedirects as error:
            raise self._unavailable(f"more than {MAX_REDIRECTS} redirects") from error
        except bounded_http.BodyTooLargeError as error:
            raise self._unavailable(str(error)) from error
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            reason = errors.os_reason(error) or str(error) or type(error).__name__
            raise self._unavailable(reason) from error
        if not reply.is_success:
            self._raise_error_reply(reply, promql)
        return _instant_value(self._data(reply), promql)

    def _raise_error_reply(self, reply: bounded_http.Reply, promql: str) -> None:
        try:
            text = " ".join(str(reply.json()["error"]).split())
        except (ValueError, KeyError, TypeError):
            text = reply.text(MESSAGE_BODY_CHARS)
        status = reply.status_code
        if status < 400 or status >= 500 or status in _TRANSIENT_STATUSES:
            raise self._unavailable(f"status {status}: {text}" if text else f"status {status}")
        raise PermanentError(
            f"prometheus at {self._address} rejected the query (status {status}): {text};"
            f" query: {promql}"
        )

    def _data(self, reply: bounded_http.Reply) -> Mapping[str, Any]:
        """The `data` of a successful API answer; anything else is not Prometheus answering
        (a proxy's page, a login form) and so is "metrics unavailable"."""
        try:
            document = reply.json()
        except ValueError:
            kind = reply.content_type.split(";")[0].strip() or "no content type"
            raise self._unavailable(f"the answer is not JSON ({kind})") from None
        data = document.get("data") if isinstance(document, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("resultType"), str):
            raise self._unavailable("the answer is not a Prometheus query result")
        return data

    def _unavailable(self, reason: str) -> MetricsUnavailableError:
        return MetricsUnavailableError(
            f"metrics unavailable: prometheus at {self._address}: {reason}"
        )


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
