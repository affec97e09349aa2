"""`coalmine worker` as a process: it polls the dev server and stops cleanly on SIGTERM."""

import asyncio
import os
import signal
import sys
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

REPO = Path(__file__).resolve().parents[2]


async def test_worker_polls_and_stops_gracefully_on_sigterm(
    dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    address = dev_server_env.client.service_client.config.target_host
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "KUBECONFIG": str(tmp_path / "absent-kubeconfig"),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "starter.cli",
        "worker",
        "--task-queue",
        "sigterm-test",
        cwd=REPO,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        line = await asyncio.wait_for(process.stderr.readline(), timeout=30)
        assert b"coalmine worker polling task queue sigterm-test on default" in line
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=40)
        rest = await process.stderr.read()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0
    assert b"stopping: letting in-flight activities finish" in rest
    assert b"Traceback" not in rest
