"""HTTP calls with one deadline for the whole call and a cap on the response body.

A per-read timeout does not bound a call: a server that sends a byte a second never trips it.
Here one deadline covers connecting, sending, following redirects and reading the body, and the
body is streamed and dropped as soon as it passes the cap. A broken or hostile server costs at
most the deadline and the cap, never the worker's memory.

Raises, besides httpx's own `httpx.HTTPError` family:

    TimeoutError              the deadline passed
    BodyTooLargeError         the body is larger than the cap
    httpx.TooManyRedirects    more redirects than allowed (a redirect loop)
"""

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx

MIB = 1024 * 1024


class BodyTooLargeError(Exception):
    """The response body is larger than the caller's cap."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"response body larger than {describe_size(max_bytes)}")


def describe_size(size: int) -> str:
    return f"{size // MIB} MiB" if size % MIB == 0 else f"{size} bytes"


@dataclass(frozen=True)
class Reply:
    """A response read whole (it fits under the cap)."""

    status_code: int
    content_type: str
    body: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def text(self, limit: int | None = None) -> str:
        """The body as text on one line (runs of whitespace become one space), clipped."""
        text = " ".join(self.body.decode("utf-8", errors="replace").split())
        return text if limit is None else text[:limit]

    def json(self) -> Any:
        """The body parsed as JSON; ValueError when it is not JSON."""
        return json.loads(self.body)


def new_client(verify: bool = True) -> httpx.AsyncClient:
    """A client for `request`: httpx's own timeouts are off (the deadline bounds the call) and
    redirects are followed by `request`, whose cap also bounds every redirect's body.
    `verify=False` skips checking TLS certificates (a hook's `disableTLS`)."""
    return httpx.AsyncClient(timeout=None, follow_redirects=False, verify=verify)


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    deadline_seconds: float,
    max_bytes: int,
    max_redirects: int = 0,
    **options: Any,
) -> Reply:
    """Send one request and read the answer within `deadline_seconds` and `max_bytes`.

    Up to `max_redirects` redirects are followed (their bodies are never read); with 0, a
    redirect is the answer. `options` go to `httpx.AsyncClient.build_request` (json, params...).
    """
    async with asyncio.timeout(deadline_seconds):
        outgoing = client.build_request(method, url, **options)
        for _ in range(max_redirects + 1):
            response = await client.send(outgoing, stream=True)
            try:
                if response.next_request is None or max_redirects == 0:
                    return Reply(
                        status_code=response.status_code,
                        content_type=response.headers.get("content-type", ""),
                        body=await _read_capped(response, max_bytes),
                    )
                outgoing = response.next_request
            finally:
                await response.aclose()
        raise httpx.TooManyRedirects(f"more than {max_redirects} redirects", request=outgoing)


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLargeError(max_bytes)
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise BodyTooLargeError(max_bytes)
    return bytes(body)
