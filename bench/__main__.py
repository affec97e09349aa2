"""`make bench` (`python -m bench`): run every case, print the figures, write BENCHMARKS.md.

`--smoke` runs each case at a toy size (what `make test` checks); `--long` adds 1,000
rollouts at a 60 s interval (about eight minutes); `--max-rollouts N` leaves out the fleet cases
of more rollouts than N and `--only` runs some sections only (shorter runs on a busy machine).
"""

import argparse
import asyncio
import os
import shutil
import signal
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from bench.embedded import single_rollout
from bench.fleet import DevServer, FleetCase, FleetResult, detection_latency, run_fleet
from bench.report import Report, render
from bench.startlatency import import_profile, start_latencies
from demo.platform import PlatformError
from starter.cli import Refused
from workflows.canary_workflow import FEWER_ROUND_TRIPS

STATE_DIR = Path(".coalmine") / "bench"
SECTIONS = ("embedded", "fleet", "detection", "start", "floor", "levers", "scaling")


@dataclass(frozen=True)
class Profile:
    fleet: tuple[FleetCase, ...]
    floor: tuple[FleetCase, ...]
    """The SDK's floor (timer and local activities only), then rollouts, under the same load."""
    scaling: tuple[FleetCase, FleetCase]
    """The same load on one worker process and on two."""
    levers: tuple[tuple[str, FleetCase, FleetCase], ...]
    """(lever, without it, with it)."""
    lever_runs: int
    """Runs of each side of a lever, interleaved (without, with, without, ...): a busy
    machine's load moves between runs, and the median ratio of the pairs moves less."""
    detection_rollouts: int
    detection_interval: float
    detection_threshold: int
    start_runs: int
    single_interval: float
    single_steps: int


def full_profile(long: bool) -> Profile:
    fleet = [
        FleetCase(100, 5),
        FleetCase(100, 10),
        FleetCase(100, 60, steps=3),
        FleetCase(1000, 10),
    ]
    if long:
        fleet.append(FleetCase(1000, 60, steps=3))
    scaling_load = FleetCase(200, 1, label="200 @ 1s, 1 worker")
    lever_load = FleetCase(100, 2, steps=10, label="100 @ 2s")
    return Profile(
        fleet=tuple(fleet),
        floor=floor_cases(50, 1, 10),
        scaling=(scaling_load, FleetCase(200, 1, workers=2, label="200 @ 1s, 2 workers")),
        levers=(
            *workflow_levers(lever_load),
            (
                "bytecode caches, as an installed worker has",
                replace(lever_load, bytecode=False, label="100 @ 2s, no caches"),
                replace(lever_load, label="100 @ 2s, caches"),
            ),
            (
                "max cached workflows >= rollouts",
                FleetCase(
                    200, 2, worker_args=("--max-cached-workflows", "50"), label="200 @ 2s, cache 50"
                ),
                FleetCase(200, 2, label="200 @ 2s, cache 1000"),
            ),
        ),
        lever_runs=3,
        detection_rollouts=5,
        detection_interval=2,
        detection_threshold=2,
        start_runs=7,
        single_interval=2,
        single_steps=5,
    )


def workflow_levers(load: FleetCase) -> tuple[tuple[str, FleetCase, FleetCase], ...]:
    """The levers on how the worker runs the workflow, each off and on under `load`."""
    name = load.name
    return (
        (
            "sandbox passthrough of canary and yaml",
            replace(load, passthrough=False, label=f"{name}, no passthrough"),
            replace(load, label=f"{name}, passthrough"),
        ),
        (
            "sandbox entered at less cost (worker.sandbox)",
            replace(load, worker_args=("--sdk-sandbox",), label=f"{name}, SDK's"),
            replace(load, label=f"{name}, worker.sandbox"),
        ),
        (
            "fewer round trips (patch fewer-round-trips)",
            replace(
                load, worker_args=("--before", FEWER_ROUND_TRIPS), label=f"{name}, before the patch"
            ),
            replace(load, label=f"{name}, with it"),
        ),
    )


def floor_cases(rollouts: int, interval: float, steps: int) -> tuple[FleetCase, ...]:
    """A timer and one local activity per step, a timer and two, and rollouts."""
    load = FleetCase(rollouts, interval, steps=steps)
    return (
        replace(load, floor_calls=1, label=f"{load.name}, floor: timer + 1 local activity"),
        replace(load, floor_calls=2, label=f"{load.name}, floor: timer + 2 local activities"),
        replace(load, label=f"{load.name}, CanaryWorkflow"),
    )


