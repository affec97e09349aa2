"""The `coalmine` CLI as a user runs it: a subprocess against the real Temporal dev server.

A worker with same-name fake activities serves task queue `coalmine` in this process.
"""

import asyncio
import contextlib
import json
import os
import pty
import re
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from canary.contract import TASK_QUEUE
from canary.spec import workflow_id
from canary.status import CanaryStatus
from tests.support.net import free_port
from tests.workflows.fakes import FakePlatform
from workflows.canary_workflow import CanaryWorkflow

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "examples" / "podinfo-canary.yaml"


@dataclass
class Run:
    code: int
    out: str
    err: str


async def coalmine(*args: str, address: str, extra_env: dict[str, str] | None = None) -> Run:
    env = {**os.environ, "TEMPORAL_ADDRESS": address, "TEMPORAL_NAMESPACE": "default"}
    env.pop("COALMINE_MESH_PROVIDER", None)
    env.update(extra_env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "starter.cli",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def spec_file(tmp_path: Path, name: str, **analysis: object) -> Path:
    document = yaml.safe_load(EXAMPLE.read_text())
    document["metadata"]["name"] = name
    document["spec"]["analysis"].update({"interval": "1s", "threshold": 2, **analysis})
    document["spec"]["analysis"]["webhooks"] = []
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
async def platform(dev_server_env: WorkflowEnvironment) -> AsyncIterator[FakePlatform]:
    fake = FakePlatform(failing_image="bad", task_queue=TASK_QUEUE)
    async with Worker(
        dev_server_env.client,
        task_queue=TASK_QUEUE,
        workflows=[CanaryWorkflow],
        activities=fake.activities(),
    ):
        yield fake


@pytest.fixture
def address(dev_server_env: WorkflowEnvironment) -> str:
    return dev_server_env.client.service_client.config.target_host


async def test_start_wait_prints_events_and_exits_0_on_success(
    platform: FakePlatform, address: str, tmp_path: Path
) -> None:
    path = spec_file(tmp_path, "good")
    run = await coalmine("start", "-f", str(path), "--image", "v2", "--wait", address=address)
    assert run.code == 0, run.err
    advances = [line.split("! ")[-1].split("  ")[-1] for line in run.out.splitlines()]
    weights = [line.rsplit(" ", 1)[-1] for line in advances if "canary weight" in line]
    assert weights == ["10", "20", "30", "40", "50"]
    assert "Promotion completed! Scaling down good.test" in run.out
    assert run.out.strip().endswith("good.test: Succeeded")

    status = await coalmine("status", "good", "-n", "test", "--json", address=address)
    assert status.code == 0, status.err
    parsed = json.loads(status.out)
    assert parsed["phase"] == "Succeeded"
    assert (parsed["primary_weight"], parsed["canary_weight"]) == (100, 0)


async def test_start_wait_exits_1_when_rolled_back(
    platform: FakePlatform, address: str, tmp_path: Path
) -> None:
    path = spec_file(tmp_path, "bad")
    run = await coalmine("start", "-f", str(path), "--image", "bad", "--wait", address=address)
    assert run.code == 1, run.err
    assert "Halt bad.test advancement success rate 61.50% < 99%" in run.out
    assert "bad.test: Failed: Rolling back bad.test failed checks threshold reached 2" in run.out


async def wait_for(
    client: Client, name: str, condition: Callable[[CanaryStatus], bool]
) -> CanaryStatus:
    """Poll the status of rollout `name` (namespace `test`) in-process until `condition`."""
    handle = client.get_workflow_handle_for(CanaryWorkflow.run, workflow_id("test", name))
    status = None
    for _ in range(600):
        with contextlib.suppress(RPCError):  # not started yet
            status = await handle.query(CanaryWorkflow.status)
            if condition(status):
                return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name}: condition not met; status {status}")


