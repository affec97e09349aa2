"""What a worker lets a spec touch (`activities.scope`): local targets only when allowed, their
files under the worker's root, their processes without the worker's environment, Kubernetes
only in the worker's namespaces. Through the real activities, a real process and kmock."""

import concurrent.futures
import json
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities import providers
from activities.alerts import AlertProviders
from activities.errors import PermanentError
from activities.local_target import LocalTarget
from activities.notify import NotifyActivities
from activities.rollout import RolloutActivities
from activities.scope import WorkerScope
from canary import contract
from canary.decision import ALL_TO_PRIMARY
from canary.spec import Canary, Severity
from canary.status import Phase
from starter.verdict import final_status
from tests.support.kube import ServedEmulator, kube_fixture, podinfo_deployment  # noqa: F401
from tests.support.net import free_port
from worker.main import ACTIVITY_THREADS, build_worker, rollout_activities
from workflows.canary_workflow import CanaryWorkflow

DEPLOYMENTS = "apps/v1/deployments"
ENV_DUMP = """\
import http.server, json, os, sys
with open(sys.argv[2] + ".tmp", "w") as out:
    json.dump(dict(os.environ), out)
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
class Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Healthy).serve_forever()
"""


def local_canary(
    command: str = "app {{ port }}",
    state_dir: str = "targets",
    config_file: str = "dynamic/demo.yaml",
    provider: str = "traefik",
    env: dict[str, str] | None = None,
) -> Canary:
    return Canary.model_validate(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "demo", "namespace": "test"},
            "spec": {
                "provider": provider,
                "targetRef": {"kind": "LocalProcess", "name": "demo"},
                "service": {"port": free_port()},
                "local": {
                    "command": command,
                    "image": "v1",
                    "primaryPort": free_port(),
                    "canaryPort": free_port(),
                    "stateDir": state_dir,
                    "env": env or {},
                },
                "traefik": {"configFile": config_file},
                "analysis": {"interval": "1m", "maxWeight": 50, "stepWeight": 10},
            },
        }
    )


def kube_canary(namespace: str, provider: str = "istio") -> Canary:
    return Canary.model_validate(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": namespace},
            "spec": {
                "provider": provider,
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898},
                "analysis": {"interval": "1m", "maxWeight": 50, "stepWeight": 10},
            },
        }
    )


def refusal(activities: RolloutActivities, canary: Canary) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(activities.initialize, contract.CanaryRequest(canary=canary))
    assert caught.value.non_retryable
    return caught.value


def routing_refusal(activities: RolloutActivities, canary: Canary) -> ApplicationError:
    request = contract.RoutesRequest(canary=canary, routes=ALL_TO_PRIMARY)
    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(activities.set_routes, request)
    assert caught.value.non_retryable
    return caught.value


# -- local targets only when allowed ----------------------------------------------------------


def test_a_worker_refuses_local_targets_and_the_traefik_router_by_default(tmp_path: Path) -> None:
    canary = local_canary()
    default = WorkerScope(local_root=tmp_path)
    with pytest.raises(PermanentError, match=r"spec\.targetRef\.kind: .*--allow-local-targets"):
        providers.target_for(canary, None, default)  # type: ignore[arg-type]
    with pytest.raises(PermanentError, match=r"spec\.provider: .*COALMINE_ALLOW_LOCAL_TARGETS=1"):
        providers.router_for(canary, None, default)  # type: ignore[arg-type]

    error = refusal(RolloutActivities(lambda: None, "http://127.0.0.1:1"), canary)  # type: ignore[arg-type, return-value]
    assert "--allow-local-targets" in error.message
    assert not list(tmp_path.iterdir()), "nothing is written for a refused spec"

    allowed = WorkerScope(allow_local_targets=True, local_root=tmp_path)
    target = providers.target_for(canary, None, allowed)  # type: ignore[arg-type]
    assert isinstance(target, LocalTarget)
    assert target.state_dir == tmp_path / "targets" / "test-demo"
    router = providers.router_for(canary, None, allowed)  # type: ignore[arg-type]
    assert router.settings.config_file == tmp_path / "dynamic" / "demo.yaml"  # type: ignore[attr-defined]


