"""Prometheus metrics provider: instant queries and the built-in checks' PromQL per router."""

import math
import re
from collections.abc import Mapping
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from activities import errors
from activities.errors import MetricsUnavailableError, PermanentError
from canary.spec import QUERY_PLACEHOLDER

_ISTIO_WORKLOAD = (
    'reporter="destination", destination_workload_namespace="{{ namespace }}", '
    'destination_workload=~"{{ target }}"'
)

_TRAEFIK_CANARY = 'service="{{ target }}-canary@file"'
"""Traefik labels a file-provider service's metrics `service="<name>@file"`; the canary's own
service is `<target>-canary` (see activities.traefik_router)."""

BUILTIN_QUERIES: Mapping[str, Mapping[str, str]] = {
    "istio": {
        "request-success-rate": (
            "sum(rate(istio_requests_total{"
            + _ISTIO_WORKLOAD
            + ', response_code!~"5.."}[{{ interval }}]))'
            + " / sum(rate(istio_requests_total{"
            + _ISTIO_WORKLOAD
            + "}[{{ interval }}])) * 100"
        ),
        "request-duration": (
            "histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{"
            + _ISTIO_WORKLOAD
            + "}[{{ interval }}])))"
        ),
    },
    "traefik": {
        "request-success-rate": (
            "(sum(rate(traefik_service_requests_total{"
            + _TRAEFIK_CANARY
            + ', code!~"5.."}[{{ interval }}])) or vector(0))'
            + " / sum(rate(traefik_service_requests_total{"
            + _TRAEFIK_CANARY
            + "}[{{ interval }}])) * 100"
        ),
        "request-duration": (
            "histogram_quantile(0.99, sum by (le) ("
            + "rate(traefik_service_request_duration_seconds_bucket{"
            + _TRAEFIK_CANARY
            + "}[{{ interval }}]))) * 1000"
        ),
    },
}
"""Query templates of the built-in checks: router -> metric name -> PromQL template.

`request-success-rate` is the percent of non-5xx requests and `request-duration` the p99 in
milliseconds, both over the metric's interval. Supporting another router is one more entry.
"""

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


def builtin_query(router: str, metric: str, *, namespace: str, target: str, interval: str) -> str:
    if router not in BUILTIN_QUERIES:
        known = ", ".join(sorted(BUILTIN_QUERIES))
        raise ValueError(f"no built-in metrics for router {router!r}; known routers: {known}")
    templates = BUILTIN_QUERIES[router]
    if metric not in templates:
        known = ", ".join(sorted(templates))
        raise ValueError(f"no built-in metric {metric!r} for router {router}; known: {known}")
    return render_query(templates[metric], namespace=namespace, target=target, interval=interval)


class PrometheusMetrics:
    """Instant queries against one Prometheus server.

    Blocking (requests underneath): call it from sync activities on a thread pool. It does not
    retry; a `MetricsUnavailableError` is left to the activity's retry policy.
    """

    def __init__(self, address: str, timeout_seconds: float = 10.0) -> None:
        self._address = address.rstrip("/")
        self._timeout_seconds = timeout_seconds
        session = requests.Session()
        session.hooks["response"].append(_raise_error_response)
        self._client = PrometheusConnect(
            url=self._address,
            session=session,
            retry=Retry(total=0, read=False),
            timeout=timeout_seconds,
        )

    def query_value(self, promql: str) -> float | None:
        """The instant query's value, or None when there is none (empty result or NaN).

        With several series only the first one's value counts (as Flagger documents); write
        the query so that it returns one series, e.g. wrap it in `sum(...)`.
        """
        try:
            result = self._client.custom_query(promql)
        except _ErrorResponse as error:
            if error.status_code >= 500 or error.status_code in _TRANSIENT_STATUSES:
                raise self._unavailable(f"status {error.status_code}: {error.error}") from error
            raise PermanentError(
                f"prometheus at {self._address} rejected the query"
                f" (status {error.status_code}): {error.error}; query: {promql}"
            ) from error
        except requests.Timeout as error:
            raise self._unavailable(f"timed out after {self._timeout_seconds:g}s") from error
        except requests.ConnectionError as error:
            raise self._unavailable(errors.os_reason(error) or str(error)) from error
        except (PrometheusApiClientException, ValueError, KeyError) as error:
            raise PermanentError(
                f"cannot query prometheus at {self._address}: {error}; query: {promql}"
            ) from error
        return _first_value(result, promql)

    def _unavailable(self, reason: str) -> MetricsUnavailableError:
        return MetricsUnavailableError(
            f"metrics unavailable: prometheus at {self._address}: {reason}"
        )


class _ErrorResponse(Exception):
    def __init__(self, status_code: int, error: str) -> None:
        super().__init__(error)
        self.status_code = status_code
        self.error = error


def _raise_error_response(response: requests.Response, **kwargs: Any) -> None:
    """Response hook: prometheus-api-client flattens an error response into one string, so
    this reads the status and Prometheus's own error text first."""
    if response.status_code < 400:
        return
    try:
        error = str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        error = response.text[:200]
    raise _ErrorResponse(response.status_code, error)


def _first_value(result: list[Any], promql: str) -> float | None:
    if not result:
        return None
    if isinstance(result[0], dict):
        if "value" not in result[0]:
            raise PermanentError(
                f"query returns a range vector, not instant values; query: {promql}"
            )
        sample = result[0]["value"][1]
    else:
        sample = result[1]
    try:
        value = float(sample)
    except ValueError as error:
        raise PermanentError(f"query returns {sample!r}, not a number; query: {promql}") from error
    return None if math.isnan(value) else value
