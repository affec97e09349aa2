"""`coalmine worker` as a process: it polls the dev server and exits 0 on SIGTERM and SIGINT."""

import asyncio
import os
import signal
import sys
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.support.net import free_port

REPO = Path(__file__).resolve().parents[2]
STOPS = 50
AT_ONCE = 5
"""Workers started side by side: 50 stops in a row, without 50 serial start-ups."""


async def start_and_stop(
    dev_server_env: WorkflowEnvironment, tmp_path: Path, queue: str, signum: signal.Signals
) -> tuple[int, bytes]:
    """Start a worker that serves metrics, wait until it polls, stop it by `signum`."""
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": dev_server_env.client.service_client.config.target_host,
        "KUBECONFIG": str(tmp_path / "absent-kubeconfig"),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "starter.cli",
        "worker",
        "--task-queue",
        queue,
        "--metrics-address",
        f"127.0.0.1:{free_port()}",
        cwd=REPO,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    output = b""
    try:
        while b"coalmine worker polling task queue" not in output:
            line = await asyncio.wait_for(process.stderr.readline(), timeout=60)
            assert line, f"the worker ended before polling: {output.decode()}"
            output += line
        process.send_signal(signum)
        code = await asyncio.wait_for(process.wait(), timeout=60)
        return code, output + await process.stderr.read()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_worker_exits_0_every_time_it_is_stopped(
    dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The SDK's runtime threads could abort the interpreter's teardown (exit -6) now and then:
    50 stops, by SIGTERM and SIGINT in turn, must all exit 0 and say so in the log."""
    results: list[tuple[int, bytes]] = []
    for batch in range(STOPS // AT_ONCE):
        results += await asyncio.gather(
            *(
                start_and_stop(
                    dev_server_env,
                    tmp_path,
                    f"stop-test-{batch}-{index}",
                    signal.SIGTERM if index % 2 else signal.SIGINT,
                )
                for index in range(AT_ONCE)
            )
        )
    codes = [code for code, _ in results]
    assert codes == [0] * STOPS, codes
    for _, log in results:
        assert b"stopping: letting in-flight activities finish" in log
        assert b"coalmine worker stopped" in log
        assert b"Traceback" not in log
        assert b"Fatal Python error" not in log
