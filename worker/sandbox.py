"""The workflow sandbox as the SDK builds it, with the code it runs compiled once.

The SDK enters the sandbox by `exec` of a short source string: once per activation, and, for
every payload of an activation and of its completion, once or twice more to ask the workflow for
the payload's serialization context. `exec` of a string compiles it every time, which was about
a tenth of the worker's CPU per analysis step (BENCHMARKS.md, *Levers*). These strings are a
handful of constants, so each is compiled once and the same code object runs: the sandbox, its
restrictions and what runs inside it are unchanged.

This reaches into the SDK's sandbox runner (`_Instance._run_code`, not a public API);
tests/worker/test_sandbox.py fails if a new SDK version stops calling it.
"""

import functools
from dataclasses import dataclass
from types import CodeType
from typing import Any

from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox._runner import _Instance

SOURCES_CACHED = 64
"""More than the SDK has distinct sources (a few per workflow class)."""


@functools.lru_cache(maxsize=SOURCES_CACHED)
def compiled(source: str) -> CodeType:
    """`source` compiled as `exec` compiles a string."""
    return compile(source, "<string>", "exec")


class _PrecompiledInstance(_Instance):
    def _run_code(self, code: str, **extra_globals: Any) -> None:
        super()._run_code(compiled(code), **extra_globals)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PrecompiledSandboxedWorkflowRunner(SandboxedWorkflowRunner):
    """`SandboxedWorkflowRunner` whose instances run compiled code instead of source."""

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _PrecompiledInstance(det, self.runner_class, self.restrictions)
