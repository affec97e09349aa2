"""The embedded platform, started once for every end-to-end test."""

from collections.abc import AsyncIterator, Iterator

import pytest
from temporalio.client import Client

from demo.platform import Platform, Ports
from tests.e2e.rollouts import connect


@pytest.fixture(scope="package")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with Platform(state_dir=tmp_path_factory.mktemp("platform"), ports=Ports.free()) as started:
        started.start_temporal()
        started.start_prometheus()
        started.start_traefik()
        started.start_worker()
        yield started


@pytest.fixture(scope="package")
async def client(platform: Platform) -> AsyncIterator[Client]:
    yield await connect(platform)
