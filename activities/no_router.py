"""The router of provider `kubernetes`: no traffic splitting at all.

Blue/green on plain Services: the apex Service always selects the primary, the canary is
reached through `<svc>-canary` only, and promotion switches traffic by updating the primary.
"""

from canary.decision import ALL_TO_PRIMARY, Routes


class NoRouter:
    def reconcile(self) -> None:
        """Nothing to create: the Services belong to the target."""

    def set_routes(self, routes: Routes) -> None:
        """Weights cannot be expressed without a router; the spec validation refuses them."""

    def get_routes(self) -> Routes:
        return ALL_TO_PRIMARY
