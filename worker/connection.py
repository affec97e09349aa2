"""Connecting to Temporal the same way from the CLI and the worker.

`temporalio.envconfig` reads TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, the TLS
variables and profiles in temporal.toml, so one binary works against the dev server, a
self-hosted cluster and Temporal Cloud.
"""

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime

DEFAULT_ADDRESS = "localhost:7233"


class ConnectionFailed(Exception):
    """Temporal could not be reached; the message names the address."""


async def connect(
    profile: str | None = None, runtime: Runtime | None = None, identity: str | None = None
) -> Client:
    """A client; `runtime` (e.g. one serving metrics) defaults to the SDK's default runtime.

    `identity` names the caller in the history of what it starts, signals and updates
    (the SDK's default is `pid@host`)."""
    config = ClientConfig.load_client_connect_config(profile=profile)
    config.setdefault("target_host", DEFAULT_ADDRESS)
    try:
        return await Client.connect(
            **config, data_converter=pydantic_data_converter, runtime=runtime, identity=identity
        )
    except RuntimeError as error:
        raise ConnectionFailed(
            f"cannot reach Temporal at {config['target_host']}: {error}"
        ) from None
