"""call_webhook against a local HTTP server that records what it receives."""

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from activities.webhooks import WebhookOutcome, call_webhook, webhook_payload
from tests.support.net import free_port

SLOW_SECONDS = 2.0


class Receiver:
    """Answers by path: /ok 200, /accepted 202, /fail 500 with a long body, /slow 200 late."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.content_types: list[str | None] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                receiver.content_types.append(self.headers["Content-Type"])
                if self.path == "/slow":
                    time.sleep(SLOW_SECONDS)
                status, body = {
                    "/ok": (200, b"thanks"),
                    "/accepted": (202, b""),
                    "/fail": (500, b"load test failed: " + b"x" * 300),
                    "/slow": (200, b"late"),
                }[self.path]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()
    thread.join()


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
