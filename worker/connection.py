"""Connecting to Temporal the same way from the CLI and the worker.

`temporalio.envconfig` reads TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, the TLS
variables and profiles in temporal.toml, so one binary works against the dev server, a
self-hosted cluster and Temporal Cloud.

Connecting has a deadline: a server that accepts TCP and never answers (a TLS handshake that
never completes, say) would otherwise hold the caller forever.
"""

import asyncio
from datetime import timedelta

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig
from temporalio.runtime import Runtime

DEFAULT_ADDRESS = "localhost:7233"
CONNECT_TIMEOUT = timedelta(seconds=10)
RPC_TIMEOUT = timedelta(seconds=10)
"""The deadline of each call the CLI makes (long polls for a result excepted)."""


class ConnectionFailed(Exception):
    """Temporal could not be reached; the message names the address."""


class ConnectionConfigError(Exception):
    """The client configuration (address, TLS files, profile) is unusable; the message says
    which part."""


def one_line(error: BaseException) -> str:
    """The error's text with its line breaks and runs of spaces folded into single spaces."""
    return " ".join(str(error).split()) or type(error).__name__


async def connect(
    profile: str | None = None, runtime: Runtime | None = None, identity: str | None = None
) -> Client:
    """A client; `runtime` (e.g. one serving metrics) defaults to the SDK's default runtime.

    `identity` names the caller in the history of what it starts, signals and updates
    (the SDK's default is `pid@host`)."""
    try:
        config = ClientConfig.load_client_connect_config(profile=profile)
    except (RuntimeError, OSError, ValueError) as error:
        raise ConnectionConfigError(f"Temporal client configuration: {one_line(error)}") from None
    address = config.setdefault("target_host", DEFAULT_ADDRESS)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT.total_seconds()):
            return await Client.connect(
                **config,
                data_converter=pydantic_data_converter,
                runtime=runtime,
                identity=identity,
            )
    except TimeoutError:
        tls = " over TLS" if config.get("tls") else ""
        raise ConnectionFailed(
            f"cannot reach Temporal at {address}: no answer{tls} within "
            f"{CONNECT_TIMEOUT.total_seconds():g}s"
        ) from None
    except ValueError as error:
        raise ConnectionConfigError(
            f"Temporal address {address!r} (TEMPORAL_ADDRESS) is not host:port: {one_line(error)}"
        ) from None
    except (RuntimeError, OSError) as error:
        raise ConnectionFailed(f"cannot reach Temporal at {address}: {one_line(error)}") from None
