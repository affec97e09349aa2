"""What the metrics providers share: how to reach a server (`MetricsAccess`) and one bounded GET
whose failures are sorted the same way for every provider (`MetricsServer`).

    transport error, timeout, redirect loop, > cap     MetricsUnavailableError
    status 408, 429, 5xx, or a 1xx/3xx answer          MetricsUnavailableError
    status 401, 403                                    PermanentError: credentials rejected
    any other 4xx                                      PermanentError: the query is wrong
    a 2xx answer that is not JSON                      MetricsUnavailableError

Credentials come from a Kubernetes Secret the worker reads at query time; they are left out of
every repr and every message this module makes.
"""

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from activities import bounded_http, errors
from activities.errors import MetricsUnavailableError, PermanentError

MAX_RESPONSE_BYTES = 4 * bounded_http.MIB
"""A query that should return one value answers in a few hundred bytes."""
MAX_REDIRECTS = 5
MESSAGE_BODY_CHARS = 200

# Error statuses after which the same query may succeed later (besides any 5xx).
_TRANSIENT_STATUSES = frozenset({408, 429})


@dataclass(frozen=True)
class MetricsAccess:
    """What a provider needs besides its address: a MetricTemplate's headers and the data of
    its Secret, the window of a query (the metric's interval), and names for messages."""

    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    """The Secret's data (`secretRef`), empty without one."""
    secret: str | None = None
    """`namespace/name` of that Secret."""
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=dict, repr=False)
    template: str | None = None
    """`namespace/name` of the MetricTemplate, when the metric has one."""
    window_seconds: float = 60.0

    def credential(self, key: str, provider: str, needs: str) -> str:
        """The Secret's value of `key`; `PermanentError` when there is no Secret or no key."""
        value = self.credentials.get(key)
        if value:
            return value
        if self.secret is None:
            raise PermanentError(f"{provider} needs a secretRef: a Secret with {needs}")
        raise PermanentError(f"Secret {self.secret} has no key {key!r} ({provider} needs {needs})")


class MetricsServer:
    """One provider's server, asked over the caller's client within one deadline per call."""

    def __init__(
        self,
        kind: str,
        address: str,
        client: httpx.AsyncClient,
        timeout_seconds: float,
        access: MetricsAccess,
    ) -> None:
        self.kind = kind
        self.address = address.rstrip("/")
        self.access = access
        self._client = client
        self._timeout_seconds = timeout_seconds

    async def get_json(
        self,
        path: str,
        params: Any,
        query: str,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """GET `path` under the address with the template's headers, then `headers`; the
        parsed JSON of a 2xx answer. `query` is named when the server refuses it."""
        sent = [(name, value) for name, values in self.access.headers.items() for value in values]
        sent += list((headers or {}).items())
        try:
            reply = await bounded_http.request(
                self._client,
                "GET",
                f"{self.address}{path}",
                params=params,
                headers=sent,
                deadline_seconds=self._timeout_seconds,
                max_bytes=MAX_RESPONSE_BYTES,
                max_redirects=MAX_REDIRECTS,
            )
        except TimeoutError as error:
            raise self.unavailable(f"timed out after {self._timeout_seconds:g}s") from error
        except httpx.TooManyRedirects as error:
            raise self.unavailable(f"more than {MAX_REDIRECTS} redirects") from error
        except bounded_http.BodyTooLargeError as error:
            raise self.unavailable(str(error)) from error
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            reason = errors.os_reason(error) or str(error) or type(error).__name__
            raise self.unavailable(reason) from error
        if not reply.is_success:
            raise self._error_reply(reply, query)
        try:
            return reply.json()
        except ValueError:
            kind = reply.content_type.split(";")[0].strip() or "no content type"
            raise self.unavailable(f"the answer is not JSON ({kind})") from None

    def unavailable(self, reason: str) -> MetricsUnavailableError:
        return MetricsUnavailableError(
            f"metrics unavailable: {self.kind} at {self.address}: {reason}"
        )

    def rejected(self, text: str, query: str, status: int | None = None) -> PermanentError:
        """The server refused the query itself."""
        code = f" (status {status})" if status is not None else ""
        return PermanentError(
            f"{self.kind} at {self.address} rejected the query{code}: {text}; query: {query}"
        )

    def _error_reply(self, reply: bounded_http.Reply, query: str) -> Exception:
        status = reply.status_code
        if status in (401, 403):
            who = self.kind if self.access.template else f"{self.kind} at {self.address}"
            return PermanentError(f"{who} rejected the credentials (status {status})")
        text = error_text(reply)
        if status < 400 or status >= 500 or status in _TRANSIENT_STATUSES:
            return self.unavailable(f"status {status}: {text}" if text else f"status {status}")
        return self.rejected(text, query, status)


def basic_auth(username: str, password: str) -> dict[str, str]:
    """The Authorization header of HTTP basic authentication."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def error_text(reply: bounded_http.Reply) -> str:
    """The error an API answered with (`error`, or the `errors` list), else the body's start."""
    try:
        document = reply.json()
    except ValueError:
        document = None
    if isinstance(document, dict):
        found = document.get("error", document.get("errors"))
        if isinstance(found, list) and all(isinstance(item, str) for item in found):
            found = "; ".join(found)
        if isinstance(found, str):
            return " ".join(found.split())[:MESSAGE_BODY_CHARS]
    return reply.text(MESSAGE_BODY_CHARS)
