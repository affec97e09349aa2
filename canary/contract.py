"""What the workflow and the activities exchange: activity names and their input/output types.

Both sides import this module, so a fake activity in a test registers under the same name
and the workflow cannot tell it from the real one.
"""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from canary.decision import Routes
from canary.spec import Canary, Severity, WebhookType
from canary.status import CanaryStatus, Event, EventKind, Phase, WebhookObservation

TASK_QUEUE = "coalmine"

INITIALIZE = "initialize"
SET_CANARY_IMAGE = "set_canary_image"
SCALE_CANARY = "scale_canary"
READINESS = "readiness"
PROMOTE_PRIMARY = "promote_primary"
RESTORE_PRIMARY = "restore_primary"
SET_ROUTES = "set_routes"
SET_ROUTES_AND_NOTIFY = "set_routes_and_notify"
OBSERVE = "observe"
CALL_WEBHOOKS = "call_webhooks"
NOTIFY = "notify"

ROLLOUT_FAILED = "RolloutFailed"
"""The type of the `ApplicationError` a Failed rollout ends its workflow with; its details
hold the final `CanaryStatus`."""


class Stage(StrEnum):
    """Where a rollout waits when it continues as new, in the order a rollout passes them."""

    CONFIRM_ROLLOUT = "confirm-rollout"
    PRE_ROLLOUT = "pre-rollout"
    CONFIRM_TRAFFIC_INCREASE = "confirm-traffic-increase"
    ANALYSIS = "analysis"
    CONFIRM_PROMOTION = "confirm-promotion"

    @property
    def order(self) -> int:
        return list(Stage).index(self)


class ContinuedRollout(BaseModel):
    """What a rollout carries into its next run (continue-as-new): the status, where it waits
    and what was asked of it, so the new run goes on at the same wait."""

    stage: Stage
    step: int = 1
    """The analysis step whose interval the rollout waits for (stage `analysis`)."""
    gate_phase: Phase | None = None
    """At a confirm gate: the phase the rollout goes back to once the gate opens."""
    status: CanaryStatus
    primary_replicas: int = 1
    promote_requested: bool = False
    abort_reason: str | None = None
    new_image: str | None = None
    unsent: list[Event] = Field(default_factory=list)
    """Events with a kind not sent to the alert providers yet."""
    unsent_hook_events: list[Event] = Field(default_factory=list)
    """Events not sent to the `event` hooks yet."""
    published: dict[str, str | int] = Field(default_factory=dict)
    """The search attribute values already set (the new run keeps them)."""


class RolloutRequest(BaseModel):
    """The workflow's input: the validated spec and, optionally, the image to roll out."""

    canary: Canary
    image: str | None = None
    resume: ContinuedRollout | None = None
    """Set by the rollout itself when it continues as new; None when a rollout starts."""


class CanaryRequest(BaseModel):
    canary: Canary


class TargetState(BaseModel):
    primary_replicas: int
    created_primary: bool
    canary_revision: str
    primary_revision: str
    primary_snapshot: str | None = None
    """What the primary runs before the rollout, opaque to the workflow (the target reads
    it): `restore_primary` puts it back after a failed promotion step. None from targets
    that do not keep one."""


class ImageRequest(BaseModel):
    canary: Canary
    image: str


class ScaleRequest(BaseModel):
    canary: Canary
    replicas: int


class ReadinessRequest(BaseModel):
    canary: Canary
    primary: bool
    """True for the primary copy, False for the canary."""


class Readiness(BaseModel):
    ready: bool
    message: str


class PromoteRequest(BaseModel):
    canary: Canary
    revision: str | None = None
    """The analysed revision: the target copies the canary only while it still runs it.
    None copies whatever the canary runs (rollouts started before this check existed)."""


class Promotion(BaseModel):
    copied: bool
    """False when the canary no longer runs the analysed revision: nothing was changed."""
    canary_revision: str


class RestoreRequest(BaseModel):
    """Put the primary back to `snapshot` (a `TargetState.primary_snapshot`)."""

    canary: Canary
    snapshot: str


class RoutesRequest(BaseModel):
    canary: Canary
    routes: Routes


class WebhooksRequest(BaseModel):
    canary: Canary
    kinds: list[WebhookType]
    phase: Phase
    checksum: str = ""


class WebhooksResult(BaseModel):
    webhooks: list[WebhookObservation] = Field(default_factory=list)


class ObserveRequest(BaseModel):
    """One analysis step's reads: the canary's readiness and revision, then (when it is ready
    and still `checksum`) the rollout (and traffic-gate) webhooks and every metric.

    The activity answers with a `canary.decision.StepObservation`."""

    canary: Canary
    phase: Phase
    checksum: str = ""
    canary_only: bool = False
    """Only the canary's readiness and revision (a paused rollout): no hook, no metric."""


class SupersedeRequest(BaseModel):
    """Input of `supersede`: roll out this image instead, restarting the analysis."""

    image: str = ""


class ControlRequest(BaseModel):
    """Input of pause, resume, promote and abort: why, in the caller's words.

    Optional everywhere: no input, `null` and `{}` all mean no reason given."""

    reason: str = ""


NotificationKind = EventKind
"""What a notification announces: the kind of the event it carries."""


class Notification(BaseModel):
    kind: NotificationKind
    severity: Severity
    message: str
    time: datetime


class EventNotice(BaseModel):
    """One event for the spec's `event` hooks (Flagger's payload: eventMessage, eventType)."""

    time: datetime
    message: str
    warning: bool = False


class NotifyRequest(BaseModel):
    """Events to send to the spec's alert providers and as Kubernetes Events on the target,
    and every event to its `event` hooks."""

    canary: Canary
    notifications: list[Notification]
    events: list[EventNotice] = Field(default_factory=list)
    phase: Phase = Phase.PROGRESSING
    checksum: str = ""


class RoutesAndNotifyRequest(BaseModel):
    """Set the routes, then send what happened (`notify`): the notifications that wait when
    the routes change go with them, in one call."""

    routes: RoutesRequest
    notify: NotifyRequest
