"""set_routes_and_notify: the Istio router against a kmock emulator and alerts to a local HTTP
receiver, over real HTTP. The routes come first; a failure to notify never fails the call."""

import kubernetes
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import providers
from activities.alerts import AlertProviders
from activities.notify import NotifyActivities
from activities.rollout import RolloutActivities
from activities.routes_and_notify import RoutesAndNotifyActivities
from activities.scope import WorkerScope
from canary import contract
from canary.decision import Routes
from tests.support.alerting import ADVANCED, alert, env_provider, make_canary
from tests.support.kube import NAMESPACE, VIRTUAL_SERVICES, ServedEmulator, kube_fixture  # noqa: F401
from tests.support.webhook_receiver import Receiver, receiver_fixture  # noqa: F401

ROUTES = Routes(primary_weight=80, canary_weight=20)


def request() -> contract.RoutesAndNotifyRequest:
    canary = make_canary([alert("all", "hook")])
    return contract.RoutesAndNotifyRequest(
        routes=contract.RoutesRequest(canary=canary, routes=ROUTES),
        notify=contract.NotifyRequest(canary=canary, notifications=[ADVANCED]),
    )


def weights(kube: ServedEmulator) -> list[int]:
    service = kube.get(VIRTUAL_SERVICES, NAMESPACE, "podinfo")
    return [destination["weight"] for destination in service["spec"]["http"][0]["route"]]


def unreadable_kubeconfig() -> kubernetes.client.ApiClient:
    raise ValueError("kubeconfig: not a mapping")


def reconcile_router(kube: ServedEmulator) -> None:
    """The VirtualService the routes are set on (initialize creates it in a rollout)."""
    canary = request().routes.canary
    providers.router_for(canary, lambda: kube.api, WorkerScope()).reconcile()


def activities(
    kube: ServedEmulator, receiver: Receiver, scope: WorkerScope | None = None
) -> RoutesAndNotifyActivities:
    rollout = RolloutActivities(lambda: kube.api, "http://127.0.0.1:1", scope)
    providers = AlertProviders(env_provider("HOOK", "generic", f"{receiver.url}/ok"))
    return RoutesAndNotifyActivities(rollout, NotifyActivities(providers, lambda: kube.api))


async def test_the_routes_are_set_then_the_notifications_sent(
    kube: ServedEmulator, receiver: Receiver
) -> None:
    combined = activities(kube, receiver)
    reconcile_router(kube)

    await ActivityEnvironment().run(combined.set_routes_and_notify, request())

    assert weights(kube) == [80, 20]
    assert [body["message"] for body in receiver.bodies] == [ADVANCED.message]


async def test_routes_that_cannot_be_set_fail_the_call_before_anything_is_sent(
    kube: ServedEmulator, receiver: Receiver
) -> None:
    combined = activities(kube, receiver, WorkerScope(namespaces=frozenset({"elsewhere"})))

    with pytest.raises(ApplicationError) as failed:
        await ActivityEnvironment().run(combined.set_routes_and_notify, request())

    assert failed.value.non_retryable
    assert receiver.bodies == []


async def test_a_notification_that_fails_does_not_fail_the_call(
    kube: ServedEmulator, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    rollout = RolloutActivities(lambda: kube.api, "http://127.0.0.1:1")
    combined = RoutesAndNotifyActivities(
        rollout, NotifyActivities(AlertProviders(), unreadable_kubeconfig)
    )
    reconcile_router(kube)

    await ActivityEnvironment().run(combined.set_routes_and_notify, request())

    assert weights(kube) == [80, 20]
    assert "notifications for podinfo.test not sent: kubeconfig: not a mapping" in caplog.text
