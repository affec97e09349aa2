"""Notifications, Canaries with alerts and provider settings shared by the alert tests."""

from datetime import UTC, datetime
from typing import Any

from canary.contract import Notification, NotificationKind
from canary.spec import Canary
from tests.support.kube import NAMESPACE

TIME = datetime(2024, 5, 1, 12, 0, 3, tzinfo=UTC)


def notification(kind: NotificationKind, message: str) -> Notification:
    return Notification(kind=kind, severity=kind.severity, message=message, time=TIME)


STARTED = notification(NotificationKind.STARTED, "New revision detected! Scaling up podinfo.test")
ADVANCED = notification(NotificationKind.ADVANCED, "Advance podinfo.test canary weight 20")
HALTED = notification(
    NotificationKind.HALTED, "Halt podinfo.test advancement success rate 69.17% < 99%"
)
ROLLED_BACK = notification(
    NotificationKind.ROLLED_BACK, "Rolling back podinfo.test failed checks threshold reached 5"
)


def make_canary(alerts: list[dict[str, Any]], kind: str = "Deployment") -> Canary:
    """A Canary of `podinfo` in the test namespace whose analysis sends `alerts`."""
    return Canary.model_validate(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": NAMESPACE},
            "spec": {
                "provider": "traefik" if kind == "LocalProcess" else "istio",
                "targetRef": {"kind": kind, "name": "podinfo"},
                "service": {"port": 9898},
                "analysis": {"interval": "1m", "alerts": alerts},
            },
        }
    )


def alert(name: str, provider: str, severity: str = "info", **ref: str) -> dict[str, Any]:
    return {"name": name, "severity": severity, "providerRef": {"name": provider, **ref}}


def env_provider(name: str, kind: str, url: str) -> dict[str, str]:
    """The worker environment that configures provider `name`."""
    return {f"COALMINE_ALERT_{name}_TYPE": kind, f"COALMINE_ALERT_{name}_URL": url}
