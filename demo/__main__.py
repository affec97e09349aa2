"""`make demo`: two real rollouts on this machine, then everything it started is stopped.

v2 (healthy) is promoted; v3 (answers 500 to a third of its requests) is rolled back. Exit 0
when both end that way, 1 otherwise, 2 when the platform cannot start.
"""

import asyncio
import os
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path
from types import FrameType

import yaml

from activities.local_target import LocalTarget
from canary.loader import load_canary
from canary.spec import Canary
from canary.status import Phase
from demo.load import BackgroundLoad, generate_load
from demo.platform import SCRAPING, Platform, PlatformError, Ports, free_port, port_is_free
from starter import render
from starter.cli import follow, start_rollout
from worker.connection import connect

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "demo" / "podinfo-local.yaml"
STATE_DIR = Path(".coalmine") / "demo"
HEALTHY = "v2"
FAULTY = "v3 --error-rate 0.34"
LOAD_RATE = 25.0
LOAD_SECONDS = 170.0
PREFERRED = Ports(
    temporal=7233, ui=8233, prometheus=19090, web=18080, traefik_admin=18090, worker_metrics=9464
)


def pick_ports() -> Ports:
    """The usual ports where they are free, others where not."""
    chosen = {
        name: port if port_is_free(port) else free_port() for name, port in vars(PREFERRED).items()
    }
    return Ports(**chosen)


def demo_canary(platform: Platform, state_dir: Path) -> Canary:
    """The shipped demo spec, pointed at this platform's ports and folders."""
    document = yaml.safe_load(SPEC.read_text())
    spec = document["spec"]
    local = spec["local"]
    for key in ("primaryPort", "canaryPort"):
        if not port_is_free(local[key]):
            local[key] = free_port()
    local["stateDir"] = str(state_dir / "targets")
    local["command"] = local["command"].replace("python", sys.executable, 1)
    spec["traefik"]["configFile"] = str(platform.dynamic_dir / "podinfo.yaml")
    spec["traefik"]["apiUrl"] = f"http://127.0.0.1:{platform.ports.traefik_admin}"
    spec["analysis"]["metricsServer"] = platform.prometheus_url
    effective = state_dir / "canary.yaml"
    effective.write_text(yaml.safe_dump(document, sort_keys=False))
    loaded = load_canary(effective.read_text(), str(effective))
    return loaded.canary


async def roll_out(platform: Platform, canary: Canary, image: str) -> Phase:
    client = await connect()
    handle = await start_rollout(client, canary, image)
    print(f"\n== rollout of {canary.target} to {image!r}")
    print(f"   Web UI: {platform.workflow_url(handle.id, handle.result_run_id)}")
    status = await follow(handle)
    print(f"== {render.verdict(canary.target, status)}")
    return status.phase


def versions_answering(url: str, count: int = 40) -> Counter[str]:
    return generate_load(url, rate=100, duration=count / 100 + 1, max_requests=count).versions


async def run_rollouts(platform: Platform, canary: Canary) -> bool:
    healthy = await roll_out(platform, canary, HEALTHY)
    after_healthy = versions_answering(platform.web_url + "/")
    print(f"   requests through Traefik now reach: {dict(after_healthy)}")
    faulty = await roll_out(platform, canary, FAULTY)
    after_faulty = versions_answering(platform.web_url + "/")
    print(f"   requests through Traefik now reach: {dict(after_faulty)}")
    return (
        healthy == Phase.SUCCEEDED
        and faulty == Phase.FAILED
        and set(after_healthy) == {"v2"}
        and set(after_faulty) == {"v2"}
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # Our own handler for both: under asyncio.run, Ctrl-C would only cancel the running task,
    # and a client call that absorbs the cancellation would let the demo run on.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    state_dir = STATE_DIR.resolve()
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    platform = Platform(state_dir=state_dir, ports=pick_ports())
    target: LocalTarget | None = None
    try:
        print(f"coalmine demo: state and logs under {state_dir}")
        platform.start_temporal()
        print(f"Temporal dev server at {platform.temporal_address}, Web UI at {platform.ui_url}")
        platform.start_prometheus()
        platform.start_traefik()
        os.environ["TEMPORAL_ADDRESS"] = platform.temporal_address
        os.environ["TEMPORAL_NAMESPACE"] = "default"
        platform.start_worker()
        print(f"Prometheus at {platform.prometheus_url}, Traefik at {platform.web_url}")
        canary = demo_canary(platform, state_dir)
        target = LocalTarget.for_canary(canary)
        with BackgroundLoad(platform.web_url + "/", rate=LOAD_RATE, duration=LOAD_SECONDS):
            platform.wait_for_metric(SCRAPING)
            ok = asyncio.run(run_rollouts(platform, canary))
        print("\ndemo " + ("passed: v2 promoted, v3 rolled back" if ok else "FAILED"))
        return 0 if ok else 1
    except PlatformError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything the demo started", file=sys.stderr)
        return 130
    finally:
        platform.stop()
        if target is not None:
            target.shutdown()  # after the worker, which could otherwise start them again


if __name__ == "__main__":
    sys.exit(main())
