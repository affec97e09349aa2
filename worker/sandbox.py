"""The workflow sandbox as the SDK builds it, entered at less cost.

The SDK enters a workflow's sandbox by `exec` of a short source string, with the sandbox's
importer applied: once per activation, and, for every payload of an activation and of its
completion, up to four times more to ask the workflow for the payload's serialization context
(its activity, child workflow or the workflow itself). `exec` of a string compiles it each
time. Here:

- each source string is compiled once, and the same code object runs;
- the serialization and external-storage contexts are asked of the workflow instance directly:
  they read the instance's own fields (workflow info, pending commands) and run no workflow
  code, so the importer and the restrictions have nothing to guard there.

Workflow code, its imports and its restrictions run in the sandbox as before. Together these
were about a fifth of the worker's CPU per analysis step (BENCHMARKS.md, *Levers*).

This reaches into the SDK's sandbox runner (`_Instance`, not a public API);
tests/worker/test_sandbox.py fails if a new SDK version stops working this way.
"""

import functools
from dataclasses import dataclass
from types import CodeType
from typing import Any, cast

from temporalio.converter import SerializationContext
from temporalio.converter._extstore import StorageDriverStoreContext
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker._command_aware_visitor import CommandInfo
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox._in_sandbox import InSandbox
from temporalio.worker.workflow_sandbox._runner import _Instance

SOURCES_CACHED = 64
"""More than the SDK has distinct sources (a few per workflow class)."""
IN_SANDBOX = "__temporal_in_sandbox"
"""Where the SDK's runner keeps the sandbox's side of the instance."""


@functools.lru_cache(maxsize=SOURCES_CACHED)
def compiled(source: str) -> CodeType:
    """`source` compiled as `exec` compiles a string."""
    return compile(source, "<string>", "exec")


class _LeanInstance(_Instance):
    def _run_code(self, code: str, **extra_globals: Any) -> None:
        super()._run_code(compiled(code), **extra_globals)  # type: ignore[arg-type]

    def get_serialization_context(
        self, command_info: CommandInfo | None
    ) -> SerializationContext | None:
        return self._in_sandbox().get_serialization_context(command_info)

    def get_external_store_context(
        self, command_info: CommandInfo | None
    ) -> StorageDriverStoreContext:
        return self._in_sandbox().get_external_store_context(command_info)

    def _in_sandbox(self) -> InSandbox:
        return cast(InSandbox, self.globals_and_locals[IN_SANDBOX])


@dataclass(frozen=True)
class LeanSandboxedWorkflowRunner(SandboxedWorkflowRunner):
    """`SandboxedWorkflowRunner` whose instances are entered at less cost (see above)."""

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _LeanInstance(det, self.runner_class, self.restrictions)
