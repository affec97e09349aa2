"""call_webhook against a local HTTP server that records what it receives."""

import asyncio
import ssl
import subprocess
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.webhooks import WebhookOutcome, call_webhook, webhook_payload
from tests.support.hostile_http import HostileServer
from tests.support.net import free_port
from tests.support.webhook_receiver import SLOW_SECONDS, Receiver, receiver_fixture  # noqa: F401

PAYLOAD = webhook_payload(
    name="podinfo",
    namespace="test",
    phase="Progressing",
    checksum="7f9c2ba4e88f827d",
    metadata={"type": "bash", "cmd": "curl -sd 'test' http://podinfo-canary:9898/token"},
)


async def test_a_2xx_passes_and_the_payload_arrives_as_sent(receiver: Receiver) -> None:
    outcome = await call_webhook(f"{receiver.url}/ok", PAYLOAD, timeout_seconds=5)

    assert outcome == WebhookOutcome(ok=True, status_code=200, message="status 200")
    assert receiver.bodies == [
        {
            "name": "podinfo",
            "namespace": "test",
            "phase": "Progressing",
            "checksum": "7f9c2ba4e88f827d",
            "metadata": {
                "type": "bash",
                "cmd": "curl -sd 'test' http://podinfo-canary:9898/token",
            },
        }
    ]
    assert receiver.content_types == ["application/json"]


async def test_any_2xx_passes(receiver: Receiver) -> None:
    outcome = await call_webhook(f"{receiver.url}/accepted", PAYLOAD, timeout_seconds=5)

    assert outcome == WebhookOutcome(ok=True, status_code=202, message="status 202")


async def test_a_500_fails_with_the_status_and_the_start_of_the_body(receiver: Receiver) -> None:
    outcome = await call_webhook(f"{receiver.url}/fail", PAYLOAD, timeout_seconds=5)

    body_start = "load test failed: " + "x" * (200 - len("load test failed: "))
    assert outcome == WebhookOutcome(ok=False, status_code=500, message=f"status 500: {body_start}")
    assert len(receiver.bodies) == 1


async def test_a_slow_hook_fails_as_timed_out_without_waiting_for_it(receiver: Receiver) -> None:
    started = time.monotonic()

    outcome = await call_webhook(f"{receiver.url}/slow", PAYLOAD, timeout_seconds=0.5)

    assert time.monotonic() - started < SLOW_SECONDS
    assert outcome == WebhookOutcome(ok=False, status_code=None, message="timed out after 0.5s")


async def test_a_closed_port_fails_with_the_reason() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"

    outcome = await call_webhook(url, PAYLOAD, timeout_seconds=5)

    assert outcome == WebhookOutcome(
        ok=False, status_code=None, message="request failed: connection refused"
    )


@pytest.mark.parametrize("path", ["/huge", "/huge-declared"])
async def test_a_1_gib_answer_fails_at_the_cap_and_is_not_held_in_memory(path: str) -> None:
    with HostileServer() as server:
        tracemalloc.start()
        try:
            outcome = await asyncio.wait_for(
                call_webhook(f"{server.url}{path}", PAYLOAD, timeout_seconds=60), timeout=120
            )
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert outcome == WebhookOutcome(
        ok=False, status_code=None, message="response body larger than 1 MiB"
    )
    assert peak < 16 * 1024 * 1024


async def test_a_hook_dripping_its_answer_fails_at_the_overall_deadline() -> None:
    """One byte every 0.1 s would keep a per-read timeout from ever firing."""
    with HostileServer() as server:
        outcome = await asyncio.wait_for(
            call_webhook(f"{server.url}/drip", PAYLOAD, timeout_seconds=1), timeout=30
        )

    assert outcome == WebhookOutcome(ok=False, status_code=None, message="timed out after 1s")


def test_an_event_payload_carries_type_and_message_in_metadata_like_flagger() -> None:
    payload = webhook_payload(
        name="podinfo",
        namespace="test",
        phase="Progressing",
        checksum="abc",
        metadata={"team": "web"},
        event_type="Normal",
        event_message="Advance podinfo.test canary weight 20",
    )

    assert payload == {
        "name": "podinfo",
        "namespace": "test",
        "phase": "Progressing",
        "checksum": "abc",
        "metadata": {
            "team": "web",
            "eventType": "Normal",
            "eventMessage": "Advance podinfo.test canary weight 20",
        },
    }


def test_a_payload_without_event_has_no_event_keys() -> None:
    payload = webhook_payload(
        name="podinfo", namespace="test", phase="Succeeded", checksum="abc", metadata={}
    )

    assert payload == {
        "name": "podinfo",
        "namespace": "test",
        "phase": "Succeeded",
        "checksum": "abc",
        "metadata": {},
    }


async def test_retries_call_again_while_the_hook_fails(receiver: Receiver) -> None:
    failed = await call_webhook(f"{receiver.url}/fail-twice", PAYLOAD, timeout_seconds=5, retries=1)
    assert not failed.ok
    assert failed.status_code == 500
    assert receiver.paths == ["/fail-twice"] * 2
    passed = await call_webhook(f"{receiver.url}/fail-twice", PAYLOAD, timeout_seconds=5, retries=3)
    assert passed.ok
    assert receiver.paths == ["/fail-twice"] * 3


@pytest.fixture
def tls_receiver(receiver: Receiver, tmp_path: Path) -> Iterator[str]:
    """The receiver behind TLS with a self-signed certificate; yields its https URL."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = receiver.server
    plain = server.socket
    server.socket = context.wrap_socket(plain, server_side=True)
    yield receiver.url.replace("http://", "https://")
    server.socket = plain


async def test_disable_tls_skips_verifying_the_hooks_certificate(
    receiver: Receiver, tls_receiver: str
) -> None:
    refused = await call_webhook(f"{tls_receiver}/ok", PAYLOAD, timeout_seconds=5)
    assert not refused.ok
    assert refused.message == "request failed: tls: certificate_verify_failed"
    accepted = await call_webhook(
        f"{tls_receiver}/ok", PAYLOAD, timeout_seconds=5, verify_tls=False
    )
    assert accepted.ok, accepted.message
    assert receiver.bodies[-1]["name"] == "podinfo"
