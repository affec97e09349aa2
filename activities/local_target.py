"""Local target (kind LocalProcess): each version of the app is a process on this machine.

The primary listens on `spec.local.primaryPort`, the canary on `spec.local.canaryPort`; both run
`spec.local.command` with `{{ image }}` (the version) and `{{ port }}` filled in. What runs is
recorded in `<stateDir>/<namespace>-<name>/primary.json` and `canary.json` (written atomically),
so a restarted worker, or another worker, finds the processes again. Processes start in their own
session, outlive the activity and the worker, log to `primary.log` / `canary.log` there, and are
only ever signalled by their recorded pid after checking that the pid is still the process that
was started (same start time since the same boot). Linux only: it reads /proc.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ValidationError

from activities import errors, files
from canary.contract import Readiness, TargetState
from canary.spec import Canary, LocalProcess

STOP_TIMEOUT_SECONDS = 5.0
"""How long a process has to exit after SIGTERM before it gets SIGKILL."""
START_SETTLE_SECONDS = 0.5
"""How long a new process is watched for exiting at once (bad arguments, port taken), unless
it listens on its port sooner."""
PRIMARY_READY_TIMEOUT_SECONDS = 10.0
"""How long `initialize` waits for a primary it started to answer its health check."""
HEALTH_TIMEOUT_SECONDS = 2.0
LOCK_TIMEOUT_SECONDS = 30.0

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
_PLACEHOLDERS = ("image", "port")


class Role(StrEnum):
    PRIMARY = "primary"
    CANARY = "canary"


class ProcessInfo(BaseModel):
    """One started process and what identifies it beyond its pid."""

    pid: int
    port: int
    image: str
    revision: str
    argv: list[str]
    start_ticks: int
    """Field 22 of /proc/<pid>/stat: clock ticks after boot when the process began."""
    boot_id: str
    started_at: str


class SideState(BaseModel):
    """What is recorded for the primary or the canary."""

    image: str | None = None
    """The primary's running image; the canary's wanted image (set_image)."""
    process: ProcessInfo | None = None


_children: dict[int, subprocess.Popen[bytes]] = {}
"""Processes this worker started: kept so they are reaped (no zombies, no ResourceWarning)."""


INHERITED_ENV = ("PATH", "HOME", "LANG")
"""All a target's process gets of the worker's environment, which holds its secrets."""


def child_environment(env: Mapping[str, str]) -> dict[str, str]:
    """PATH, HOME and LANG of the worker, then `spec.local.env`; nothing else."""
    inherited = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
    return {**inherited, **env}


def revision(command: str, image: str, env: Mapping[str, str]) -> str:
    """A short stable digest of what a process runs: command template, image and env."""
    canonical = json.dumps(
        {"command": command, "image": image, "env": dict(sorted(env.items()))},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def render_command(command: str, image: str, port: int) -> list[str]:
    """Fill `{{ image }}` and `{{ port }}`, then split like a shell line (no shell runs).

    The image is split with the line, so a version can carry its own arguments, e.g.
    `v3 --error-rate 0.3`."""
    values = {"image": image, "port": str(port)}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        if name not in values:
            known = ", ".join(f"{{{{ {key} }}}}" for key in _PLACEHOLDERS)
            raise errors.PermanentError(
                f"spec.local.command: unknown placeholder {match.group(0)!r} (known: {known})"
            )
        return values[name]

    try:
        argv = shlex.split(_PLACEHOLDER.sub(substitute, command))
    except ValueError as error:
        raise errors.PermanentError(
            f"spec.local.command: cannot split {command!r}: {error}"
        ) from error
    if not argv:
        raise errors.PermanentError("spec.local.command: is empty")
    return argv


class LocalTarget:
    def __init__(
        self,
        namespace: str,
        name: str,
        settings: LocalProcess,
        *,
        workdir: Path | None = None,
        primary_ready_timeout_seconds: float = PRIMARY_READY_TIMEOUT_SECONDS,
    ) -> None:
        """`workdir` anchors a relative `stateDir` (default: the current directory)."""
        self.primary_ready_timeout_seconds = primary_ready_timeout_seconds
        self.namespace = namespace
        self.name = name
        self.settings = settings
        base = Path(settings.state_dir)
        if not base.is_absolute():
            base = (workdir or Path.cwd()) / base
        self.state_dir = base / f"{namespace}-{name}"

    @classmethod
    def for_canary(cls, canary: Canary, workdir: Path | None = None) -> "LocalTarget":
        if canary.spec.local is None:
            raise errors.PermanentError(
                "spec.local: required when spec.targetRef.kind is LocalProcess"
            )
        return cls(
            canary.metadata.namespace,
            canary.spec.target_ref.name,
            canary.spec.local,
            workdir=workdir,
        )

    # -- the Target protocol -------------------------------------------------------------

    def initialize(self) -> TargetState:
        """Start the primary when it is not running: with the image it last ran, else
        `spec.local.image`. Waits a little for a primary it started to become healthy."""
        with self._locked():
            primary = self._read(Role.PRIMARY)
            created = not self._alive(primary.process)
            if created:
                image = primary.image or self.settings.image
                primary = self._start(Role.PRIMARY, image)
                self._wait_healthy(Role.PRIMARY, primary, self.primary_ready_timeout_seconds)
            assert primary.process is not None
            return TargetState(
                primary_replicas=1,
                created_primary=created,
                canary_revision=self._canary_revision(primary),
                primary_revision=primary.process.revision,
                primary_snapshot=primary.process.image,
            )

    def set_image(self, image: str, container: str | None = None) -> None:
        """Record the canary's image (it starts with `scale_canary`); `container` is unused."""
        with self._locked():
            canary = self._read(Role.CANARY)
            if canary.image != image:
                self._write(Role.CANARY, canary.model_copy(update={"image": image}))

    def scale_canary(self, replicas: int) -> None:
        """0 stops the canary's process; 1 or more makes sure one runs the canary's revision
        (a canary running an older revision is restarted, a current one left alone)."""
        with self._locked():
            canary = self._read(Role.CANARY)
            if replicas <= 0:
                self._stop(Role.CANARY, canary)
                return
            wanted = self._canary_image()
            expected = revision(self.settings.command, wanted, self.settings.env)
            if self._alive(canary.process):
                assert canary.process is not None
                if canary.process.revision == expected:
                    return
                canary = self._stop(Role.CANARY, canary)
            self._start(Role.CANARY, wanted)

    def canary_readiness(self) -> Readiness:
        return self._readiness(Role.CANARY)

    def primary_readiness(self) -> Readiness:
        return self._readiness(Role.PRIMARY)

    def promote(self, revision: str | None = None) -> str:
        """Restart the primary with the canary's image while the canary is `revision` (None:
        any); nothing to do when the primary already runs it. The primary's port is fixed, so
        the primary is down until the new one listens: traffic must be off it first."""
        with self._locked():
            primary = self._read(Role.PRIMARY)
            image = self._canary_image()
            found = self._canary_revision(primary)
            if revision is not None and found != revision:
                return found
            if self._alive(primary.process):
                assert primary.process is not None
                if primary.process.revision == found:
                    return found
            self._stop(Role.PRIMARY, primary)
            self._start(Role.PRIMARY, image)
            return found

    def restore_primary(self, snapshot: str) -> None:
        """Restart the primary with `snapshot`, the image it ran before the rollout; nothing to
        do when it runs that already. Like `promote`, the primary is down until the restarted
        one listens: traffic must be off it first."""
        with self._locked():
            primary = self._read(Role.PRIMARY)
            wanted = revision(self.settings.command, snapshot, self.settings.env)
            if self._alive(primary.process):
                assert primary.process is not None
                if primary.process.revision == wanted:
                    return
            self._stop(Role.PRIMARY, primary)
            self._start(Role.PRIMARY, snapshot)

    def canary_revision(self) -> str:
        return self._canary_revision(self._read(Role.PRIMARY))

    # -- beyond the protocol -------------------------------------------------------------

    def running(self, role: Role) -> ProcessInfo | None:
        """The recorded process of `role` when it is still alive (and still ours)."""
        process = self._read(role).process
        return process if self._alive(process) else None

    def shutdown(self) -> None:
        """Stop both processes (records of the images stay), e.g. when a demo ends."""
        with self._locked():
            for role in (Role.CANARY, Role.PRIMARY):
                self._stop(role, self._read(role))

    # -- state -----------------------------------------------------------------------------

    def _path(self, role: Role) -> Path:
        return self.state_dir / f"{role.value}.json"

    def _read(self, role: Role) -> SideState:
        path = self._path(role)
        try:
            return SideState.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return SideState()
        except (OSError, ValidationError) as error:
            raise errors.PermanentError(
                f"local target state {path} is unreadable: {error}"
            ) from error

    def _write(self, role: Role, state: SideState) -> None:
        files.write_atomically(self._path(role), state.model_dump_json(indent=2) + "\n")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One mutation at a time per rollout, also across workers on this machine."""
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            handle = (self.state_dir / "lock").open("a")
        except OSError as error:
            raise errors.PermanentError(
                f"cannot use the local target's state folder {self.state_dir}: {error}"
            ) from error
        with handle:
            deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"{self.state_dir}/lock is held by another worker for more than "
                            f"{LOCK_TIMEOUT_SECONDS:g}s"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _canary_image(self) -> str:
        """The canary's recorded image, else the primary's, else `spec.local.image`."""
        return (
            self._read(Role.CANARY).image or self._read(Role.PRIMARY).image or self.settings.image
        )

    def _canary_revision(self, primary: SideState) -> str:
        image = self._read(Role.CANARY).image or primary.image or self.settings.image
        return revision(self.settings.command, image, self.settings.env)

    # -- processes ---------------------------------------------------------------------------

    def _port(self, role: Role) -> int:
        return self.settings.primary_port if role == Role.PRIMARY else self.settings.canary_port

    def _subject(self, role: Role) -> str:
        return f"{role.value} of {self.namespace}/{self.name}"

    def _log_path(self, role: Role) -> Path:
        return self.state_dir / f"{role.value}.log"

    def _start(self, role: Role, image: str) -> SideState:
        port = self._port(role)
        field = "primaryPort" if role == Role.PRIMARY else "canaryPort"
        if _listening(port):
            raise errors.PermanentError(
                f"port {port} on 127.0.0.1 is already in use by another process, so the "
                f"{self._subject(role)} cannot listen there (spec.local.{field}); "
                "stop that process or choose another port"
            )
        argv = render_command(self.settings.command, image, port)
        log_path = self._log_path(role)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        with log_path.open("ab") as log:
            log.write(
                f"--- {stamp} coalmine starts {image} on port {port}: {shlex.join(argv)}\n".encode()
            )
            log.flush()
            try:
                child = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=child_environment(self.settings.env),
                )
            except OSError as error:
                raise errors.PermanentError(
                    f"spec.local.command: cannot start the {self._subject(role)}: "
                    f"{shlex.join(argv)}: {error.strerror or error}"
                ) from error
        _children[child.pid] = child
        identity = _identity(child.pid)
        if identity is None:  # exited and already reaped, which poll() below reports
            identity = (0, _boot_id())
        process = ProcessInfo(
            pid=child.pid,
            port=port,
            image=image,
            revision=revision(self.settings.command, image, self.settings.env),
            argv=argv,
            start_ticks=identity[0],
            boot_id=identity[1],
            started_at=stamp,
        )
        state = SideState(image=image, process=process)
        if role == Role.CANARY:
            state = state.model_copy(update={"image": self._read(Role.CANARY).image or image})
        self._write(role, state)
        deadline = time.monotonic() + START_SETTLE_SECONDS
        while time.monotonic() < deadline and not _listening(port):
            self._raise_if_exited(role, state)
            time.sleep(0.05)
        return state

    def _raise_if_exited(self, role: Role, state: SideState) -> None:
        """PermanentError when the process this worker just started has already exited (bad
        arguments, a port taken): retrying would start it to fail again."""
        process = state.process
        child = _children.get(process.pid) if process is not None else None
        if process is None or child is None or (status := child.poll()) is None:
            return
        _children.pop(child.pid, None)
        self._write(role, state.model_copy(update={"process": None}))
        raise errors.PermanentError(
            f"the {self._subject(role)} exited at once with status {status}: "
            f"{shlex.join(process.argv)}; {_log_tail(self._log_path(role))}"
        )

    def _stop(self, role: Role, state: SideState) -> SideState:
        """Stop the recorded process (SIGTERM, then SIGKILL) and forget it; no-op if none."""
        process = state.process
        if process is not None and self._alive(process):
            _terminate(process)
        if process is None:
            return state
        stopped = state.model_copy(update={"process": None})
        self._write(role, stopped)
        return stopped

    def _alive(self, process: ProcessInfo | None) -> bool:
        return process is not None and _is_same_process(process)

    def _wait_healthy(self, role: Role, state: SideState, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self._check(role, state).ready:
                return
            # a slow machine may take longer than START_SETTLE_SECONDS to show an early exit
            self._raise_if_exited(role, state)
            time.sleep(0.1)

    def _readiness(self, role: Role) -> Readiness:
        return self._check(role, self._read(role))

    def _check(self, role: Role, state: SideState) -> Readiness:
        subject = self._subject(role)
        process = state.process
        if process is None:
            return Readiness(ready=False, message=f"{subject}: not running")
        what = f"{process.image} (pid {process.pid}, port {process.port})"
        if not self._alive(process):
            return Readiness(
                ready=False,
                message=f"{subject}: {what} is no longer running; "
                + _log_tail(self._log_path(role)),
            )
        url = f"http://127.0.0.1:{process.port}{self.settings.health_path}"
        try:
            with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_SECONDS) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        except (OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            return Readiness(ready=False, message=f"{subject}: {what}: GET {url} failed: {reason}")
        if 200 <= status < 300:
            return Readiness(ready=True, message=f"{subject}: {what} is healthy")
        return Readiness(ready=False, message=f"{subject}: {what}: GET {url} answered {status}")


# -- process identity (Linux /proc) ----------------------------------------------------------


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


_DEAD_STATES = frozenset({"Z", "X", "x"})


def _stat_fields(pid: int) -> list[str] | None:
    return _stat_fields_of(Path(f"/proc/{pid}/stat"))


def _stat_fields_of(path: Path) -> list[str] | None:
    """A /proc stat file from field 3 (state) on; the command name may hold spaces and ')'."""
    try:
        text = path.read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def _identity(pid: int) -> tuple[int, str] | None:
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return int(fields[19]), _boot_id()


def _is_same_process(process: ProcessInfo) -> bool:
    """True when `process.pid` is alive and is the process that was recorded (not a zombie,
    not another process that got the same pid later, not from before a reboot)."""
    child = _children.get(process.pid)
    if child is not None and child.poll() is not None:
        _children.pop(process.pid, None)
        return False
    fields = _stat_fields(process.pid)
    if fields is None or not _any_task_running(process.pid, fields[0]):
        return False
    return int(fields[19]) == process.start_ticks and _boot_id() == process.boot_id


def _any_task_running(pid: int, leader_state: str) -> bool:
    """A process whose main thread has exited shows as a zombie while its other threads are
    still exiting (and still hold its sockets): it is gone only when every thread is."""
    if leader_state not in _DEAD_STATES:
        return True
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            fields = _stat_fields_of(task / "stat")
            if fields is not None and fields[0] not in _DEAD_STATES:
                return True
    return False


def _signal(process: ProcessInfo, signum: int) -> None:
    """Signal the process's group when it leads one (it does: start_new_session), else it."""
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signum)
        else:
            os.kill(process.pid, signum)


def _terminate(process: ProcessInfo) -> None:
    _signal(process, signal.SIGTERM)
    if _wait_gone(process, STOP_TIMEOUT_SECONDS):
        return
    if _is_same_process(process):
        _signal(process, signal.SIGKILL)
    if not _wait_gone(process, STOP_TIMEOUT_SECONDS):
        raise TimeoutError(f"process {process.pid} ({process.image}) did not exit after SIGKILL")


def _wait_gone(process: ProcessInfo, timeout_seconds: float) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while _is_same_process(process):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    child = _children.pop(process.pid, None)
    if child is not None:
        child.poll()
    return True


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _log_tail(path: Path, limit: int = 400) -> str:
    try:
        data = path.read_bytes()[-limit:]
    except OSError:
        return f"no log at {path}"
    text = " | ".join(line for line in data.decode(errors="replace").splitlines() if line.strip())
    return f"its log {path} ends with: {text}" if text else f"its log {path} is empty"
