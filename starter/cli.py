"""The `coalmine` command.

Exit codes: 0 success (or a Succeeded rollout), 1 a Failed rollout, 2 bad input or a refused
request, 3 Temporal unreachable.
"""

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from canary import contract
from canary.loader import LoadedCanary, SpecError, load_canary
from canary.spec import Canary, workflow_id
from canary.status import CanaryStatus, Event, Phase
from starter import render
from worker.connection import ConnectionFailed, connect
from workflows import search_attributes
from workflows.canary_workflow import CanaryWorkflow

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3
WATCH_POLL_SECONDS = 1.0


class Refused(Exception):
    """A request that cannot be carried out; the message says why (exit code 2)."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "validate":
            return _validate(args.file)
        if args.command == "worker":
            return _worker(args)
        return asyncio.run(_run_remote(args))
    except Refused as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ConnectionFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coalmine", description="Canary releases as durable Temporal workflows."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check a Canary spec and summarize it")
    validate.add_argument("-f", "--file", required=True, help="Canary YAML file")

    start = commands.add_parser("start", help="start a rollout")
    start.add_argument("-f", "--file", required=True, help="Canary YAML file")
    start.add_argument("--image", help="new image for the canary's (first) container")
    start.add_argument(
        "--wait", action="store_true", help="print events until the verdict; exit 0/1"
    )

    listing = commands.add_parser("list", help="list rollouts (from Temporal's visibility)")
    listing.add_argument("--phase", help="only rollouts in this phase, e.g. Failed")
    listing.add_argument("-n", "--namespace", help="only Canaries of this namespace")
    listing.add_argument("--json", action="store_true", help="print the rows as JSON")

    status = commands.add_parser("status", help="show a rollout's status")
    _target_arguments(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")

    for name, text in (
        ("pause", "pause the analysis (no advance, no failed checks)"),
        ("resume", "resume a paused analysis"),
        ("promote", "promote now, skipping the remaining steps"),
        ("abort", "roll back now"),
    ):
        control = commands.add_parser(name, help=text)
        _target_arguments(control)
        control.add_argument("--reason", default="", help="why (recorded in the events)")

    worker = commands.add_parser("worker", help="run a worker (workflows and activities)")
    worker.add_argument(
        "--metrics-server",
        default=os.environ.get("COALMINE_METRICS_SERVER", "http://prometheus:9090"),
        help="default Prometheus address (env COALMINE_METRICS_SERVER)",
    )
    worker.add_argument("--task-queue", default=contract.TASK_QUEUE)
    return parser


def _target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the Canary's metadata.name")
    parser.add_argument("-n", "--namespace", default="default", help="the Canary's namespace")


def _load(path: str) -> LoadedCanary:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise Refused(f"{path}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError:
        raise Refused(f"{path}: not a UTF-8 text file") from None
    try:
        loaded = load_canary(text, path)
    except SpecError as error:
        raise Refused("\n".join(error.problems)) from None
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return loaded


def _validate(path: str) -> int:
    canary = _load(path).canary
    print(render.summary(canary))
    return EXIT_OK


def _worker(args: argparse.Namespace) -> int:
    from activities.alerts import AlertError
    from worker.main import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    async def run() -> None:
        client = await connect()
        await run_worker(client, args.metrics_server, args.task_queue)

    try:
        asyncio.run(run())
    except AlertError as error:
        raise Refused(f"alert providers: {error}") from None
    return EXIT_OK


async def _run_remote(args: argparse.Namespace) -> int:
    if args.command == "start":
        canary = _load(args.file).canary
        client = await connect()
        return await _start(client, canary, args.image, args.wait)
    client = await connect()
    if args.command == "list":
        rows = await list_rollouts(client, args.phase, args.namespace)
        print(json.dumps(rows, indent=2) if args.json else render.rollout_table(rows))
        return EXIT_OK
    handle = client.get_workflow_handle_for(
        CanaryWorkflow.run, workflow_id(args.namespace, args.name)
    )
    try:
        description = await handle.describe()
        if args.command != "status" and description.status != WorkflowExecutionStatus.RUNNING:
            final = await handle.query(CanaryWorkflow.status)
            raise Refused(
                f"the rollout of {args.name}.{args.namespace} has already ended ({final.phase})"
            )
        if args.command == "status":
            status = await handle.query(CanaryWorkflow.status)
            print(status.model_dump_json(indent=2) if args.json else render.status(status))
            return EXIT_OK
        request = contract.ControlRequest(reason=args.reason)
        if args.command == "pause":
            await handle.signal(CanaryWorkflow.pause, request)
            print(f"pause requested for {args.name}.{args.namespace}")
        elif args.command == "resume":
            await handle.signal(CanaryWorkflow.resume, request)
            print(f"resume requested for {args.name}.{args.namespace}")
        elif args.command == "promote":
            print(await handle.execute_update(CanaryWorkflow.promote, request))
        else:
            print(await handle.execute_update(CanaryWorkflow.abort, request))
    except WorkflowUpdateFailedError as error:
        raise Refused(_update_refusal(error)) from None
    except RPCError as error:
        raise Refused(_rpc_refusal(error, args.name, args.namespace)) from None
    return EXIT_OK


async def list_rollouts(
    client: Client, phase: str | None, namespace: str | None
) -> list[dict[str, Any]]:
    """Rollouts as Temporal's visibility knows them, newest first."""
    query = f'WorkflowType = "{CanaryWorkflow.__name__}"'
    if phase:
        query += f' AND {search_attributes.PHASE.name} = "{_quoted(phase)}"'
    if namespace:
        query += f' AND {search_attributes.TARGET.name} STARTS_WITH "{_quoted(namespace)}/"'
    rows = []
    try:
        async for execution in client.list_workflows(query):
            found = execution.typed_search_attributes
            end = execution.close_time or datetime.now(UTC)
            rows.append(
                {
                    "target": found.get(search_attributes.TARGET) or execution.id,
                    "phase": found.get(search_attributes.PHASE)
                    or (execution.status.name if execution.status else "unknown"),
                    "weight": found.get(search_attributes.WEIGHT),
                    "failed_checks": found.get(search_attributes.FAILED_CHECKS),
                    "image": found.get(search_attributes.IMAGE),
                    "started": execution.start_time.isoformat(timespec="seconds"),
                    "duration_seconds": round((end - execution.start_time).total_seconds()),
                    "workflow_id": execution.id,
                }
            )
    except RPCError as error:
        raise Refused(f"cannot list rollouts: {error}") from None
    return rows


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


