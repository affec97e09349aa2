"""Stored histories of whole rollouts replay against today's workflow code.

Each stands for rollouts in flight on some earlier version: a change that breaks one needs a
`workflow.patched` guard. The corpus covers every path (tests/workflows/record_histories.py
records the missing ones; none is ever re-recorded)."""

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.workflows.record_histories import CASES
from workflows.canary_workflow import CanaryWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
EXPECTED = {
    "healthy_rollout",
    "failed_rollout",
    "failed_rollout_fails_workflow",
    "canary_promoted",
    "canary_rolled_back_at_threshold",
    "ab_testing_promoted",
    "blue_green_promoted",
    "blue_green_mirror_promoted",
    "paused_and_resumed",
    "paused_with_canary_checks_and_resumed",
    "step_weight_promotion",
    "promoted_early",
    "aborted",
    "superseded",
    "gates_wait_then_open",
    "gates_call_their_hooks_as_local_activities",
    "promotion_failed_primary_never_ready",
    "new_revision_restarts_analysis",
    "continue_as_new_at_confirm_promotion",
    "continue_as_new_at_confirm_promotion_run2",
    "continue_as_new_in_analysis",
    "continue_as_new_in_analysis_run2",
    "workflow_error_rolled_back",
    "healthy_rollout_with_fewer_round_trips",
    "failed_rollout_with_fewer_round_trips",
    "promotion_failed_with_fewer_round_trips",
    "gates_with_fewer_round_trips",
}
RECORDED_WITH = {name: case.workflow for case in CASES for name in case.names}
"""Histories recorded with a test version of the workflow (a smaller continue-as-new
threshold, a bug) replay against that version, which is today's code otherwise."""


def test_every_expected_history_is_stored_and_recordable() -> None:
    assert {path.stem for path in HISTORIES} == EXPECTED
    assert set(RECORDED_WITH) == EXPECTED


@pytest.mark.parametrize("path", HISTORIES, ids=lambda path: path.stem)
async def test_stored_history_replays_without_nondeterminism(path: Path) -> None:
    history = WorkflowHistory.from_json(f"canary-test-{path.stem}", path.read_text())
    assert len(history.events) > 20
    workflow = RECORDED_WITH.get(path.stem, CanaryWorkflow)
    replayer = Replayer(workflows=[workflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
