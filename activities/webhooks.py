"""Webhooks provider: POST Flagger's JSON payload; any 2xx passes.

A failed call is an outcome, not an exception: whether it fails a check is decided elsewhere.
"""

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from activities import errors


@dataclass(frozen=True)
class WebhookOutcome:
    ok: bool
    status_code: int | None
    message: str


async def call_webhook(
    url: str, payload: Mapping[str, Any], timeout_seconds: float
) -> WebhookOutcome:
    """POST `payload` as JSON; `timeout_seconds` bounds the whole call, not each phase of it."""
    try:
        async with (
            asyncio.timeout(timeout_seconds),
            httpx.AsyncClient(timeout=timeout_seconds) as client,
        ):
            response = await client.post(url, json=dict(payload))
    except (TimeoutError, httpx.TimeoutException):
        return WebhookOutcome(False, None, f"timed out after {timeout_seconds:g}s")
    except httpx.TransportError as error:
        reason = errors.os_reason(error) or str(error) or type(error).__name__
        return WebhookOutcome(False, None, f"request failed: {reason}")
    if response.is_success:
        return WebhookOutcome(True, response.status_code, f"status {response.status_code}")
    body = response.text[:200]
    message = f"status {response.status_code}: {body}" if body else f"status {response.status_code}"
    return WebhookOutcome(False, response.status_code, message)


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
