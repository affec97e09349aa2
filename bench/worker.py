"""`python -m bench.worker`: a worker built like production's (`worker.main.build_worker`)
hosting the real CanaryWorkflow over `bench.fakes` (or, with `--floor`, `bench.floor`), until
SIGTERM; then it writes its call log as JSON to `--calls`.
"""

import argparse
import asyncio
import concurrent.futures
import json
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

from bench import versions
from bench.fakes import NoopActivities
from bench.floor import FloorWorkflow
from worker.command import add_tuning_arguments, tuning_of
from worker.connection import connect
from worker.main import build_worker

READY_LINE = "bench worker polling"


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    fakes = NoopActivities()
    tuning = tuning_of(args)
    if args.no_passthrough:
        tuning = replace(tuning, sandbox_passthrough=False)
    if args.sdk_sandbox:
        tuning = replace(tuning, lean_sandbox=False)
    client = await connect()
    threads = tuning.max_concurrent_activities
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as executor:
        if args.floor:
            worker = build_worker(
                client, fakes.floor(), executor, args.task_queue, tuning, (FloorWorkflow,)
            )
        elif args.before:
            workflows = (versions.BEFORE[args.before],)
            worker = build_worker(client, fakes.all(), executor, args.task_queue, tuning, workflows)
        else:
            worker = build_worker(client, fakes.all(), executor, args.task_queue, tuning)
        async with worker:
            print(READY_LINE, flush=True)
            await stop.wait()
    Path(args.calls).write_text(json.dumps([call.as_json() for call in fakes.calls]))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--calls", required=True, help="where to write the call log (JSON)")
    parser.add_argument(
        "--no-passthrough", action="store_true", help="import every module inside the sandbox"
    )
    parser.add_argument(
        "--sdk-sandbox",
        action="store_true",
        help="enter the sandbox as the SDK does (not worker.sandbox)",
    )
    parser.add_argument(
        "--floor", action="store_true", help="host bench.floor.FloorWorkflow instead of rollouts"
    )
    parser.add_argument(
        "--before",
        choices=sorted(versions.BEFORE),
        help="run rollouts as those started before this patch run",
    )
    add_tuning_arguments(parser)
    asyncio.run(serve(parser.parse_args()))
    sys.stdout.flush()
    os._exit(0)  # see worker.command: the SDK's threads can abort a normal interpreter exit


if __name__ == "__main__":
    main()