def smoke_profile() -> Profile:
    tiny = FleetCase(5, 1, steps=2)
    return Profile(
        fleet=(tiny,),
        floor=floor_cases(5, 1, 2),
        scaling=(
            FleetCase(5, 1, steps=2, label="5 @ 1s, 1 worker"),
            FleetCase(5, 1, steps=2, workers=2, label="5 @ 1s, 2 workers"),
        ),
        levers=workflow_levers(tiny),
        lever_runs=1,
        detection_rollouts=1,
        detection_interval=1,
        detection_threshold=1,
        start_runs=2,
        # the demo's own interval: at 1 s the canary's first check can come before Prometheus
        # has scraped any of its requests ("no values"), and a busy machine rolls it back
        single_interval=4,
        single_steps=2,
    )


async def run_on_dev_server(
    profile: Profile,
    state_dir: Path,
    report: Report,
    save: Callable[[], None],
    max_rollouts: int,
    sections: Collection[str],
) -> None:
    """The cases of `sections` on one dev server, cheapest and most telling first; `save`
    after each, so a run cut short still leaves its figures."""
    server = DevServer(state_dir)
    client = await server.start()

    async def fleet(case: FleetCase, folder: str) -> FleetResult:
        result = await run_fleet(server, client, case, state_dir / folder, folder)
        print(f"  done: {case.name}", flush=True)
        return result

    try:
        if "fleet" in sections:
            report.fleet.append(await fleet(profile.fleet[0], "fleet-0"))
            save()
        if "detection" in sections:
            report.detection = await detection_latency(
                server,
                client,
                state_dir / "detection",
                profile.detection_rollouts,
                profile.detection_interval,
                profile.detection_threshold,
            )
            report.detection_threshold = profile.detection_threshold
        if "start" in sections:
            report.start = await start_latencies(
                server, client, state_dir / "start", profile.start_runs
            )
            report.imports = import_profile()
        save()
        if "floor" in sections:
            for number, case in enumerate(profile.floor):
                report.floor.append(await fleet(case, f"floor-{number}"))
            save()
        if "levers" in sections:
            for number, (lever, without, with_it) in enumerate(profile.levers):
                offs: list[FleetResult] = []
                ons: list[FleetResult] = []
                for run in range(profile.lever_runs):
                    offs.append(await fleet(without, f"lever-{number}-off-{run}"))
                    ons.append(await fleet(with_it, f"lever-{number}-on-{run}"))
                report.levers.append((lever, offs, ons))
                save()
        if "scaling" in sections:
            for number, case in enumerate(profile.scaling):
                report.scaling.append(await fleet(case, f"scale-{number}"))
            save()
        if "fleet" in sections:
            for number, case in enumerate(profile.fleet[1:], start=1):
                if case.rollouts > max_rollouts:
                    report.left_out.append(case.name)
                    continue
                report.fleet.append(await fleet(case, f"fleet-{number}"))
                save()
    finally:
        server.stop()


def _sections(text: str) -> tuple[str, ...]:
    chosen = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in chosen if name not in SECTIONS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown) or 'nothing'}: not a section ({', '.join(SECTIONS)})"
        )
    return chosen


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="every case at a toy size")
    parser.add_argument("--long", action="store_true", help="add 1,000 rollouts at 60 s")
    parser.add_argument(
        "--max-rollouts",
        type=int,
        default=sys.maxsize,
        metavar="N",
        help="leave out the fleet cases of more rollouts than N",
    )
    parser.add_argument(
        "--only",
        type=_sections,
        default=SECTIONS,
        metavar="SECTION,...",
        help=f"run these sections only, of {', '.join(SECTIONS)}",
    )
    parser.add_argument("--out", default="BENCHMARKS.md", help="where to write the figures")
    parser.add_argument("--state-dir", default=str(STATE_DIR), help="logs and call logs")
    args = parser.parse_args(argv)
    profile = smoke_profile() if args.smoke else full_profile(args.long)
    state_dir = Path(args.state_dir).resolve()
    shutil.rmtree(state_dir, ignore_errors=True)
    state_dir.mkdir(parents=True)
    report = Report(long=args.long, smoke=args.smoke)
    print(f"bench: logs under {state_dir}", flush=True)

    def save() -> None:
        Path(args.out).write_text(render(report))

    try:
        if "embedded" in args.only:
            report.single = single_rollout(
                state_dir / "embedded", profile.single_interval, profile.single_steps
            )
            print("  done: single rollout on the embedded platform", flush=True)
        asyncio.run(
            run_on_dev_server(
                profile, state_dir / "dev-server", report, save, args.max_rollouts, args.only
            )
        )
    except (PlatformError, Refused) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: stopped everything the bench started", file=sys.stderr)
        return 130
    save()
    print(render(report))
    print(f"bench: wrote {args.out}")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # the SDK's threads can abort a normal interpreter exit
