"""The notify activity: alerts to local HTTP receivers and Events to a kmock emulator, both over
real HTTP; failures are logged and reported, never raised."""

import logging
from typing import Any

import kmock
import kubernetes
import pytest
from temporalio.testing import ActivityEnvironment

from activities.alerts import AlertProviders
from activities.kube_events import event_name
from activities.notify import NotifyActivities
from canary import contract
from tests.support.alerting import (
    HALTED,
    ROLLED_BACK,
    STARTED,
    alert,
    env_provider,
    make_canary,
)
from tests.support.kube import NAMESPACE, ServedEmulator, kube_fixture  # noqa: F401
from tests.support.webhook_receiver import Receiver, receiver_fixture  # noqa: F401

EVENTS = "v1/events"


def stored_events(kube: ServedEmulator) -> list[dict[str, Any]]:
    return [
        obj.raw
        for (resource, _, _), obj in kube.emulator.objects.items()
        if resource == kmock.resource(EVENTS) and not obj.deleted
    ]


def never_called() -> kubernetes.client.ApiClient:
    raise AssertionError("a LocalProcess target must not need a Kubernetes client")


async def test_alerts_and_events_for_a_deployment_target(
    receiver: Receiver, kube: ServedEmulator
) -> None:
    canary = make_canary([alert("all", "hook"), alert("pager", "hook", "error")])
    activities = NotifyActivities(
        AlertProviders(env_provider("HOOK", "generic", f"{receiver.url}/ok")), lambda: kube.api
    )
    request = contract.NotifyRequest(canary=canary, notifications=[STARTED, HALTED, ROLLED_BACK])

    await ActivityEnvironment().run(activities.notify, request)

    assert {body["target"] for body in receiver.bodies} == {"podinfo.test"}
    assert sorted(body["kind"] for body in receiver.bodies) == [
        "halted",
        "rolled-back",
        "rolled-back",
        "started",
    ]
    events = {event["metadata"]["name"]: event for event in stored_events(kube)}
    assert set(events) == {event_name("podinfo", n) for n in (STARTED, HALTED, ROLLED_BACK)}
    halted = events[event_name("podinfo", HALTED)]
    assert (halted["reason"], halted["type"], halted["message"]) == (
        "Synced",
        "Warning",
        HALTED.message,
    )
    assert halted["involvedObject"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "podinfo",
        "namespace": NAMESPACE,
    }


async def test_a_retried_activity_still_leaves_one_event_per_notification(
    receiver: Receiver, kube: ServedEmulator
) -> None:
    canary = make_canary([])
    activities = NotifyActivities(AlertProviders(), lambda: kube.api)
    request = contract.NotifyRequest(canary=canary, notifications=[STARTED, HALTED])

    first = await activities.deliver(request)
    second = await activities.deliver(request)

    assert first.failures == [] and second.failures == []
    assert all(line.endswith("recorded: already recorded") for line in second.delivered)
    assert len(stored_events(kube)) == 2


async def test_a_local_process_target_gets_alerts_and_no_events(receiver: Receiver) -> None:
    canary = make_canary([alert("all", "hook")], kind="LocalProcess")
    activities = NotifyActivities(
        AlertProviders(env_provider("HOOK", "generic", f"{receiver.url}/ok")), never_called
    )
    request = contract.NotifyRequest(canary=canary, notifications=[STARTED])

    report = await activities.deliver(request)

    assert report.failures == []
    assert report.delivered == ["alert all (provider hook): started sent: status 200"]
    assert [body["kind"] for body in receiver.bodies] == ["started"]


async def test_failures_are_logged_and_reported_never_raised(
    receiver: Receiver, kube: ServedEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    kube.refuse("post", EVENTS)
    canary = make_canary(
        [alert("unknown", "nobody"), alert("broken", "broken"), alert("fine", "fine")]
    )
    providers = AlertProviders(
        {
            **env_provider("BROKEN", "generic", f"{receiver.url}/fail"),
            **env_provider("FINE", "generic", f"{receiver.url}/ok"),
        }
    )
    activities = NotifyActivities(providers, lambda: kube.api)
    request = contract.NotifyRequest(canary=canary, notifications=[HALTED])

    with caplog.at_level(logging.INFO):
        await ActivityEnvironment().run(activities.notify, request)

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert any("unknown alert provider 'nobody'" in line for line in warnings)
    assert any("alert broken (provider broken): halted not sent: status 500" in w for w in warnings)
    assert any("RBAC refusal: not allowed to create events" in line for line in warnings)
    assert all(line.startswith("notification for podinfo.test failed: ") for line in warnings)
    summary = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("notifications for podinfo.test: 1 delivered, 3 failed" in s for s in summary)


async def test_a_deployment_target_without_a_kubernetes_client_is_reported() -> None:
    activities = NotifyActivities(AlertProviders(), None)
    request = contract.NotifyRequest(canary=make_canary([]), notifications=[STARTED])

    report = await activities.deliver(request)

    assert report.failures == ["events: this worker has no Kubernetes client"]


async def test_a_kubernetes_client_that_cannot_be_made_is_reported() -> None:
    def no_config() -> kubernetes.client.ApiClient:
        raise kubernetes.config.ConfigException("Invalid kube-config file. No configuration found.")

    activities = NotifyActivities(AlertProviders(), no_config)
    request = contract.NotifyRequest(canary=make_canary([]), notifications=[STARTED])

    report = await activities.deliver(request)

    assert report.failures == [
        "events: no Kubernetes client: Invalid kube-config file. No configuration found."
    ]


async def test_nothing_to_send_does_nothing(kube: ServedEmulator) -> None:
    activities = NotifyActivities(AlertProviders(), lambda: kube.api)
    request = contract.NotifyRequest(canary=make_canary([alert("a", "nobody")]), notifications=[])

    report = await activities.deliver(request)

    assert (report.delivered, report.failures) == ([], [])
    assert kube.writes() == 0
