"""The `coalmine` command.

Exit codes: 0 success (or a Succeeded rollout), 1 a Failed rollout, 2 bad input or a refused
request, 3 Temporal unreachable or not answering in time (every call has a deadline, see
`worker.connection`). Every command but `worker` takes `--json`; the CLI tells
Temporal who it is (`--identity`, default `coalmine-cli@USER@HOST`), so the history shows
who started, paused, resumed, promoted or aborted a rollout.
"""

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import socket
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from canary import contract, safe_yaml
from canary.loader import LoadedCanary, SpecError, load_canary
from canary.spec import Canary, workflow_id
from canary.status import MAX_EVENTS, CanaryStatus, Phase
from starter import history, render, verdict, watch
from worker import command as worker_command
from worker.connection import (
    RPC_TIMEOUT,
    ConnectionConfigError,
    ConnectionFailed,
    connect,
    one_line,
)
from workflows import search_attributes
from workflows.canary_workflow import CanaryWorkflow

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130
IDENTITY_ENV = "COALMINE_IDENTITY"
_UNANSWERED = (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.UNAVAILABLE)

follow = watch.follow
"""Print a rollout's events until it ends (kept here for callers of `starter.cli.follow`)."""


class Refused(Exception):
    """A request that cannot be carried out; the message says why (exit code 2)."""


