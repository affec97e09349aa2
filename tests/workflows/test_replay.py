"""Stored histories of whole rollouts replay against today's workflow code."""

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.canary_workflow import CanaryWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_present() -> None:
    stored = {path.stem for path in HISTORIES}
    assert stored >= {"healthy_rollout", "failed_rollout", "failed_rollout_fails_workflow"}


@pytest.mark.parametrize("path", HISTORIES, ids=lambda path: path.stem)
async def test_stored_history_replays_without_nondeterminism(path: Path) -> None:
    history = WorkflowHistory.from_json(f"canary-test-{path.stem}", path.read_text())
    assert len(history.events) > 20
    replayer = Replayer(workflows=[CanaryWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
