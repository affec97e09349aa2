"""Webhooks provider: POST Flagger's JSON payload; any 2xx passes.

A failed call is an outcome, not an exception: whether it fails a check is decided elsewhere.
"""

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from activities import bounded_http, errors

MAX_RESPONSE_BYTES = bounded_http.MIB
"""A hook answers with a status; a longer body than this fails the call."""
MESSAGE_BODY_CHARS = 200
RETRY_PAUSE_SECONDS = 1.0


@dataclass(frozen=True)
class WebhookOutcome:
    ok: bool
    status_code: int | None
    message: str


async def call_webhook(
    url: str,
    payload: Mapping[str, Any],
    timeout_seconds: float,
    *,
    retries: int = 0,
    verify_tls: bool = True,
) -> WebhookOutcome:
    """POST `payload` as JSON, again up to `retries` times while it fails (a second apart).
    `timeout_seconds` bounds each attempt (connecting, sending, reading the answer), and an
    answer over `MAX_RESPONSE_BYTES` fails it."""
    outcome = await _attempt(url, payload, timeout_seconds, verify_tls)
    for _ in range(retries):
        if outcome.ok:
            break
        await asyncio.sleep(RETRY_PAUSE_SECONDS)
        outcome = await _attempt(url, payload, timeout_seconds, verify_tls)
    return outcome


async def _attempt(
    url: str, payload: Mapping[str, Any], timeout_seconds: float, verify_tls: bool
) -> WebhookOutcome:
    try:
        async with bounded_http.new_client(verify=verify_tls) as client:
            reply = await bounded_http.request(
                client,
                "POST",
                url,
                json=dict(payload),
                deadline_seconds=timeout_seconds,
                max_bytes=MAX_RESPONSE_BYTES,
            )
    except TimeoutError:
        return WebhookOutcome(False, None, f"timed out after {timeout_seconds:g}s")
    except bounded_http.BodyTooLargeError as error:
        return WebhookOutcome(False, None, str(error))
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        reason = errors.os_reason(error) or str(error) or type(error).__name__
        return WebhookOutcome(False, None, f"request failed: {reason}")
    if reply.is_success:
        return WebhookOutcome(True, reply.status_code, f"status {reply.status_code}")
    body = reply.text(MESSAGE_BODY_CHARS)
    message = f"status {reply.status_code}: {body}" if body else f"status {reply.status_code}"
    return WebhookOutcome(False, reply.status_code, message)


def webhook_payload(
    *,
    name: str,
    namespace: str,
    phase: str,
    checksum: str,
    metadata: Mapping[str, str],
    event_type: str | None = None,
    event_message: str | None = None,
) -> dict[str, Any]:
    """Flagger's webhook payload. Like Flagger, event hooks carry `eventType` and
    `eventMessage` inside `metadata`, where existing receivers look for them."""
    event = {"eventType": event_type, "eventMessage": event_message}
    return {
        "name": name,
        "namespace": namespace,
        "phase": phase,
        "checksum": checksum,
        "metadata": {
            **metadata,
            **{key: value for key, value in event.items() if value is not None},
        },
    }
