"""What each activity gets of the spec: the parts it reads, not the whole spec.

An activity input is recorded in the rollout's history each time the activity is scheduled,
so a whole spec in every input multiplies the spec's size by the number of calls (a gate
calls its webhooks at every interval). The results are still `Canary` objects, so activities
read old inputs (whole specs, from rollouts started before) and new ones alike. Keys the
model does not know (kept by `extra="allow"`) are dropped: no code reads them. Replay does not
compare activity inputs, so this needs no patch: the stored histories, recorded with whole
specs, replay unchanged.
"""

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from canary.spec import Canary, SpecModel, WebhookType

OBSERVED_HOOKS = (WebhookType.ROLLBACK, WebhookType.ROLLOUT, WebhookType.CONFIRM_TRAFFIC_INCREASE)
"""The hooks the `observe` activity calls."""


def for_target(canary: Canary) -> Canary:
    """For the workload and router activities: everything but metrics, webhooks, alerts and
    the metadata's labels and annotations."""
    return _slimmed(canary, webhooks=(), metrics=False)


def for_webhooks(canary: Canary, kinds: Iterable[WebhookType]) -> Canary:
    """For `call_webhooks`: the hooks of `kinds` and what names the rollout."""
    return _slimmed(canary, webhooks=tuple(kinds), metrics=False)


def for_observe(canary: Canary) -> Canary:
    """For `observe`: the metrics, the hooks it calls and the target."""
    return _slimmed(canary, webhooks=OBSERVED_HOOKS, metrics=True)


def for_notify(canary: Canary) -> Canary:
    """For `notify`: the alerts, the `event` hooks and the target."""
    return _slimmed(canary, webhooks=(WebhookType.EVENT,), metrics=False, alerts=True)


def _slimmed(
    canary: Canary, webhooks: tuple[WebhookType, ...], metrics: bool, alerts: bool = False
) -> Canary:
    data = _declared(canary)
    analysis = data["spec"]["analysis"]
    analysis["webhooks"] = [
        hook for hook in analysis["webhooks"] if WebhookType(hook["type"]) in webhooks
    ]
    if not alerts:
        analysis["alerts"] = []
    if not metrics:
        analysis["metrics"] = []
    data["metadata"]["labels"] = {}
    data["metadata"]["annotations"] = {}
    return Canary.model_validate(data)


def _declared(value: Any) -> Any:
    """The JSON form of a spec model (by alias, as it is sent) without keys it does not know."""
    if isinstance(value, SpecModel):
        data: dict[str, Any] = value.model_dump(
            mode="json", by_alias=True, exclude=set(value.model_extra or {})
        )
        for name, info in type(value).model_fields.items():
            key = info.serialization_alias or name
            if key in data:
                data[key] = _declared(getattr(value, name)) if _nested(value, name) else data[key]
        return data
    if isinstance(value, list):
        return [_declared(item) for item in value]
    return value


def _nested(model: BaseModel, name: str) -> bool:
    value = getattr(model, name)
    items = value if isinstance(value, list) else [value]
    return any(isinstance(item, SpecModel) for item in items)
