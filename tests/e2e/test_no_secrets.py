"""No secret reaches a log, a history or the CLI's output.

A `coalmine worker` process (real activities, Kubernetes served by kmock) runs a rollout whose
alerts go to providers whose URLs carry tokens in their user info, path and query, with
TEMPORAL_API_KEY set. One provider answers with an error page that quotes the request path.
Then the worker's log, the workflow history and `coalmine status/history --json` are searched
for every token: none may appear. The receivers must have had the notifications, so the
search is not vacuous.
"""

import asyncio
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from canary import contract
from canary.spec import Canary
from canary.status import CanaryStatus, Phase
from tests.support.hostile_http import HostileServer
from tests.support.kube import ServedEmulator, kube_fixture, podinfo_deployment  # noqa: F401
from workflows.canary_workflow import CanaryWorkflow

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENTS = "apps/v1/deployments"
NEW_IMAGE = "ghcr.io/stefanprodan/podinfo:6.1.0"
PATH_TOKEN = "pathT0ken-7f3a9c21"
QUERY_TOKEN = "queryT0ken-52be1d07"
PASSWORD = "passw0rd-9d41c6e3"
API_KEY = "apiKey-0c8e5b7a2f"
SECRETS = (PATH_TOKEN, QUERY_TOKEN, PASSWORD, API_KEY)


class AlertReceiver:
    """Accepts every POST and records its path (with query) and JSON body."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]


@pytest.fixture
def receiver() -> Iterator[AlertReceiver]:
    receiver = AlertReceiver()
    thread = threading.Thread(target=receiver.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()
    thread.join()


def secret_url(base: str, path: str) -> str:
    """`base` (http://host:port) with a password, a path token and a query token."""
    with_user = base.replace("http://", f"http://coalmine:{PASSWORD}@")
    return f"{with_user}{path}/{PATH_TOKEN}/hook?token={QUERY_TOKEN}&v=1"


def kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": "test", "user": {"token": "test"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test"}}],
        "current-context": "kmock",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def canary(namespace: str) -> Canary:
    return Canary.model_validate(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": namespace},
            "spec": {
                "provider": "istio",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898, "targetPort": 9898},
                "analysis": {
                    "interval": "1s",
                    "threshold": 2,
                    "maxWeight": 20,
                    "stepWeight": 10,
                    "alerts": [
                        {"name": "team", "severity": "info", "providerRef": {"name": "team-hook"}},
                        {"name": "echo", "severity": "info", "providerRef": {"name": "echo-hook"}},
                    ],
                },
            },
        }
    )


def seed(kube: ServedEmulator, namespace: str) -> None:
    """A target and an older primary, both reporting ready (there is no controller)."""
    ready = {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
    for name in ("podinfo", "podinfo-primary"):
        kube.put(DEPLOYMENTS, {**podinfo_deployment(namespace, name), "status": ready})


async def wait_for_line(log: Path, text: str, process: asyncio.subprocess.Process) -> None:
    for _ in range(600):
        if text in log.read_text(errors="replace"):
            return
        assert process.returncode is None, f"the worker ended: {log.read_text()}"
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {text!r} in the worker log: {log.read_text()}")


def coalmine(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "starter.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


async def test_no_token_or_api_key_in_the_worker_log_history_or_cli_output(
    dev_server_env: WorkflowEnvironment,
    kube: ServedEmulator,
    receiver: AlertReceiver,
    tmp_path: Path,
) -> None:
    namespace = f"secrets-{uuid.uuid4().hex[:8]}"
    queue = f"no-secrets-{uuid.uuid4()}"
    seed(kube, namespace)
    spec = canary(namespace)
    with HostileServer() as echo:
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": dev_server_env.client.service_client.config.target_host,
            "TEMPORAL_API_KEY": API_KEY,
            "TEMPORAL_TLS": "false",  # an API key turns TLS on by default; the dev server has none
            "KUBECONFIG": str(kubeconfig(tmp_path / "kubeconfig", kube.url)),
            "COALMINE_ALERT_TEAM_HOOK_TYPE": "slack",
            "COALMINE_ALERT_TEAM_HOOK_URL": secret_url(f"http://127.0.0.1:{receiver.port}", ""),
            "COALMINE_ALERT_ECHO_HOOK_TYPE": "generic",
            "COALMINE_ALERT_ECHO_HOOK_URL": secret_url(echo.url, "/echo"),
        }
        log = tmp_path / "worker.log"
        with log.open("wb") as output:
            worker = await asyncio.create_subprocess_exec(
                *[sys.executable, "-m", "starter.cli", "worker"],
                *["--task-queue", queue, "--metrics-address", "off"],
                cwd=REPO,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            await wait_for_line(log, "coalmine worker polling task queue", worker)
            handle: WorkflowHandle[
                CanaryWorkflow, CanaryStatus
            ] = await dev_server_env.client.start_workflow(
                CanaryWorkflow.run,
                contract.RolloutRequest(canary=spec, image=NEW_IMAGE),
                id=spec.workflow_id,
                task_queue=queue,
            )
            result = await asyncio.wait_for(handle.result(), timeout=180)
            await wait_for_line(log, "notifications for podinfo", worker)
            # `status` queries the workflow: a worker must still be there to answer.
            status = await asyncio.to_thread(
                coalmine, env, "status", "podinfo", "-n", namespace, "--json"
            )
            story = await asyncio.to_thread(
                coalmine, env, "history", "podinfo", "-n", namespace, "--json"
            )
        finally:
            worker.terminate()
            await asyncio.wait_for(worker.wait(), timeout=60)
    history = (await handle.fetch_history()).to_json()
    worker_log = log.read_text(errors="replace")

    assert result.phase == Phase.SUCCEEDED, result.events
    assert json.loads(status)["phase"] == Phase.SUCCEEDED.value
    assert any("Promotion completed" in json.dumps(item) for item in json.loads(story))
    paths = {path for path, _ in receiver.requests}
    assert paths == {f"/{PATH_TOKEN}/hook?token={QUERY_TOKEN}&v=1"}
    texts = [body["text"] for _, body in receiver.requests]
    assert any(text.startswith("Promotion completed! Scaling down podinfo.") for text in texts)
    assert "not sent: status 403: no webhook at ***" in worker_log
    assert "(provider echo-hook)" in worker_log
    for secret in SECRETS:
        for where, text in [
            ("worker log", worker_log),
            ("history", history),
            ("status --json", status),
            ("history --json", story),
        ]:
            assert secret not in text, f"{secret} in the {where}"
