"""`coalmine start`: seconds from process start to return, against a running server."""

import subprocess
import sys
import time
from pathlib import Path

from temporalio.client import Client

from bench.fleet import REPO, DevServer, canary_yaml
from canary.loader import load_canary
from demo.platform import find_program
from starter.cli import Refused


async def start_latencies(
    server: DevServer, client: Client, folder: Path, runs: int
) -> list[float]:
    """Each run starts a new rollout, terminated once measured (only the start counts)."""
    folder.mkdir(parents=True, exist_ok=True)
    coalmine = find_program("coalmine", "pip install -e . in this repo")
    latencies: list[float] = []
    for index in range(runs):
        spec = folder / f"start-{index}.yaml"
        spec.write_text(canary_yaml(f"start-{index}", 60, 5, namespace="bench-start"))
        begun = time.monotonic()
        done = subprocess.run(
            [coalmine, "start", "-f", str(spec), "--image", "v2"],
            env=server.env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        latencies.append(time.monotonic() - begun)
        if done.returncode != 0:
            raise Refused(f"coalmine start failed: {done.stderr.strip()}")
        canary = load_canary(spec.read_text(), str(spec)).canary
        await client.get_workflow_handle(canary.workflow_id).terminate("measured its start")
    return latencies


PROFILED = ("temporalio.client", "canary.contract", "starter.history", "workflows.canary_workflow")
"""Modules `coalmine start` loads whose import time is worth showing (they overlap)."""


def import_profile() -> dict[str, float]:
    """Seconds `python -X importtime` attributes to the CLI module and to `PROFILED` in it
    (each the first time it is imported, with what it imports)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import starter.cli"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    seconds: dict[str, float] = {}
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].strip()
        if name in (*PROFILED, "starter.cli") and name not in seconds:
            seconds[name] = int(parts[1]) / 1e6
    return seconds
