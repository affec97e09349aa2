"""`set_routes_and_notify`: new routes and the notifications waiting when they change, in one
activity, so that an analysis step that moves the weight records one local activity for both.

The routes come first: if they cannot be set, the call fails before anything is sent, and a
retry sets them again (absolute weights). The notifications are then delivered as `notify`
delivers them, best effort: a failure to notify is logged and never fails the call, which would
set the routes and notify again.
"""

import asyncio
from collections.abc import Callable

from temporalio import activity

from activities.notify import NotifyActivities
from activities.rollout import RolloutActivities
from canary import contract


class RoutesAndNotifyActivities:
    """Composes the router of `rollout` and the notifications of `notify`."""

    def __init__(self, rollout: RolloutActivities, notify: NotifyActivities) -> None:
        self._rollout = rollout
        self._notify = notify

    def all(self) -> list[Callable[..., object]]:
        return [self.set_routes_and_notify]

    @activity.defn(name=contract.SET_ROUTES_AND_NOTIFY)
    async def set_routes_and_notify(self, request: contract.RoutesAndNotifyRequest) -> None:
        await asyncio.to_thread(self._rollout.set_routes, request.routes)
        try:
            await self._notify.notify(request.notify)
        except Exception as error:  # the routes are set: this call must not fail now
            activity.logger.warning(
                "notifications for %s not sent: %s", request.notify.canary.target, error
            )