async def test_second_start_is_refused_and_controls_steer_the_rollout(
    platform: FakePlatform, address: str, dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    path = spec_file(tmp_path, "steered", interval="30s")
    first = await coalmine("start", "-f", str(path), "--image", "v2", address=address)
    assert first.code == 0, first.err
    second = await coalmine(
        "start", "-f", str(path), "--image", "v3", "--no-supersede", address=address
    )
    assert second.code == 2
    assert "a rollout of steered.test is already running" in second.err
    assert "Traceback" not in second.err

    await wait_for(dev_server_env.client, "steered", lambda status: status.canary_weight == 10)
    paused = await coalmine("pause", "steered", "-n", "test", "--reason", "lunch", address=address)
    assert paused.code == 0
    status = await coalmine("status", "steered", "-n", "test", address=address)
    assert "(paused)" in status.out
    assert "paused: lunch" in status.out
    resumed = await coalmine("resume", "steered", "-n", "test", address=address)
    assert resumed.code == 0

    promoted = await coalmine("promote", "steered", "-n", "test", "--reason", "ok", address=address)
    assert promoted.code == 0, promoted.err
    assert "Promotion of steered.test requested" in promoted.out
    await wait_for(dev_server_env.client, "steered", lambda status: status.phase.final)
    status = await coalmine("status", "steered", "-n", "test", "--json", address=address)
    assert json.loads(status.out)["phase"] == "Succeeded"

    late = await coalmine("abort", "steered", "-n", "test", address=address)
    assert late.code == 2
    assert late.err.strip() == "error: the rollout of steered.test has already ended (Succeeded)"


async def test_a_second_start_supersedes_the_image_and_the_first_waiting_job_exits_1(
    platform: FakePlatform, address: str, dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    # 19 steps of 2s: the rollout of v2 cannot end before the second start reaches it
    path = spec_file(tmp_path, "superseded", interval="2s", stepWeight=5, maxWeight=95)
    first_job = asyncio.create_task(
        coalmine("start", "-f", str(path), "--image", "v2", "--wait", address=address)
    )
    await wait_for(dev_server_env.client, "superseded", lambda status: status.canary_weight > 0)
    second = await coalmine("start", "-f", str(path), "--image", "v3", "--wait", address=address)
    first = await first_job
    assert first.code == 1, first.err
    assert first.err.strip().endswith("superseded.test: v2 was superseded by v3")
    assert second.code == 0, second.err
    assert "Rollout of superseded.test to v2 superseded by v3" in second.out
    assert "New revision detected! Restarting analysis for superseded.test" in second.out
    assert second.out.strip().endswith("superseded.test: Succeeded")
    assert platform.images[-2:] == ["v2", "v3"]
    status = await coalmine("status", "superseded", "-n", "test", "--json", address=address)
    parsed = json.loads(status.out)
    assert (parsed["phase"], parsed["image"], parsed["revision"]) == ("Succeeded", "v3", "rev-v3")


async def test_an_ended_rollout_tells_its_status_with_no_worker_running(
    dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The verdict is read from the ended run's history: no worker replays the run for it."""
    address = dev_server_env.client.service_client.config.target_host
    fake = FakePlatform(failing_image="bad", task_queue=TASK_QUEUE)
    async with Worker(
        dev_server_env.client,
        task_queue=TASK_QUEUE,
        workflows=[CanaryWorkflow],
        activities=fake.activities(),
    ):
        for name, image, code in (("ended-ok", "v2", 0), ("ended-bad", "bad", 1)):
            path = spec_file(tmp_path, name)
            run = await coalmine(
                "start", "-f", str(path), "--image", image, "--wait", address=address
            )
            assert run.code == code, run.err
    for name, phase in (("ended-ok", "Succeeded"), ("ended-bad", "Failed")):
        status = await coalmine("status", name, "-n", "test", "--json", address=address)
        assert status.code == 0, status.err
        assert json.loads(status.out)["phase"] == phase
        late = await coalmine("pause", name, "-n", "test", address=address)
        assert late.code == 2
        assert late.err.strip() == f"error: the rollout of {name}.test has already ended ({phase})"


async def test_abort_rolls_back_a_running_rollout(
    platform: FakePlatform, address: str, dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    path = spec_file(tmp_path, "aborted", interval="30s")
    assert (await coalmine("start", "-f", str(path), "--image", "v2", address=address)).code == 0
    await wait_for(dev_server_env.client, "aborted", lambda status: status.canary_weight == 10)
    run = await coalmine(
        "abort", "aborted", "-n", "test", "--reason", "oops", "--json", address=address
    )
    assert run.code == 0, run.err
    assert json.loads(run.out) == {
        "ok": True,
        "message": "Rolling back aborted.test manual abort: oops",
    }
    await wait_for(dev_server_env.client, "aborted", lambda status: status.phase.final)
    status = await coalmine("status", "aborted", "-n", "test", "--json", address=address)
    parsed = json.loads(status.out)
    assert parsed["phase"] == "Failed"
    assert parsed["reason"] == "Rolling back aborted.test manual abort: oops"
    # the workflow failed (RolloutFailed); watch reads the verdict from the failure
    watched = await coalmine("watch", "aborted", "-n", "test", address=address)
    assert watched.code == 1, watched.err
    assert watched.err == ""
    verdict = "aborted.test: Failed: Rolling back aborted.test manual abort: oops"
    assert watched.out.splitlines()[-1] == verdict


async def test_an_unknown_rollout_is_one_clear_line(
    dev_server_env: WorkflowEnvironment, address: str
) -> None:
    commands = ["status", "watch", "history", "pause"]
    runs = await asyncio.gather(
        *(
            coalmine(command, "nothing", "-n", "test", "--json", address=address)
            for command in commands
        )
    )
    for command, run in zip(commands, runs, strict=True):
        assert (command, run.code) == (command, 2)
        assert run.err.strip() == "error: no rollout of nothing.test (workflow canary-test.nothing)"


async def test_unreachable_temporal_exits_3_with_one_line(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    run = await coalmine("status", "podinfo", "-n", "test", address=address)
    assert run.code == 3
    lines = run.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: cannot reach Temporal at {address}")


async def test_validate_prints_a_summary(tmp_path: Path) -> None:
    run = await coalmine("validate", "-f", str(EXAMPLE), address="unused:1")
    assert run.code == 0, run.err
    assert "Canary podinfo.test" in run.out
    assert "canary, weights 10, 20, 30, 40, 50 then promotion" in run.out


async def test_validate_json_prints_the_normalized_spec(tmp_path: Path) -> None:
    path = tmp_path / "deprecated.yaml"
    document = yaml.safe_load(EXAMPLE.read_text())
    document["spec"]["analysis"]["metrics"][0] = {"name": "request-success-rate", "threshold": 99}
    path.write_text(yaml.safe_dump(document))
    run = await coalmine("validate", "-f", str(path), "--json", address="unused:1")
    assert run.code == 0, run.err
    spec = json.loads(run.out)
    assert (spec["metadata"]["name"], spec["metadata"]["namespace"]) == ("podinfo", "test")
    analysis = spec["spec"]["analysis"]
    assert (analysis["interval"], analysis["maxWeight"], analysis["stepWeight"]) == ("1m", 50, 10)
    assert analysis["metrics"][0]["thresholdRange"] == {"min": 99.0, "max": None}
    assert "deprecated" in run.err


def without_provider(tmp_path: Path) -> Path:
    document = yaml.safe_load(EXAMPLE.read_text())
    del document["spec"]["provider"]
    path = tmp_path / "no-provider.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


async def test_validate_names_the_default_provider_it_used(tmp_path: Path) -> None:
    run = await coalmine("validate", "-f", str(without_provider(tmp_path)), address="unused:1")
    assert run.code == 0, run.err
    assert "  provider:  istio (the default, --mesh-provider)" in run.out.splitlines()

    as_json = await coalmine(
        "validate", "-f", str(without_provider(tmp_path)), "--json", address="unused:1"
    )
    assert json.loads(as_json.out)["spec"]["provider"] == "istio"

    named = await coalmine("validate", "-f", str(EXAMPLE), address="unused:1")
    assert "  provider:  istio" in named.out.splitlines()


@pytest.mark.parametrize("how", ["option", "env"])
async def test_the_mesh_provider_is_the_router_of_a_canary_without_one(
    tmp_path: Path, how: str
) -> None:
    """`kubernetes` has no traffic router, so the example's stepWeight is refused with it."""
    path = str(without_provider(tmp_path))
    if how == "option":
        run = await coalmine("validate", "-f", path, "--mesh-provider", "kubernetes", address="x:1")
    else:
        env = {"COALMINE_MESH_PROVIDER": "kubernetes"}
        run = await coalmine("validate", "-f", path, address="x:1", extra_env=env)
    assert run.code == 2
    assert run.err.splitlines()[0] == (
        "error: spec.analysis.stepWeight: provider 'kubernetes' has no traffic router; "
        "use iterations (blue/green)"
    )

    named = await coalmine(
        "validate", "-f", str(EXAMPLE), "--mesh-provider", "kubernetes", address="x:1"
    )
    assert named.code == 0, "a spec that names its provider keeps it"


async def test_an_unknown_mesh_provider_is_refused(tmp_path: Path) -> None:
    run = await coalmine("validate", "-f", str(EXAMPLE), "--mesh-provider", "nginx", address="x:1")
    assert run.code == 2
    assert run.err.strip() == (
        "error: --mesh-provider nginx: unknown provider (supported: istio, traefik, kubernetes, "
        "gatewayapi:v1, gatewayapi:v1beta1)"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "{path}: empty file, expected a Canary (flagger.app/v1beta1)"),
        ("kind: Canary\nspec: [\n", "{path}:3: invalid YAML: "),
        (
            "apiVersion: flagger.app/v1beta1\nkind: Canary\nmetadata: {name: p}\n"
            "spec:\n  service: {port: 80}\n  analysis: {stepWeight: 60, maxWeight: 50}\n",
            "error: spec.targetRef: is required",
        ),
    ],
    ids=["empty", "unparsable", "missing-targetRef"],
)
async def test_validate_refuses_bad_input_with_one_line_and_exit_2(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "canary.yaml"
    path.write_text(content)
    run = await coalmine("validate", "-f", str(path), address="unused:1")
    assert run.code == 2
    assert "Traceback" not in run.err
    assert expected.format(path=path) in run.err.splitlines()[0]


async def test_validate_of_a_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    run = await coalmine("validate", "-f", str(path), address="unused:1")
    assert run.code == 2
    assert run.err.strip() == f"error: {path}: cannot read: No such file or directory"


async def test_list_filters_rollouts_by_phase_and_namespace(
    platform: FakePlatform, address: str, tmp_path: Path
) -> None:
    good = spec_file(tmp_path, "listed-good")
    bad = spec_file(tmp_path, "listed-bad")
    # one after the other: the fake platform judges metrics by the image it set last
    assert (
        await coalmine("start", "-f", str(good), "--image", "v2", "--wait", address=address)
    ).code == 0
    assert (
        await coalmine("start", "-f", str(bad), "--image", "bad", "--wait", address=address)
    ).code == 1
    for _ in range(50):
        failed = await coalmine(
            "list", "--phase", "Failed", "-n", "test", "--json", address=address
        )
        rows = {row["target"]: row for row in json.loads(failed.out)}
        if "test/listed-bad" in rows:
            break
        await asyncio.sleep(0.2)
    assert "test/listed-bad" in rows
    assert "test/listed-good" not in rows
    assert rows["test/listed-bad"]["failed_checks"] == 2
    assert rows["test/listed-bad"]["image"] == "bad"
    table = await coalmine("list", "-n", "test", address=address)
    assert table.code == 0
    assert table.out.splitlines()[0].split() == [
        "TARGET",
        "PHASE",
        "WEIGHT",
        "FAILED",
        "STARTED",
        "DURATION",
    ]
    succeeded = [line for line in table.out.splitlines() if line.startswith("test/listed-good ")]
    assert succeeded and succeeded[0].split()[1:3] == ["Succeeded", "0%"]
    other = await coalmine("list", "-n", "elsewhere", address=address)
    assert other.out.strip() == "no rollouts found"


async def coalmine_on_a_terminal(*args: str, address: str) -> Run:
    """The CLI with its stdout on a pseudo-terminal (100x40), as a person runs it."""
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_NAMESPACE": "default",
        "TERM": "xterm",
        "COLUMNS": "100",
        "LINES": "40",
    }
    env.pop("NO_COLOR", None)
    controller, terminal = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "starter.cli",
        *args,
        cwd=REPO,
        env=env,
        stdout=terminal,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(terminal)

    def read_all() -> bytes:
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO once the process has closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        out = await asyncio.wait_for(asyncio.to_thread(read_all), timeout=120)
        err = await process.stderr.read() if process.stderr else b""
        code = await process.wait()
    finally:
        os.close(controller)
    return Run(code, out.decode().replace("\r\n", "\n"), err.decode())


async def test_watch_follows_a_failing_rollout_and_exits_1(
    platform: FakePlatform, address: str, tmp_path: Path
) -> None:
    path = spec_file(tmp_path, "watched-bad")
    started = await coalmine("start", "-f", str(path), "--image", "bad", "--json", address=address)
    assert started.code == 0, started.err
    ids = json.loads(started.out)
    assert ids["workflow_id"] == "canary-test.watched-bad" and ids["run_id"]

    lines = await coalmine("watch", "watched-bad", "-n", "test", "--json", address=address)
    assert lines.code == 1, lines.err
    parsed = [json.loads(line) for line in lines.out.splitlines()]
    assert {item["type"] for item in parsed[:-1]} == {"event"}
    messages = [item["message"] for item in parsed[:-1]]
    assert len(messages) == len(set(messages)) + 1  # the halt message comes twice, at two times
    assert "Halt watched-bad.test advancement success rate 61.50% < 99%" in messages
    final = parsed[-1]
    assert (final["type"], final["phase"], final["failed_checks"]) == ("status", "Failed", 2)

    # the rollout has ended: watching it again prints its events and the verdict at once
    plain, screen = await asyncio.gather(
        coalmine("watch", "watched-bad", "-n", "test", address=address),
        coalmine_on_a_terminal("watch", "watched-bad", "-n", "test", address=address),
    )
    assert plain.code == 1, plain.err
    assert "\x1b" not in plain.out
    assert plain.out.splitlines()[: len(messages)] == [
        f"{item['time'][11:19]} {'!' if item['warning'] else ' '} {item['message']}"
        for item in parsed[:-1]
    ]
    assert plain.out.splitlines()[-1] == (
        "watched-bad.test: Failed: Rolling back watched-bad.test failed checks threshold reached 2"
    )

    assert screen.code == 1, screen.err
    assert screen.out.startswith("\x1b[?25l")
    assert "watched-bad.test  Failed  image bad" in screen.out
    assert "0%  rolled back" in screen.out
    assert "failed checks 2/2" in screen.out
    assert "request-success-rate   61.50  >= 99   failed" in screen.out
    assert "\x1b[?25h" in screen.out
    assert screen.out.rstrip().endswith("watched-bad.test: Failed: " + final["reason"])


async def test_start_wait_on_a_terminal_redraws_the_live_view(
    platform: FakePlatform, address: str, tmp_path: Path
) -> None:
    path = spec_file(tmp_path, "live", stepWeight=25)
    run = await coalmine_on_a_terminal(
        "start", "-f", str(path), "--image", "v2", "--wait", address=address
    )
    assert run.code == 0, run.err
    assert run.out.startswith("started rollout canary-test.live of live.test\n")
    assert re.search(r"\x1b\[\d+F\x1b\[J", run.out), "the view is redrawn in place"
    assert re.search(r"canary weight \d+% of 50%", run.out)
    assert "100%  promoted" in run.out
    assert run.out.rstrip().endswith("live.test: Succeeded")