class AlreadyRunning(Refused):
    """A rollout of the same target runs; `workflow_id` names it."""

    def __init__(self, message: str, workflow_id: str) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code.

    Run as the program (no `argv`), a command that used a Temporal client (the worker too)
    ends the process itself once its output is flushed: the SDK's core threads can otherwise
    abort the interpreter's teardown (temporalio/sdk-python#300) and turn the exit code into
    134 or -6.
    """
    args = _parser().parse_args(argv)
    code = _main(args)
    if argv is None and args.command != "validate":
        _exit_now(code)
    return code


def _main(args: argparse.Namespace) -> int:
    try:
        if args.command == "validate":
            return _validate(args.file, args.json, args.mesh_provider)
        if args.command == "worker":
            return _worker(args)
        return asyncio.run(_run_remote(args))
    except (Refused, ConnectionConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ConnectionFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except RPCError as error:
        # a call not covered by a more specific message below
        print(f"error: Temporal answered: {one_line(error)}", file=sys.stderr)
        return EXIT_UNREACHABLE if error.status in _UNANSWERED else EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`coalmine history ... | head`): nothing more to say
        return EXIT_OK


def _exit_now(code: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coalmine", description="Canary releases as durable Temporal workflows."
    )
    identity_help = (
        f"who you are in Temporal's history (env {IDENTITY_ENV}, default coalmine-cli@USER@HOST)"
    )
    parser.add_argument("--identity", help=identity_help)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check a Canary spec and summarize it")
    validate.add_argument("-f", "--file", required=True, help="Canary YAML file")
    _json_argument(validate, "print the normalized spec as JSON")
    worker_command.add_mesh_provider_argument(validate, "the router of a Canary without provider")

    start = commands.add_parser("start", help="start a rollout")
    start.add_argument("-f", "--file", required=True, help="Canary YAML file")
    start.add_argument("--image", help="new image for the canary's (first) container")
    start.add_argument(
        "--wait", action="store_true", help="follow the rollout until the verdict; exit 0/1"
    )
    start.add_argument(
        "--no-supersede",
        action="store_true",
        help="refuse when a rollout of this target runs (default: it takes --image instead)",
    )
    worker_command.add_mesh_provider_argument(start, "the router of a Canary without provider")
    _json_argument(start, "print the workflow and run ids (with --wait: then as `watch --json`)")

    listing = commands.add_parser("list", help="list rollouts (from Temporal's visibility)")
    listing.add_argument("--phase", help="only rollouts in this phase, e.g. Failed")
    listing.add_argument("-n", "--namespace", help="only Canaries of this namespace")
    _json_argument(listing, "print the rows as JSON")

    status = commands.add_parser("status", help="show a rollout's status")
    _target_arguments(status)
    _json_argument(status, "print the status as JSON")

    watching = commands.add_parser(
        "watch", help="follow a rollout live until its verdict; exit 0 Succeeded, 1 Failed"
    )
    _target_arguments(watching)
    _json_argument(watching, "one JSON object per line: each new event, then the final status")

    story = commands.add_parser(
        "history", help="the rollout's story: events, metrics of each step, who did what"
    )
    _target_arguments(story)
    story.add_argument("--run-id", help="an earlier run of this rollout (default: the latest)")
    _json_argument(story, "print the entries as a JSON list")

    controls = []
    for name, text in (
        ("pause", "pause the analysis (no advance, no failed checks)"),
        ("resume", "resume a paused analysis"),
        ("promote", "promote now, skipping the remaining steps"),
        ("abort", "roll back now"),
    ):
        control = commands.add_parser(name, help=text)
        _target_arguments(control)
        control.add_argument("--reason", default="", help="why (recorded in the events)")
        _json_argument(control, 'print {"ok": true, "message": ...}')
        controls.append(control)
    for command in (validate, start, listing, status, watching, story, *controls):
        # also accepted after the command: `coalmine pause NAME --identity alice`
        command.add_argument("--identity", default=argparse.SUPPRESS, help=identity_help)

    worker_command.add_parser(commands)
    return parser


def _target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the Canary's metadata.name")
    parser.add_argument("-n", "--namespace", default="default", help="the Canary's namespace")


def _json_argument(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--json", action="store_true", help=text)


def identity(given: str | None) -> str:
    """`--identity`, else $COALMINE_IDENTITY, else `coalmine-cli@USER@HOST`."""
    chosen = given if given is not None else os.environ.get(IDENTITY_ENV)
    if chosen is not None:
        if not chosen.strip():
            raise Refused("--identity must not be empty")
        return chosen.strip()
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"coalmine-cli@{user}@{socket.gethostname()}"


def _load(path: str, mesh_provider: str) -> LoadedCanary:
    """Read and validate a spec file; past the size limit it is refused unread. A Canary
    without `spec.provider` gets `mesh_provider`, so the workflow's input always names it."""
    try:
        default_provider = worker_command.mesh_provider(mesh_provider)
    except worker_command.WorkerConfigError as error:
        raise Refused(str(error)) from None
    try:
        with Path(path).open("rb") as file:
            data = file.read(safe_yaml.MAX_BYTES + 1)
            if len(data) > safe_yaml.MAX_BYTES:
                size = max(os.fstat(file.fileno()).st_size, len(data))
                raise Refused(safe_yaml.too_large(path, size))
        text = data.decode("utf-8")
    except OSError as error:
        raise Refused(f"{path}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError:
        raise Refused(f"{path}: not a UTF-8 text file") from None
    try:
        loaded = load_canary(text, path, default_provider)
    except SpecError as error:
        raise Refused("\n".join(error.problems)) from None
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return loaded


def _validate(path: str, as_json: bool, mesh_provider: str) -> int:
    loaded = _load(path, mesh_provider)
    canary = loaded.canary
    text = render.summary(canary, loaded.default_provider)
    print(canary.model_dump_json(by_alias=True, indent=2) if as_json else text)
    return EXIT_OK


def _worker(args: argparse.Namespace) -> int:
    try:
        worker_command.run(args)
    except worker_command.WorkerConfigError as error:
        raise Refused(str(error)) from None
    return EXIT_OK


async def _run_remote(args: argparse.Namespace) -> int:
    who = identity(args.identity)
    if args.command == "start":
        canary = _load(args.file, args.mesh_provider).canary
        client = await connect(identity=who)
        return await _start(
            client, canary, args.image, args.wait, args.json, supersede=not args.no_supersede
        )
    client = await connect(identity=who)
    if args.command == "list":
        rows = await list_rollouts(client, args.phase, args.namespace)
        print(json.dumps(rows, indent=2) if args.json else render.rollout_table(rows))
        return EXIT_OK
    run_id = getattr(args, "run_id", None)
    handle = rollout_handle(client, workflow_id(args.namespace, args.name), run_id)
    try:
        description = await handle.describe(rpc_timeout=RPC_TIMEOUT)
        if args.command == "status":
            status = await _status(handle, description.status)
            print(status.model_dump_json(indent=2) if args.json else render.status(status))
            return EXIT_OK
        if args.command == "watch":
            request = await history.rollout_request(handle, client.data_converter)
            return await _follow_to_verdict(handle, request.canary, args.json)
        if args.command == "history":
            run = rollout_handle(client, handle.id, description.run_id)
            return await _history(client, run, description.run_id, args.json)
        if description.status != WorkflowExecutionStatus.RUNNING:
            final = await _status(handle, description.status)
            raise Refused(
                f"the rollout of {args.name}.{args.namespace} has already ended ({final.phase})"
            )
        message = await _control(handle, args)
    except WorkflowUpdateFailedError as error:
        raise Refused(_update_refusal(error)) from None
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise ConnectionFailed(
            f"no answer to {args.command} {args.name}.{args.namespace} from Temporal at "
            f"{_address(client)} within {RPC_TIMEOUT.total_seconds():g}s (is a coalmine worker "
            "running?)"
        ) from None
    except RPCError as error:
        _raise_if_unanswered(error, client)
        raise Refused(_rpc_refusal(error, args.name, args.namespace, run_id)) from None
    except history.NotARollout as error:
        raise Refused(f"workflow {handle.id}: {error}") from None
    print(json.dumps({"ok": True, "message": message}) if args.json else message)
    return EXIT_OK


async def _status(
    handle: WorkflowHandle[CanaryWorkflow, CanaryStatus],
    execution: WorkflowExecutionStatus | None,
) -> CanaryStatus:
    """A running rollout answers the status query; an ended one has its verdict in its
    history, which needs no worker (the query would replay the whole run on one)."""
    if execution != WorkflowExecutionStatus.RUNNING:
        recorded = await verdict.recorded_verdict(handle, RPC_TIMEOUT)
        if recorded is not None:
            return recorded
    return await handle.query(CanaryWorkflow.status, rpc_timeout=RPC_TIMEOUT)


async def _control(handle: WorkflowHandle[CanaryWorkflow, CanaryStatus], args: Any) -> str:
    """Send pause/resume (signals) or promote/abort (updates); what to tell the user."""
    request = contract.ControlRequest(reason=args.reason)
    target = f"{args.name}.{args.namespace}"
    if args.command == "pause":
        await handle.signal(CanaryWorkflow.pause, request, rpc_timeout=RPC_TIMEOUT)
        return f"pause requested for {target}"
    if args.command == "resume":
        await handle.signal(CanaryWorkflow.resume, request, rpc_timeout=RPC_TIMEOUT)
        return f"resume requested for {target}"
    if args.command == "promote":
        return await handle.execute_update(CanaryWorkflow.promote, request, rpc_timeout=RPC_TIMEOUT)
    return await handle.execute_update(CanaryWorkflow.abort, request, rpc_timeout=RPC_TIMEOUT)


async def _history(
    client: Client, handle: WorkflowHandle[CanaryWorkflow, CanaryStatus], run_id: str, as_json: bool
) -> int:
    story = await history.read_story(client, handle, run_id)
    if story.status_error is not None:
        print(
            f"warning: the status query was not answered ({story.status_error}); "
            "the rollout's own events are missing",
            file=sys.stderr,
        )
    elif story.status is not None and len(story.status.events) >= MAX_EVENTS:
        print(
            f"note: the status keeps the last {MAX_EVENTS} events; earlier ones are not shown",
            file=sys.stderr,
        )
    if as_json:
        print(json.dumps([entry.model_dump(mode="json") for entry in story.entries], indent=2))
    else:
        title = (
            f"History of {story.canary.target} (workflow {story.workflow_id}, run {story.run_id}),"
            " times in UTC"
        )
        print(render.history_table(title, story.entries))
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
        async for execution in client.list_workflows(query, rpc_timeout=RPC_TIMEOUT):
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
        _raise_if_unanswered(error, client)
        raise Refused(f"cannot list rollouts: {one_line(error)}") from None
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
            rpc_timeout=RPC_TIMEOUT,
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
        raise AlreadyRunning(
            f"a rollout of {canary.target} is already running "
            f"(workflow {canary.workflow_id}); see `coalmine status {canary.metadata.name} "
            f"-n {canary.metadata.namespace}`",
            canary.workflow_id,
        ) from None
    except RPCError as error:
        _raise_if_unanswered(error, client)
        raise Refused(
            f"Temporal refused to start the rollout of {canary.target} "
            f"(workflow {canary.workflow_id}): {one_line(error)}"
        ) from None


def rollout_handle(
    client: Client, workflow_id: str, run_id: str | None = None
) -> WorkflowHandle[CanaryWorkflow, CanaryStatus]:
    """The handle of a rollout (its latest run unless `run_id`)."""
    return client.get_workflow_handle(workflow_id, run_id=run_id, result_type=CanaryStatus)


async def supersede_rollout(
    client: Client, workflow_id: str, image: str
) -> tuple[WorkflowHandle[CanaryWorkflow, CanaryStatus], str]:
    """Make the running rollout `workflow_id` take `image`; Refused when it cannot now."""
    handle = rollout_handle(client, workflow_id)
    try:
        message = await handle.execute_update(
            CanaryWorkflow.supersede, contract.SupersedeRequest(image=image)
        )
    except WorkflowUpdateFailedError as error:
        cause = error.cause
        raise Refused(getattr(cause, "message", None) or str(cause)) from None
    return handle, message


async def _start(
    client: Client,
    canary: Canary,
    image: str | None,
    wait: bool,
    as_json: bool,
    supersede: bool = True,
) -> int:
    superseding = False
    try:
        handle = await start_rollout(client, canary, image)
        said = f"started rollout {handle.id} of {canary.target}"
    except AlreadyRunning as running:
        if not supersede or image is None:
            raise
        handle, said = await supersede_rollout(client, running.workflow_id, image)
        superseding = True
    if as_json:
        run_id = handle.first_execution_run_id or handle.result_run_id or handle.run_id
        print(json.dumps({"workflow_id": handle.id, "run_id": run_id}), flush=True)
    else:
        print(said, flush=True)
    if not wait:
        return EXIT_OK
    return await _follow_to_verdict(handle, canary, as_json, image, superseding)


async def _follow_to_verdict(
    handle: WorkflowHandle[CanaryWorkflow, CanaryStatus],
    canary: Canary,
    as_json: bool,
    image: str | None = None,
    superseding: bool = False,
) -> int:
    """`watch` and `start --wait`: follow the rollout, then exit 0 Succeeded, 1 otherwise;
    1 as well once another image superseded `image`. A job that itself superseded an earlier
    image (`superseding`) first waits until the rollout runs its own."""

    seen_mine = not superseding

    def superseded(status: CanaryStatus) -> bool:
        nonlocal seen_mine
        seen_mine = seen_mine or status.image == image
        return image is not None and seen_mine and status.image != image

    try:
        status = await watch.follow(handle, watch.choose_view(canary, as_json), superseded)
    except WorkflowFailureError as error:
        print(f"error: {canary.target} ended without a verdict: {error.cause}", file=sys.stderr)
        return EXIT_FAILED
    if superseded(status):
        print(f"error: {canary.target}: {image} was superseded by {status.image}", file=sys.stderr)
        return EXIT_FAILED
    if not as_json:
        print(render.verdict(canary.target, status), flush=True)
    return EXIT_OK if status.phase == Phase.SUCCEEDED else EXIT_FAILED


def _address(client: Client) -> str:
    return client.service_client.config.target_host


def _raise_if_unanswered(error: RPCError, client: Client) -> None:
    """A deadline passed or the server is unavailable: ConnectionFailed (exit 3)."""
    if error.status in _UNANSWERED:
        raise ConnectionFailed(
            f"Temporal at {_address(client)} did not answer: {one_line(error)}"
        ) from None


def _update_refusal(error: WorkflowUpdateFailedError) -> str:
    cause = error.cause
    return getattr(cause, "message", None) or str(cause or error)


def _rpc_refusal(error: RPCError, name: str, namespace: str, run_id: str | None = None) -> str:
    text = str(error).lower()
    if "namespace" in text and "not found" in text:
        return f"Temporal answered: {one_line(error)}"
    if run_id and ("not found" in text or "runid" in text or "run id" in text):
        return f"no run {run_id} of the rollout of {name}.{namespace}"
    if "not found" in text:
        return f"no rollout of {name}.{namespace} (workflow {workflow_id(namespace, name)})"
    return f"request for {name}.{namespace} refused: {one_line(error)}"


if __name__ == "__main__":
    sys.exit(main())
