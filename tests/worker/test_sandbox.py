"""worker.sandbox: the SDK's sandbox entered at less cost, with the same results.

It reaches into the SDK's sandbox runner, so these fail when a new SDK version changes what it
relies on: that the SDK enters the sandbox through `_run_code` with source strings, and that a
workflow instance answers serialization contexts as the SDK's own path does."""

import dataclasses
import uuid
from collections.abc import Sequence

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import PayloadCodec, SerializationContext, WithSerializationContext
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from tests.worker.sandboxed import Doubles, ReadsTheClock, double
from worker.main import PASSTHROUGH_MODULES, workflow_runner
from worker.sandbox import LeanSandboxedWorkflowRunner, compiled


class ContextRecorder(PayloadCodec, WithSerializationContext):
    """Passes payloads through and records the serialization context of each call."""

    def __init__(self, seen: list[str], context: SerializationContext | None = None) -> None:
        self.seen = seen
        self.context = context

    def with_context(self, context: SerializationContext) -> "ContextRecorder":
        return ContextRecorder(self.seen, context)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        self.seen.append(f"encode {self.context!r}")
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        self.seen.append(f"decode {self.context!r}")
        return list(payloads)


async def contexts_seen(
    env: WorkflowEnvironment, runner: SandboxedWorkflowRunner, workflow_id: str, queue: str
) -> list[str]:
    """The contexts of every payload of a run of `Doubles` (ids and queue given, so that two
    runs can be compared)."""
    seen: list[str] = []
    config = env.client.config()
    config["data_converter"] = dataclasses.replace(
        pydantic_data_converter, payload_codec=ContextRecorder(seen)
    )
    client = Client(**config)
    async with Worker(
        client, task_queue=queue, workflows=[Doubles], activities=[double], workflow_runner=runner
    ):
        result = await client.execute_workflow(Doubles.run, 5, id=workflow_id, task_queue=queue)
    assert result == 20
    return sorted(set(seen))


def test_a_source_is_compiled_once() -> None:
    assert compiled("answer = 42\n") is compiled("answer = 42\n")
    scope: dict[str, object] = {}
    exec(compiled("answer = 42\n"), scope)
    assert scope["answer"] == 42


def test_the_worker_enters_the_sandbox_at_less_cost_and_keeps_the_passthrough() -> None:
    runner = workflow_runner(passthrough=True)
    assert isinstance(runner, LeanSandboxedWorkflowRunner)
    assert set(PASSTHROUGH_MODULES) <= runner.restrictions.passthrough_modules
    assert not isinstance(
        workflow_runner(passthrough=True, lean=False), LeanSandboxedWorkflowRunner
    )


async def test_payloads_get_the_serialization_contexts_the_sdk_gives_them(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    workflow_id, queue = f"doubles-{uuid.uuid4()}", f"sandbox-{uuid.uuid4()}"
    restrictions = workflow_runner(passthrough=True).restrictions
    before = compiled.cache_info()
    lean = await contexts_seen(
        time_skipping_env,
        LeanSandboxedWorkflowRunner(restrictions=restrictions),
        workflow_id,
        queue,
    )
    after = compiled.cache_info()
    sdk = await contexts_seen(
        time_skipping_env, SandboxedWorkflowRunner(restrictions=restrictions), workflow_id, queue
    )
    assert lean == sdk
    assert any("ActivitySerializationContext" in seen for seen in lean)
    assert after.hits > before.hits, "the SDK no longer enters the sandbox through _run_code"


async def test_workflow_code_is_still_restricted(time_skipping_env: WorkflowEnvironment) -> None:
    queue = f"sandbox-{uuid.uuid4()}"
    async with Worker(
        time_skipping_env.client,
        task_queue=queue,
        workflows=[ReadsTheClock],
        workflow_runner=workflow_runner(passthrough=True),
        workflow_failure_exception_types=[Exception],
    ):
        with pytest.raises(WorkflowFailureError) as failed:
            await time_skipping_env.client.execute_workflow(
                ReadsTheClock.run, id=f"clock-{uuid.uuid4()}", task_queue=queue
            )
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "RestrictedWorkflowAccessError"
