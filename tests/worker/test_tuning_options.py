"""`coalmine worker` tuning options: how much one worker process takes on at once."""

import concurrent.futures
import os
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from starter import cli
from worker import command
from worker.main import ACTIVITY_THREADS, PASSTHROUGH_MODULES, WorkerTuning, build_worker

REPO = Path(__file__).resolve().parents[2]


def tuning(argv: list[str]) -> WorkerTuning:
    return command.tuning_of(cli._parser().parse_args(["worker", *argv]))


def test_by_default_the_sdk_decides_but_activities_and_the_cache_are_set() -> None:
    assert tuning([]) == WorkerTuning(
        max_cached_workflows=1000,
        max_concurrent_workflow_tasks=None,
        workflow_task_pollers=None,
        activity_task_pollers=None,
        max_concurrent_activities=ACTIVITY_THREADS,
        sandbox_passthrough=True,
    )


def test_the_options_set_the_tuning() -> None:
    given = tuning(
        [
            "--max-cached-workflows",
            "3000",
            "--max-concurrent-workflow-tasks",
            "20",
            "--workflow-pollers",
            "4",
            "--activity-pollers",
            "3",
            "--max-concurrent-activities",
            "32",
        ]
    )
    assert given == WorkerTuning(
        max_cached_workflows=3000,
        max_concurrent_workflow_tasks=20,
        workflow_task_pollers=4,
        activity_task_pollers=3,
        max_concurrent_activities=32,
    )


async def test_the_worker_is_built_with_the_tuning_and_shares_the_domain_with_the_sandbox(
    dev_server_env: WorkflowEnvironment,
) -> None:
    chosen = WorkerTuning(max_cached_workflows=7, max_concurrent_activities=5)
    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as executor:
        worker = build_worker(dev_server_env.client, [], executor, "tuning-test", chosen)
    config = worker.config()
    assert config.get("max_cached_workflows") == 7
    assert config.get("max_concurrent_activities") == 5
    runner = config.get("workflow_runner")
    assert isinstance(runner, SandboxedWorkflowRunner)
    assert set(PASSTHROUGH_MODULES) <= runner.restrictions.passthrough_modules


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--max-cached-workflows", "0"], "argument --max-cached-workflows: '0' is not at least 1"),
        (["--workflow-pollers", "many"], "argument --workflow-pollers: 'many' is not a whole"),
    ],
)
def test_a_malformed_tuning_option_is_named_and_exits_2(argv: list[str], problem: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "starter.cli", "worker", *argv],
        cwd=REPO,
        env={**os.environ, "TEMPORAL_ADDRESS": "127.0.0.1:1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"coalmine worker: error: {problem}"), result.stderr
