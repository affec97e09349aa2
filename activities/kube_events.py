"""Kubernetes Events on the target Deployment, the way Flagger reports a rollout.

`kubectl describe deployment/podinfo` and `kubectl get events` then show each step (describe
matches events by the Deployment's uid, which each event carries in `involvedObject`). Like
Flagger, every event has reason `Synced`; progress is type `Normal`, halts and rollbacks
(severity warn or error) are type `Warning`.

Each event's name is derived from the notification (`<target>.<hash of kind, time, message>`),
so a retried activity finds its earlier event (409 AlreadyExists) and stops there: one Event per
notification, only `create` is needed.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kubernetes
import urllib3

from activities import errors, kube_client
from canary import targets
from canary.contract import Notification, NotificationKind
from canary.spec import Canary, Severity

EVENT = kube_client.Resource("Event", "events")
DEPLOYMENT = kube_client.Resource("Deployment", "deployments.apps")
REASON = "Synced"
"""Flagger's reason for every event it records (Normal and Warning alike)."""
COMPONENT = "coalmine"
KUBE_TIMEOUT_SECONDS = 5.0
TARGET_KIND = "Deployment"
_NAME_LIMIT = 253
_HASH_LENGTH = 16

KUBE_FAILURES: tuple[type[BaseException], ...] = (
    errors.PermanentError,
    kubernetes.client.ApiException,
    kubernetes.config.ConfigException,
    urllib3.exceptions.HTTPError,
    OSError,
)
"""What a Kubernetes call (or making the client) raises when the API cannot be used."""


def applies_to(canary: Canary) -> bool:
    """Events go on Kubernetes targets only (`canary.targets`); LocalProcess targets get none."""
    entry = targets.TRAITS.get(canary.spec.target_ref.kind)
    return entry is not None and entry.kubernetes_events


def event_type(severity: Severity) -> str:
    return "Normal" if severity is Severity.INFO else "Warning"


def event_name(target: str, notification: Notification) -> str:
    """`<target>.<16 hex>`: the same notification always gets the same name."""
    identity = "\n".join(
        (notification.kind.value, _utc(notification.time).isoformat(), notification.message)
    )
    digest = hashlib.sha256(identity.encode()).hexdigest()[:_HASH_LENGTH]
    return f"{target[: _NAME_LIMIT - _HASH_LENGTH - 1]}.{digest}"


def event_body(
    namespace: str, target: str, notification: Notification, uid: str | None = None
) -> dict[str, Any]:
    """A core/v1 Event about Deployment `target` (whose `metadata.uid` is `uid`, when known),
    as client-go's recorder would write it."""
    time = _rfc3339(notification.time)
    involved = {
        "apiVersion": "apps/v1",
        "kind": TARGET_KIND,
        "name": target,
        "namespace": namespace,
    }
    if uid:
        involved["uid"] = uid
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": event_name(target, notification),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": COMPONENT},
        },
        "involvedObject": involved,
        "reason": REASON,
        "message": notification.message,
        "type": event_type(notification.severity),
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": time,
        "lastTimestamp": time,
        "count": 1,
    }


class KubeEvents:
    """Records notifications as Events on one Deployment."""

    def __init__(self, api: kubernetes.client.ApiClient, namespace: str, target: str) -> None:
        self._core = kubernetes.client.CoreV1Api(api)
        self._apps = kubernetes.client.AppsV1Api(api)
        self.namespace = namespace
        self.target = target
        self._uid: str | None = None
        self._uid_read = False

    @classmethod
    def for_canary(cls, canary: Canary, api: kubernetes.client.ApiClient) -> "KubeEvents":
        return cls(api, canary.metadata.namespace, canary.spec.target_ref.name)

    def record(self, notification: Notification) -> bool:
        """Create the notification's Event: True when created, False when it already was."""
        body = event_body(self.namespace, self.target, notification, self.target_uid())
        name = body["metadata"]["name"]
        try:
            with kube_client.api_errors("create", EVENT, self.namespace, name):
                self._core.create_namespaced_event(
                    self.namespace,
                    kubernetes.client.CoreV1Event.model_validate(body),
                    _request_timeout=KUBE_TIMEOUT_SECONDS,
                )
        except kubernetes.client.ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    def target_uid(self) -> str | None:
        """The Deployment's `metadata.uid`, read once; None when the Deployment is gone (its
        event is still recorded, by name)."""
        if not self._uid_read:
            with kube_client.api_errors("get", DEPLOYMENT, self.namespace, self.target):
                deployment = kube_client.read_optional(
                    lambda: self._apps.read_namespaced_deployment(
                        self.target, self.namespace, _request_timeout=KUBE_TIMEOUT_SECONDS
                    )
                )
            metadata = deployment.metadata if deployment is not None else None
            self._uid = metadata.uid if metadata is not None else None
            self._uid_read = True
        return self._uid


@dataclass(frozen=True)
class EventOutcome:
    kind: NotificationKind
    name: str
    ok: bool
    detail: str

    def describe(self) -> str:
        verdict = "recorded" if self.ok else "not recorded"
        return f"event {self.name} ({self.kind.value}): {verdict}: {self.detail}"


def record_events(events: KubeEvents, notifications: Sequence[Notification]) -> list[EventOutcome]:
    """Record each notification; a failure is an outcome, never an exception.

    After a failure to reach the API at all, the rest are skipped rather than each waiting
    out its own timeout."""
    outcomes = []
    unreachable: str | None = None
    for notification in notifications:
        name = event_name(events.target, notification)
        if unreachable is not None:
            outcomes.append(EventOutcome(notification.kind, name, False, unreachable))
            continue
        try:
            created = events.record(notification)
        except KUBE_FAILURES as error:
            reason = failure_reason(error)
            outcomes.append(EventOutcome(notification.kind, name, False, reason))
            if not isinstance(error, errors.PermanentError | kubernetes.client.ApiException):
                unreachable = f"skipped: the Kubernetes API did not answer earlier ({reason})"
            continue
        detail = "created" if created else "already recorded"
        outcomes.append(EventOutcome(notification.kind, name, True, detail))
    return outcomes


def failure_reason(error: BaseException) -> str:
    """One line for a Kubernetes failure (the API's own message when it gave one)."""
    if isinstance(error, kubernetes.client.ApiException):
        return f"status {error.status} {error.reason or ''}".strip()
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _utc(time: datetime) -> datetime:
    return time.replace(tzinfo=UTC) if time.tzinfo is None else time.astimezone(UTC)


def _rfc3339(time: datetime) -> str:
    """Seconds precision, `Z`: what metav1.Time holds."""
    return _utc(time).strftime("%Y-%m-%dT%H:%M:%SZ")
