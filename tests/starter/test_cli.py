"""The `coalmine` CLI as a user runs it: a subprocess against the real Temporal dev server.

A worker with same-name fake activities serves task queue `coalmine` in this process.
"""

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from canary.contract import TASK_QUEUE
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


async def coalmine(*args: str, address: str) -> Run:
    env = {**os.environ, "TEMPORAL_ADDRESS": address, "TEMPORAL_NAMESPACE": "default"}
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


async def test_second_start_is_refused_and_controls_steer_the_rollout(
    platform: FakePlatform, address: str, tmp_path: Path
) -> None:
    path = spec_file(tmp_path, "steered", interval="30s")
    first = await coalmine("start", "-f", str(path), "--image", "v2", address=address)
    assert first.code == 0, first.err
    second = await coalmine("start", "-f", str(path), "--image", "v3", address=address)
    assert second.code == 2
    assert "a rollout of steered.test is already running" in second.err
    assert "Traceback" not in second.err

    for _ in range(100):
        status = await coalmine("status", "steered", "-n", "test", "--json", address=address)
        if json.loads(status.out)["canary_weight"] == 10:
            break
        await asyncio.sleep(0.1)
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
    for _ in range(100):
        status = await coalmine("status", "steered", "-n", "test", "--json", address=address)
        if json.loads(status.out)["phase"] == "Succeeded":
            break
        await asyncio.sleep(0.1)
    assert json.loads(status.out)["phase"] == "Succeeded"

    late = await coalmine("abort", "steered", "-n", "test", address=address)
    assert late.code == 2
    assert late.err.strip() == "error: the rollout of steered.test has already ended (Succeeded)"


async def test_abort_rolls_back_a_running_rollout(
    platform: FakePlatform, address: str, tmp_path: Path
) -> None:
    path = spec_file(tmp_path, "aborted", interval="30s")
    assert (await coalmine("start", "-f", str(path), "--image", "v2", address=address)).code == 0
    for _ in range(100):
        status = await coalmine("status", "aborted", "-n", "test", "--json", address=address)
        if json.loads(status.out)["canary_weight"] == 10:
            break
        await asyncio.sleep(0.1)
    run = await coalmine("abort", "aborted", "-n", "test", "--reason", "oops", address=address)
    assert run.code == 0, run.err
    for _ in range(100):
        status = await coalmine("status", "aborted", "-n", "test", "--json", address=address)
        if json.loads(status.out)["phase"] == "Failed":
            break
        await asyncio.sleep(0.1)
    parsed = json.loads(status.out)
    assert parsed["phase"] == "Failed"
    assert parsed["reason"] == "Rolling back aborted.test manual abort: oops"


async def test_status_of_an_unknown_rollout_is_one_clear_line(
    dev_server_env: WorkflowEnvironment, address: str
) -> None:
    run = await coalmine("status", "nothing", "-n", "test", address=address)
    assert run.code == 2
    assert run.err.strip() == "error: no rollout of nothing.test (workflow canary-test-nothing)"


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


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "{path}: empty file, expected a Canary (flagger.app/v1beta1)"),
        ("kind: Canary\nspec: [\n", "{path}:3: invalid YAML: expected the node content"),
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
