"""Kubernetes Events on the target Deployment, against a kmock emulator over real HTTP."""

from datetime import UTC, datetime, timedelta
from typing import Any

import kmock
import kubernetes
import pytest

from activities.kube_events import (
    KubeEvents,
    applies_to,
    event_name,
    record_events,
)
from canary.contract import Notification, NotificationKind
from canary.spec import Canary, Severity
from tests.support.kube import (  # noqa: F401
    DEPLOYMENTS,
    NAMESPACE,
    ServedEmulator,
    kube_fixture,
    podinfo_deployment,
)
from tests.support.net import free_port

EVENTS = "v1/events"
TIME = datetime(2024, 5, 1, 12, 0, 3, 250000, tzinfo=UTC)


def note(
    kind: NotificationKind, severity: Severity, message: str, seconds: int = 0
) -> Notification:
    return Notification(
        kind=kind, severity=severity, message=message, time=TIME + timedelta(seconds=seconds)
    )


STARTED = note(
    NotificationKind.STARTED, Severity.INFO, "New revision detected! Scaling up podinfo.test"
)
ADVANCED = note(
    NotificationKind.ADVANCED, Severity.INFO, "Advance podinfo.test canary weight 20", 60
)
HALTED = note(
    NotificationKind.HALTED,
    Severity.WARN,
    "Halt podinfo.test advancement success rate 69.17% < 99%",
    120,
)
ROLLED_BACK = note(
    NotificationKind.ROLLED_BACK,
    Severity.ERROR,
    "Rolling back podinfo.test failed checks threshold reached 5",
    180,
)
ALL = [STARTED, ADVANCED, HALTED, ROLLED_BACK]


def stored_events(kube: ServedEmulator) -> list[dict[str, Any]]:
    return [
        obj.raw
        for (resource, _, _), obj in kube.emulator.objects.items()
        if resource == kmock.resource(EVENTS) and not obj.deleted
    ]


def make_canary(kind: str) -> Canary:
    return Canary.model_validate(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": NAMESPACE},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": kind, "name": "podinfo"},
                "service": {"port": 9898},
                "analysis": {"interval": "1m"},
            },
        }
    )


def test_an_event_is_recorded_on_the_deployment_like_flagger_does(kube: ServedEmulator) -> None:
    events = KubeEvents(kube.api, NAMESPACE, "podinfo")

    assert events.record(HALTED) is True

    name = event_name("podinfo", HALTED)
    assert kube.get(EVENTS, NAMESPACE, name) == {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "coalmine"},
        },
        "involvedObject": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "podinfo",
            "namespace": NAMESPACE,
        },
        "reason": "Synced",
        "message": "Halt podinfo.test advancement success rate 69.17% < 99%",
        "type": "Warning",
        "source": {"component": "coalmine"},
        "reportingComponent": "coalmine",
        "firstTimestamp": "2024-05-01T12:02:03+00:00",
        "lastTimestamp": "2024-05-01T12:02:03+00:00",
        "count": 1,
    }


def test_events_carry_the_deployments_uid_for_kubectl_describe(kube: ServedEmulator) -> None:
    """kmock sets no uid, so the test gives the Deployment one, as the API server would."""
    deployment = podinfo_deployment()
    deployment["metadata"]["uid"] = "7d3c4e0a-5b1f-4c2e-9a8d-0f6b2c1e9d44"
    kube.put(DEPLOYMENTS, deployment)

    outcomes = record_events(KubeEvents(kube.api, NAMESPACE, "podinfo"), [STARTED, ADVANCED])

    assert [o.ok for o in outcomes] == [True, True]
    for notification in (STARTED, ADVANCED):
        stored = kube.get(EVENTS, NAMESPACE, event_name("podinfo", notification))
        assert stored["involvedObject"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "podinfo",
            "namespace": NAMESPACE,
            "uid": "7d3c4e0a-5b1f-4c2e-9a8d-0f6b2c1e9d44",
        }


def test_progress_is_normal_halts_and_rollbacks_are_warnings(kube: ServedEmulator) -> None:
    outcomes = record_events(KubeEvents(kube.api, NAMESPACE, "podinfo"), ALL)

    assert all(outcome.ok for outcome in outcomes)
    stored = [kube.get(EVENTS, NAMESPACE, event_name("podinfo", n)) for n in ALL]
    assert [(event["message"], event["type"]) for event in stored] == [
        (STARTED.message, "Normal"),
        (ADVANCED.message, "Normal"),
        (HALTED.message, "Warning"),
        (ROLLED_BACK.message, "Warning"),
    ]
    assert {event["reason"] for event in stored} == {"Synced"}
    assert len(stored_events(kube)) == 4


def test_recording_again_is_idempotent(kube: ServedEmulator) -> None:
    events = KubeEvents(kube.api, NAMESPACE, "podinfo")
    first = record_events(events, ALL)

    second = record_events(events, ALL)

    assert [o.detail for o in first] == ["created"] * 4
    assert [o.detail for o in second] == ["already recorded"] * 4
    assert all(o.ok for o in second)
    assert len(stored_events(kube)) == 4


def test_names_are_deterministic_and_tell_notifications_apart() -> None:
    again = note(NotificationKind.HALTED, Severity.WARN, HALTED.message, 120)
    later = note(NotificationKind.HALTED, Severity.WARN, HALTED.message, 180)

    assert event_name("podinfo", HALTED) == event_name("podinfo", again)
    assert event_name("podinfo", HALTED) != event_name("podinfo", later)
    assert event_name("podinfo", HALTED).startswith("podinfo.")
    assert len(event_name("p" * 253, HALTED)) == 253


def test_a_refusal_is_reported_with_the_permission(kube: ServedEmulator) -> None:
    kube.refuse("post", EVENTS)

    outcomes = record_events(KubeEvents(kube.api, NAMESPACE, "podinfo"), [STARTED, ADVANCED])

    assert [o.ok for o in outcomes] == [False, False]
    assert "RBAC refusal: not allowed to create events in namespace test" in outcomes[0].detail
    assert outcomes[0].describe().startswith(f"event {event_name('podinfo', STARTED)} (started)")


def test_an_unreachable_api_is_reported_once_then_the_rest_skipped() -> None:
    configuration = kubernetes.client.Configuration(host=f"http://127.0.0.1:{free_port()}")
    configuration.retries = 0
    with kubernetes.client.ApiClient(configuration) as api:
        outcomes = record_events(KubeEvents(api, NAMESPACE, "podinfo"), [STARTED, ADVANCED])

    assert [o.ok for o in outcomes] == [False, False]
    assert outcomes[1].detail.startswith("skipped: the Kubernetes API did not answer earlier")


@pytest.mark.parametrize(("kind", "expected"), [("Deployment", True), ("LocalProcess", False)])
def test_only_deployment_targets_get_events(kind: str, expected: bool) -> None:
    assert applies_to(make_canary(kind)) is expected
