"""One rollout on the embedded platform (dev server, Prometheus, Traefik, a `coalmine worker`
with local targets): its wall time against the formula minimum, `interval * steps`."""

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from activities.local_target import LocalTarget
from canary.loader import load_canary
from canary.spec import Canary
from canary.status import CanaryStatus, Phase
from demo.__main__ import HEALTHY, demo_canary
from demo.load import BackgroundLoad
from demo.platform import SCRAPING, Platform, Ports, free_port
from starter import verdict
from starter.cli import start_rollout
from worker.connection import connect

LOAD_RATE = 25.0


@dataclass(frozen=True)
class SingleRollout:
    interval: float
    steps: int
    wall_seconds: float
    phase: Phase

    @property
    def minimum_seconds(self) -> float:
        return self.interval * self.steps

    @property
    def ratio(self) -> float:
        return self.wall_seconds / self.minimum_seconds


def distinct_ports() -> Ports:
    """Six free ports, no two alike (free_port alone may hand out one port twice)."""
    chosen: list[int] = []
    while len(chosen) < 6:
        port = free_port()
        if port not in chosen:
            chosen.append(port)
    return Ports(*chosen)


def single_rollout(state_dir: Path, interval: float, steps: int) -> SingleRollout:
    state_dir.mkdir(parents=True, exist_ok=True)
    platform = Platform(state_dir=state_dir, ports=distinct_ports())
    target: LocalTarget | None = None
    saved = {key: os.environ.get(key) for key in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE")}
    try:
        platform.start_temporal()
        platform.start_prometheus()
        platform.start_traefik()
        os.environ["TEMPORAL_ADDRESS"] = platform.temporal_address
        os.environ["TEMPORAL_NAMESPACE"] = "default"
        platform.start_worker()
        demo_canary(platform, state_dir)
        effective = state_dir / "canary.yaml"
        document = yaml.safe_load(effective.read_text())
        analysis = document["spec"]["analysis"]
        analysis.update({"interval": f"{interval:g}s", "maxWeight": 10 * steps, "stepWeight": 10})
        effective.write_text(yaml.safe_dump(document, sort_keys=False))
        canary = load_canary(effective.read_text(), str(effective)).canary
        target = LocalTarget.for_canary(canary)
        duration = 60 + interval * steps * 4
        with BackgroundLoad(platform.web_url + "/", rate=LOAD_RATE, duration=duration):
            platform.wait_for_metric(SCRAPING)
            begun = time.monotonic()
            status = asyncio.run(_roll_out(canary))
            wall = time.monotonic() - begun
        return SingleRollout(interval, steps, wall, status.phase)
    finally:
        platform.stop()
        if target is not None:
            target.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


async def _roll_out(canary: Canary) -> CanaryStatus:
    client = await connect()
    handle = await start_rollout(client, canary, HEALTHY)
    return await verdict.final_status(handle)
