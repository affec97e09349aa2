"""`make bench` (`python -m bench`): run every case, print the figures, write BENCHMARKS.md.

`--smoke` runs each case at a toy size (what `make test` checks); `--long` adds 1,000
rollouts at a 60 s interval (about eight minutes).
"""

import argparse
import asyncio
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from bench.embedded import single_rollout
from bench.fleet import DevServer, FleetCase, detection_latency, run_fleet
from bench.report import Report, render
from bench.startlatency import import_profile, start_latencies
from demo.platform import PlatformError
from starter.cli import Refused

STATE_DIR = Path(".coalmine") / "bench"


@dataclass(frozen=True)
class Profile:
    fleet: tuple[FleetCase, ...]
    scaling: tuple[FleetCase, FleetCase]
    """The same load on one worker process and on two."""
    levers: tuple[tuple[str, FleetCase, FleetCase], ...]
    """(lever, without it, with it)."""
    detection_rollouts: int
    detection_interval: float
    detection_threshold: int
    start_runs: int
    single_interval: float
    single_steps: int


def full_profile(long: bool) -> Profile:
    fleet = [
        FleetCase(100, 10),
        FleetCase(1000, 10),
        FleetCase(100, 60, steps=3),
    ]
    if long:
        fleet.append(FleetCase(1000, 60, steps=3))
    scaling_load = FleetCase(300, 1, label="300 @ 1s, 1 worker")
    return Profile(
        fleet=tuple(fleet),
        scaling=(scaling_load, FleetCase(300, 1, workers=2, label="300 @ 1s, 2 workers")),
        levers=(
            (
                "sandbox passthrough of canary, pydantic, yaml",
                FleetCase(100, 2, passthrough=False, label="100 @ 2s, no passthrough"),
                FleetCase(100, 2, label="100 @ 2s, passthrough"),
            ),
            (
                "max cached workflows >= rollouts",
                FleetCase(
                    200, 2, worker_args=("--max-cached-workflows", "50"), label="200 @ 2s, cache 50"
                ),
                FleetCase(200, 2, label="200 @ 2s, cache 1000"),
            ),
        ),
        detection_rollouts=5,
        detection_interval=2,
        detection_threshold=2,
        start_runs=7,
        single_interval=2,
        single_steps=5,
    )


def smoke_profile() -> Profile:
    tiny = FleetCase(5, 1, steps=2)
    return Profile(
        fleet=(tiny,),
        scaling=(
            FleetCase(5, 1, steps=2, label="5 @ 1s, 1 worker"),
            FleetCase(5, 1, steps=2, workers=2, label="5 @ 1s, 2 workers"),
        ),
        levers=(
            (
                "sandbox passthrough of canary, pydantic, yaml",
                FleetCase(5, 1, steps=2, passthrough=False, label="5 @ 1s, no passthrough"),
                FleetCase(5, 1, steps=2, label="5 @ 1s, passthrough"),
            ),
        ),
        detection_rollouts=1,
        detection_interval=1,
        detection_threshold=1,
        start_runs=2,
        single_interval=1,
        single_steps=2,
    )


async def run_on_dev_server(profile: Profile, state_dir: Path, report: Report) -> None:
    server = DevServer(state_dir)
    client = await server.start()
    try:
        for number, case in enumerate(profile.fleet):
            result = await run_fleet(
                server, client, case, state_dir / f"fleet-{number}", f"f{number}"
            )
            report.fleet.append(result)
            print(f"  done: {case.name}", flush=True)
        for number, case in enumerate(profile.scaling):
            result = await run_fleet(
                server, client, case, state_dir / f"scale-{number}", f"s{number}"
            )
            report.scaling.append(result)
            print(f"  done: {case.name}", flush=True)
        for number, (lever, without, with_it) in enumerate(profile.levers):
            off = await run_fleet(
                server, client, without, state_dir / f"lever-{number}-off", f"l{number}off"
            )
            on = await run_fleet(
                server, client, with_it, state_dir / f"lever-{number}-on", f"l{number}on"
            )
            report.levers.append((lever, off, on))
            print(f"  done: {lever}", flush=True)
        report.detection = await detection_latency(
            server,
            client,
            state_dir / "detection",
            profile.detection_rollouts,
            profile.detection_interval,
            profile.detection_threshold,
        )
        report.detection_threshold = profile.detection_threshold
        print("  done: detection", flush=True)
        # Last: these rollouts stay pending (no worker takes them).
        report.start = start_latencies(server, state_dir / "start", profile.start_runs)
        report.imports = import_profile()
        print("  done: coalmine start", flush=True)
    finally:
        server.stop()


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="every case at a toy size")
    parser.add_argument("--long", action="store_true", help="add 1,000 rollouts at 60 s")
    parser.add_argument("--out", default="BENCHMARKS.md", help="where to write the figures")
    parser.add_argument("--state-dir", default=str(STATE_DIR), help="logs and call logs")
    args = parser.parse_args(argv)
    profile = smoke_profile() if args.smoke else full_profile(args.long)
    state_dir = Path(args.state_dir).resolve()
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    report = Report(long=args.long, smoke=args.smoke)
    print(f"bench: logs under {state_dir}", flush=True)
    try:
        asyncio.run(run_on_dev_server(profile, state_dir / "dev-server", report))
        report.single = single_rollout(
            state_dir / "embedded", profile.single_interval, profile.single_steps
        )
        print("  done: single rollout on the embedded platform", flush=True)
    except (PlatformError, Refused) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: stopped everything the bench started", file=sys.stderr)
        return 130
    text = render(report)
    print(text)
    Path(args.out).write_text(text)
    print(f"bench: wrote {args.out}")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # the SDK's threads can abort a normal interpreter exit
