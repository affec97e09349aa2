"""The state of one rollout: phase, weights, checks, last metric values and recent events."""

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from canary.spec import Severity

MAX_EVENTS = 50


class Phase(StrEnum):
    INITIALIZING = "Initializing"
    INITIALIZED = "Initialized"
    WAITING = "Waiting"
    PROGRESSING = "Progressing"
    WAITING_PROMOTION = "WaitingPromotion"
    PROMOTING = "Promoting"
    FINALISING = "Finalising"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def final(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


class CheckOutcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NO_VALUES = "no-values"
    UNAVAILABLE = "unavailable"


class MetricObservation(BaseModel):
    """One metric as the metrics provider saw it: a value, no values, or an error."""

    name: str
    value: float | None = None
    error: str | None = None


class WebhookObservation(BaseModel):
    name: str
    ok: bool
    message: str = ""


class MetricStatus(BaseModel):
    name: str
    value: float | None
    min: float | None = None
    max: float | None = None
    outcome: CheckOutcome


class EventKind(StrEnum):
    """What an event announces, for alerts; plain progress messages have no kind."""

    STARTED = "started"
    ADVANCED = "advanced"
    HALTED = "halted"
    WAITING = "waiting"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled-back"
    PROMOTION_FAILED = "promotion-failed"
    """The primary did not take the new version; the analysed canary serves all traffic."""

    @property
    def severity(self) -> Severity:
        if self in (EventKind.ROLLED_BACK, EventKind.PROMOTION_FAILED):
            return Severity.ERROR
        return Severity.WARN if self == EventKind.HALTED else Severity.INFO


class Event(BaseModel):
    time: datetime
    message: str
    warning: bool = False
    kind: EventKind | None = None


class CanaryStatus(BaseModel):
    phase: Phase = Phase.INITIALIZING
    canary_weight: int = 0
    primary_weight: int = 100
    mirror: bool = False
    failed_checks: int = 0
    iteration: int = 0
    paused: bool = False
    image: str | None = None
    revision: str | None = None
    metrics: list[MetricStatus] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    reason: str | None = None
    """Why the rollout failed (or was promoted early); None while it runs."""
    canary_unready_since: datetime | None = None
    """When an analysis step first found the canary not ready; None while it is ready."""

    def with_events(self, *events: Event) -> "CanaryStatus":
        return self.model_copy(update={"events": [*self.events, *events][-MAX_EVENTS:]})
