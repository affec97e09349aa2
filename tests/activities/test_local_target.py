"""LocalTarget with real `demo.app` processes on free ports.

Every process a test starts is stopped by its pid at teardown, also when the test fails: the
`stop_everything` fixture shuts the targets down and then ends whatever this test process
started and is still running.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from activities import local_target, providers
from activities.errors import PermanentError
from activities.local_target import LocalTarget, ProcessInfo, Role
from activities.scope import WorkerScope
from canary.spec import (
    Analysis,
    Canary,
    CanarySpec,
    LocalProcess,
    ObjectMeta,
    ObjectRef,
    Service,
    Traefik,
)
from tests.support.net import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = f"{sys.executable} -m demo.app --port {{{{ port }}}} --version {{{{ image }}}}"

MakeTarget = Callable[..., LocalTarget]


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def version_at(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        version: str = json.load(response)["version"]
        return version


def wait_ready(check: Callable[[], object], timeout_seconds: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while True:
        readiness = check()
        if getattr(readiness, "ready", False):
            return
        assert time.monotonic() < deadline, f"not ready: {readiness}"
        time.sleep(0.05)


@pytest.fixture
def make_target(tmp_path: Path) -> Iterator[MakeTarget]:
    """Builds LocalTargets over one state folder; at teardown stops every process by pid."""
    made: list[LocalTarget] = []
    ports = (free_port(), free_port())
    before = set(local_target._children)

    def make(ready_timeout: float = 10.0, **overrides: object) -> LocalTarget:
        fields: dict[str, object] = {
            "command": APP,
            "image": "v1",
            "primary_port": ports[0],
            "canary_port": ports[1],
            "env": {"PYTHONPATH": str(REPO_ROOT)},
            "state_dir": str(tmp_path / "state"),
        }
        fields.update(overrides)
        settings = LocalProcess.model_validate(fields)
        target = LocalTarget("test", "demo", settings, primary_ready_timeout_seconds=ready_timeout)
        made.append(target)
        return target

    try:
        yield make
    finally:
        for target in made:
            try:
                target.shutdown()
            except Exception as error:  # still stop the rest below
                print(f"shutdown of {target.state_dir} failed: {error!r}")
        for pid in set(local_target._children) - before:
            child = local_target._children.pop(pid)
            if child.poll() is None:
                child.kill()
                child.wait()


def test_initialize_starts_the_primary_once(make_target: MakeTarget) -> None:
    target = make_target()
    state = target.initialize()
    assert state.created_primary
    assert state.primary_replicas == 1
    assert state.canary_revision == state.primary_revision
    primary = target.running(Role.PRIMARY)
    assert primary is not None and primary.image == "v1"
    assert version_at(target.settings.primary_port) == "v1"
    assert target.primary_readiness().ready
    # Detached: its own session, so it outlives the activity and the worker.
    assert os.getsid(primary.pid) == primary.pid

    again = target.initialize()
    assert not again.created_primary
    assert again == state.model_copy(update={"created_primary": False})
    assert target.running(Role.PRIMARY) == primary
    recorded = json.loads((target.state_dir / "primary.json").read_text())
    assert recorded["process"]["pid"] == primary.pid
    assert target.state_dir.name == "test-demo"
    assert not list(target.state_dir.glob("*.tmp"))


def test_canary_scales_up_once_and_down(make_target: MakeTarget) -> None:
    target = make_target()
    first = target.initialize()
    target.set_image("v2")
    assert target.canary_revision() != first.primary_revision
    assert target.running(Role.CANARY) is None
    readiness = target.canary_readiness()
    assert not readiness.ready and "not running" in readiness.message

    target.scale_canary(1)
    wait_ready(target.canary_readiness)
    canary = target.running(Role.CANARY)
    assert canary is not None and canary.image == "v2"
    assert canary.revision == target.canary_revision()
    assert version_at(target.settings.canary_port) == "v2"
    assert version_at(target.settings.primary_port) == "v1"

    target.scale_canary(1)  # idempotent: the same process
    assert target.running(Role.CANARY) == canary

    target.scale_canary(0)
    assert not pid_alive(canary.pid)
    assert target.running(Role.CANARY) is None
    assert not target.canary_readiness().ready
    target.scale_canary(0)  # stopping a stopped canary is a no-op
    # The canary's image stays recorded for the next scale up.
    assert target.canary_revision() != first.primary_revision


def test_a_new_image_restarts_a_running_canary(make_target: MakeTarget) -> None:
    target = make_target()
    target.initialize()
    target.set_image("v2")
    target.scale_canary(1)
    old = target.running(Role.CANARY)
    assert old is not None
    target.set_image("v3")
    target.scale_canary(1)
    new = target.running(Role.CANARY)
    assert new is not None and new.image == "v3" and new.pid != old.pid
    assert not pid_alive(old.pid)
    wait_ready(target.canary_readiness)
    assert version_at(target.settings.canary_port) == "v3"


def test_promote_restarts_the_primary_with_the_canary_image(make_target: MakeTarget) -> None:
    target = make_target()
    target.initialize()
    old_primary = target.running(Role.PRIMARY)
    assert old_primary is not None
    target.set_image("v2")
    target.scale_canary(1)

    target.promote()
    primary = target.running(Role.PRIMARY)
    assert primary is not None and primary.image == "v2" and primary.pid != old_primary.pid
    assert not pid_alive(old_primary.pid)
    wait_ready(target.primary_readiness)
    assert version_at(target.settings.primary_port) == "v2"

    target.promote()  # idempotent: the primary already runs the canary's revision
    assert target.running(Role.PRIMARY) == primary

    target.scale_canary(0)
    state = target.initialize()
    assert not state.created_primary
    assert state.primary_revision == state.canary_revision == target.canary_revision()


def test_restore_primary_restarts_it_with_the_image_it_ran_before(
    make_target: MakeTarget,
) -> None:
    target = make_target()
    state = target.initialize()
    assert state.primary_snapshot == "v1"
    target.set_image("v2")
    target.scale_canary(1)
    target.promote()
    promoted = target.running(Role.PRIMARY)
    assert promoted is not None and promoted.image == "v2"

    assert state.primary_snapshot is not None
    target.restore_primary(state.primary_snapshot)
    restored = target.running(Role.PRIMARY)
    assert restored is not None and restored.image == "v1" and restored.pid != promoted.pid
    assert restored.revision == state.primary_revision
    assert not pid_alive(promoted.pid)
    wait_ready(target.primary_readiness)
    assert version_at(target.settings.primary_port) == "v1"
    canary = target.running(Role.CANARY)
    assert canary is not None and canary.image == "v2"  # the canary is left alone
    assert version_at(target.settings.canary_port) == "v2"

    target.restore_primary(state.primary_snapshot)  # idempotent: it runs v1 already
    assert target.running(Role.PRIMARY) == restored
    again = target.initialize()
    assert not again.created_primary
    assert again.primary_revision == state.primary_revision
    assert again.primary_snapshot == "v1"


def test_restore_primary_starts_a_primary_that_is_not_running(make_target: MakeTarget) -> None:
    target = make_target()
    target.initialize()
    target.set_image("v2")
    target.promote()
    target.shutdown()

    target.restore_primary("v1")
    primary = target.running(Role.PRIMARY)
    assert primary is not None and primary.image == "v1"
    wait_ready(target.primary_readiness)
    assert version_at(target.settings.primary_port) == "v1"


def test_state_survives_a_worker_restart(make_target: MakeTarget) -> None:
    """A second LocalTarget (a restarted or another worker) finds the running processes."""
    first = make_target()
    first.initialize()
    first.set_image("v2")
    first.scale_canary(1)
    primary, canary = first.running(Role.PRIMARY), first.running(Role.CANARY)
    assert primary is not None and canary is not None

    second = make_target()
    assert second.running(Role.PRIMARY) == primary
    assert second.running(Role.CANARY) == canary
    assert second.canary_revision() == first.canary_revision()
    assert not second.initialize().created_primary
    second.scale_canary(1)
    assert second.running(Role.CANARY) == canary
    wait_ready(second.canary_readiness)
    second.scale_canary(0)
    assert not pid_alive(canary.pid)
    assert first.running(Role.CANARY) is None


def test_a_reused_pid_is_not_taken_for_the_primary(make_target: MakeTarget) -> None:
    """A recorded pid that now belongs to another process is neither trusted nor signalled."""
    target = make_target()
    stranger = subprocess.Popen(["sleep", "30"])
    try:
        stale = ProcessInfo(
            pid=stranger.pid,
            port=target.settings.primary_port,
            image="v0",
            revision="0",
            argv=["old"],
            start_ticks=1,
            boot_id=Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
            started_at="2020-01-01T00:00:00+00:00",
        )
        target.state_dir.mkdir(parents=True)
        record = {"image": "v0", "process": stale.model_dump()}
        (target.state_dir / "primary.json").write_text(json.dumps(record))
        assert target.running(Role.PRIMARY) is None
        assert not target.primary_readiness().ready

        state = target.initialize()
        assert state.created_primary
        primary = target.running(Role.PRIMARY)
        assert primary is not None and primary.pid != stranger.pid
        # It restarts the image the primary last ran, not spec.local.image.
        assert primary.image == "v0"
        target.shutdown()
        assert stranger.poll() is None, "the stranger was signalled"
    finally:
        stranger.kill()
        stranger.wait()


def test_a_dead_pid_counts_as_stopped(make_target: MakeTarget) -> None:
    target = make_target()
    target.initialize()
    target.set_image("v2")
    target.scale_canary(1)
    canary = target.running(Role.CANARY)
    assert canary is not None
    os.kill(canary.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while target.running(Role.CANARY) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    readiness = target.canary_readiness()
    assert not readiness.ready
    assert "no longer running" in readiness.message and "canary.log" in readiness.message
    target.scale_canary(1)  # starts a new one
    restarted = target.running(Role.CANARY)
    assert restarted is not None and restarted.pid != canary.pid


def test_readiness_reports_a_failing_health_check(make_target: MakeTarget) -> None:
    target = make_target(health_path="/missing", ready_timeout=0.2)
    target.initialize()
    readiness = target.primary_readiness()
    assert not readiness.ready
    assert (
        "GET http://127.0.0.1:" in readiness.message
        and "/missing answered 404" in readiness.message
    )


def test_a_missing_executable_is_a_permanent_error(make_target: MakeTarget) -> None:
    target = make_target(command="/nonexistent/app --port {{ port }}")
    with pytest.raises(PermanentError, match=r"cannot start the primary .*/nonexistent/app"):
        target.initialize()


def test_a_process_that_exits_at_once_is_a_permanent_error(make_target: MakeTarget) -> None:
    target = make_target(command=f"{sys.executable} -m demo.app --port {{{{ port }}}}")
    with pytest.raises(PermanentError, match=r"exited at once with status 2.*--version"):
        target.initialize()
    assert target.running(Role.PRIMARY) is None


def test_a_port_used_by_another_process_is_refused(make_target: MakeTarget) -> None:
    target = make_target()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", target.settings.primary_port))
        listener.listen()
        with pytest.raises(PermanentError, match=r"port \d+ .* already in use .*primaryPort"):
            target.initialize()
    assert target.running(Role.PRIMARY) is None


def test_unknown_placeholders_are_refused(make_target: MakeTarget) -> None:
    target = make_target(command="app --port {{ port }} --name {{ name }}")
    with pytest.raises(PermanentError, match=r"unknown placeholder '\{\{ name \}\}'"):
        target.initialize()


def test_the_revision_covers_command_image_and_env() -> None:
    base = local_target.revision("app {{ image }}", "v1", {"A": "1"})
    assert base == local_target.revision("app {{ image }}", "v1", {"A": "1"})
    assert base != local_target.revision("app {{ image }}", "v2", {"A": "1"})
    assert base != local_target.revision("app --x {{ image }}", "v1", {"A": "1"})
    assert base != local_target.revision("app {{ image }}", "v1", {"A": "2"})
    assert local_target.render_command("app --v={{image}} -p {{ port }}", "a -x 1", 80) == [
        "app",
        "--v=a",
        "-x",
        "1",
        "-p",
        "80",
    ]


def test_the_factory_picks_the_local_target_and_the_traefik_router(tmp_path: Path) -> None:
    canary = Canary(
        api_version="flagger.app/v1beta1",
        kind="Canary",
        metadata=ObjectMeta(name="demo", namespace="test"),
        spec=CanarySpec(
            provider="traefik",
            target_ref=ObjectRef(kind="LocalProcess", name="demo"),
            service=Service(port=8080),
            analysis=Analysis(step_weight=10, max_weight=50),
            local=LocalProcess(
                command=APP,
                image="v1",
                primary_port=8081,
                canary_port=8082,
                state_dir=str(tmp_path),
            ),
            traefik=Traefik(config_file=str(tmp_path / "dynamic" / "demo.yaml")),
        ),
    )
    scope = WorkerScope(allow_local_targets=True, local_root=tmp_path)
    target = providers.target_for(canary, None, scope)  # type: ignore[arg-type]
    assert isinstance(target, LocalTarget)
    assert target.state_dir == tmp_path / "test-demo"
    router = providers.router_for(canary, None, scope)  # type: ignore[arg-type]
    assert type(router).__name__ == "TraefikRouter"
    unknown = canary.model_copy(
        update={"spec": canary.spec.model_copy(update={"provider": "nginx"})}
    )
    with pytest.raises(PermanentError, match="unknown provider 'nginx'"):
        providers.router_for(unknown, None, scope)  # type: ignore[arg-type]