async def start_rollout(
    client: Client, canary: Canary, image: str | None
) -> WorkflowHandle[CanaryWorkflow, CanaryStatus]:
    """Start the rollout of `canary`; Refused when one is already running for it."""
    strategy = canary.spec.analysis.strategy
    attributes = TypedSearchAttributes(
        [
            SearchAttributePair(
                search_attributes.TARGET, f"{canary.metadata.namespace}/{canary.metadata.name}"
            ),
            SearchAttributePair(search_attributes.PHASE, Phase.INITIALIZING.value),
            SearchAttributePair(search_attributes.WEIGHT, 0),
            SearchAttributePair(search_attributes.FAILED_CHECKS, 0),
            SearchAttributePair(search_attributes.IMAGE, image or ""),
        ]
    )

    async def start(attributes: TypedSearchAttributes) -> WorkflowHandle[Any, Any]:
        return await client.start_workflow(
            CanaryWorkflow.run,
            contract.RolloutRequest(canary=canary, image=image),
            id=canary.workflow_id,
            task_queue=contract.TASK_QUEUE,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=attributes,
            static_summary=f"{canary.target} {image or '(current image)'} {strategy}",
            static_details=render.spec_markdown(canary),
        )

    try:
        try:
            return await start(attributes)
        except RPCError as error:
            if "search attribute" not in str(error).lower():
                raise
            print(
                "warning: this Temporal namespace does not know coalmine's search attributes "
                "(see deploy/README.md); starting without them",
                file=sys.stderr,
            )
            return await start(TypedSearchAttributes.empty)
    except WorkflowAlreadyStartedError:
        raise Refused(
            f"a rollout of {canary.target} is already running "
            f"(workflow {canary.workflow_id}); see `coalmine status {canary.metadata.name} "
            f"-n {canary.metadata.namespace}`"
        ) from None


async def _start(client: Client, canary: Canary, image: str | None, wait: bool) -> int:
    handle = await start_rollout(client, canary, image)
    print(f"started rollout {handle.id} of {canary.target}")
    if not wait:
        return EXIT_OK
    status = await follow(handle)
    print(render.verdict(canary.target, status))
    return EXIT_OK if status.phase == Phase.SUCCEEDED else EXIT_FAILED


async def follow(handle: WorkflowHandle[CanaryWorkflow, CanaryStatus]) -> CanaryStatus:
    """Print events as they happen until the rollout ends; return its final status."""
    printed: list[Event] = []
    result = asyncio.ensure_future(handle.result())
    try:
        while True:
            done = result.done()
            status = result.result() if done else await handle.query(CanaryWorkflow.status)
            for event in status.events:
                if event not in printed:
                    print(render.event(event), flush=True)
                    printed.append(event)
            if done:
                return status
            await asyncio.wait([result], timeout=WATCH_POLL_SECONDS)
    finally:
        result.cancel()


def _update_refusal(error: WorkflowUpdateFailedError) -> str:
    cause = error.cause
    return getattr(cause, "message", None) or str(cause or error)


def _rpc_refusal(error: RPCError, name: str, namespace: str) -> str:
    if "not found" in str(error).lower():
        return f"no rollout of {name}.{namespace} (workflow {workflow_id(namespace, name)})"
    return f"request for {name}.{namespace} refused: {error}"


if __name__ == "__main__":
    sys.exit(main())