async def test_a_refused_local_rollout_ends_failed_naming_the_flag(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    canary = local_canary(state_dir=str(tmp_path / "targets"))
    rollout = RolloutActivities(lambda: None, "http://127.0.0.1:1")  # type: ignore[arg-type, return-value]
    notify = NotifyActivities(AlertProviders.from_environment({}), None)
    queue = f"scope-{uuid.uuid4()}"
    with concurrent.futures.ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        async with build_worker(
            time_skipping_env.client,
            rollout_activities(rollout, notify),
            executor,
            task_queue=queue,
        ):
            handle = await time_skipping_env.client.start_workflow(
                CanaryWorkflow.run,
                contract.RolloutRequest(canary=canary, image="v2"),
                id=f"{canary.workflow_id}-{uuid.uuid4()}",
                task_queue=queue,
            )
            status = await final_status(handle)
    assert status.phase == Phase.FAILED
    assert any("--allow-local-targets" in event.message for event in status.events), [
        event.message for event in status.events
    ]
    assert not (tmp_path / "targets").exists()


# -- files under the worker's root ----------------------------------------------------------


@pytest.mark.parametrize("field", ["stateDir", "configFile"])
@pytest.mark.parametrize("escape", ["absolute", "dotdot", "symlink"])
def test_paths_outside_the_local_root_are_refused_naming_the_field(
    tmp_path: Path, field: str, escape: str
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "link").symlink_to(elsewhere)
    path = {
        "absolute": str(elsewhere / "x"),
        "dotdot": "inside/../../elsewhere/x",
        "symlink": "link/x",
    }[escape]
    fields: dict[str, Any] = {"state_dir": path} if field == "stateDir" else {"config_file": path}
    canary = local_canary(**fields)
    scope = WorkerScope(allow_local_targets=True, local_root=root)
    spec_field = "spec.local.stateDir" if field == "stateDir" else "spec.traefik.configFile"
    with pytest.raises(PermanentError) as caught:
        if field == "stateDir":
            providers.target_for(canary, None, scope)  # type: ignore[arg-type]
        else:
            providers.router_for(canary, None, scope)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith(f"{spec_field}: {path}")
    assert f"lies outside {root}" in message and "--local-root" in message

    activities = RolloutActivities(lambda: None, "http://127.0.0.1:1", scope)  # type: ignore[arg-type, return-value]
    refused = refusal if field == "stateDir" else routing_refusal
    assert refused(activities, canary).message == message
    assert list(elsewhere.iterdir()) == []


def test_paths_inside_the_local_root_are_accepted(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "shared").mkdir(parents=True)
    (root / "alias").symlink_to(root / "shared")
    scope = WorkerScope(allow_local_targets=True, local_root=root)
    for state_dir, config_file in (
        (str(root / "targets"), str(root / "traefik" / "demo.yaml")),
        ("alias/targets", "a/../traefik/demo.yaml"),
    ):
        canary = local_canary(state_dir=state_dir, config_file=config_file)
        target = providers.target_for(canary, None, scope)  # type: ignore[arg-type]
        assert target.state_dir.resolve().is_relative_to(root)  # type: ignore[attr-defined]
        router = providers.router_for(canary, None, scope)  # type: ignore[arg-type]
        assert router.settings.config_file.resolve() == root / "traefik" / "demo.yaml"  # type: ignore[attr-defined]


# -- the process's environment --------------------------------------------------------------


@pytest.fixture
def local_targets() -> Iterator[list[LocalTarget]]:
    """Targets whose processes are stopped (by their recorded pids) after the test."""
    made: list[LocalTarget] = []
    yield made
    for target in made:
        target.shutdown()


def test_a_local_target_runs_with_path_home_lang_and_its_spec_env_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_targets: list[LocalTarget]
) -> None:
    monkeypatch.setenv("TEMPORAL_API_KEY", "secret-api-key")
    monkeypatch.setenv("COALMINE_ALERT_SLACK_URL", "https://hooks.example/secret-token")
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    script = tmp_path / "dump_env.py"
    script.write_text(ENV_DUMP)
    dump = tmp_path / "env.json"
    canary = local_canary(
        command=f"{sys.executable} {script} {{{{ port }}}} {dump}",
        provider="kubernetes",
        env={"GREETING": "hello", "PATH": "/spec/bin:/usr/bin"},
    )
    scope = WorkerScope(allow_local_targets=True, local_root=tmp_path)
    local_targets.append(LocalTarget.for_canary(canary, workdir=tmp_path))
    activities = RolloutActivities(lambda: None, "http://127.0.0.1:1", scope)  # type: ignore[arg-type, return-value]

    state = ActivityEnvironment().run(activities.initialize, contract.CanaryRequest(canary=canary))

    assert state.created_primary
    deadline = time.monotonic() + 30
    while not dump.exists():
        assert time.monotonic() < deadline, "the process did not write its environment"
        time.sleep(0.05)
    assert json.loads(dump.read_text()) == {
        "PATH": "/spec/bin:/usr/bin",
        "HOME": str(tmp_path / "home"),
        "LANG": "C.UTF-8",
        "GREETING": "hello",
    }


# -- Kubernetes namespaces ------------------------------------------------------------------


def test_a_worker_limited_to_namespaces_refuses_others_before_any_write(
    kube: ServedEmulator,
) -> None:
    kube.put(DEPLOYMENTS, podinfo_deployment(namespace="team-b"))
    scope = WorkerScope(namespaces=frozenset({"team-a", "team-c"}))
    activities = RolloutActivities(lambda: kube.api, "http://127.0.0.1:1", scope)

    for provider in ("istio", "kubernetes"):
        error = refusal(activities, kube_canary("team-b", provider))
        assert error.message == (
            "metadata.namespace: this worker may not touch Kubernetes namespace 'team-b'; "
            "it is limited to team-a,team-c (--namespaces, COALMINE_NAMESPACES)"
        )
    assert kube.writes() == 0
    assert not kube.exists(DEPLOYMENTS, "team-b", "podinfo-primary")

    kube.put(DEPLOYMENTS, podinfo_deployment(namespace="team-a"))
    allowed = ActivityEnvironment().run(
        activities.initialize, contract.CanaryRequest(canary=kube_canary("team-a", "kubernetes"))
    )
    assert allowed.created_primary
    assert kube.exists(DEPLOYMENTS, "team-a", "podinfo-primary")


async def test_events_are_not_recorded_in_a_namespace_outside_the_scope(
    kube: ServedEmulator,
) -> None:
    notify = NotifyActivities(
        AlertProviders.from_environment({}),
        lambda: kube.api,
        WorkerScope(namespaces=frozenset({"team-a"})),
    )
    notification = contract.Notification(
        kind=contract.NotificationKind.ADVANCED,
        severity=Severity.INFO,
        message="Advance podinfo.team-b canary weight 10",
        time=datetime(2024, 5, 1, tzinfo=UTC),
    )
    report = await notify.deliver(
        contract.NotifyRequest(canary=kube_canary("team-b"), notifications=[notification])
    )
    assert report.delivered == []
    assert len(report.failures) == 1
    assert "may not touch Kubernetes namespace 'team-b'" in report.failures[0]
    assert kube.writes() == 0
