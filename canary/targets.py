"""What the workflow must know about each kind of target to move traffic safely (pure data)."""

from dataclasses import dataclass

from canary.spec import LOCAL_KIND, Canary


@dataclass(frozen=True)
class TargetTraits:
    primary_replaced_in_place: bool
    """Promotion stops the primary before the new one runs (a LocalProcess on its fixed port),
    so the primary's share of traffic moves to the canary first. A Deployment's rolling
    update keeps the primary available instead."""
    route_settle_seconds: float
    """How long a workload that just lost its traffic keeps running before it is stopped, so
    the router applies the new weights first (Traefik reloads its file in well under a second,
    and within a few seconds on a machine whose cores are busy).
    Zero for Deployments: Kubernetes takes a terminating pod out of the endpoints and gives it
    its termination grace period to drain."""
    kubernetes_events: bool
    """The rollout's events are recorded as Kubernetes Events on the target (as Flagger does),
    so they go to the notify activity even when the spec has no alerts."""


TRAITS = {
    "Deployment": TargetTraits(
        primary_replaced_in_place=False, route_settle_seconds=0.0, kubernetes_events=True
    ),
    LOCAL_KIND: TargetTraits(
        primary_replaced_in_place=True, route_settle_seconds=3.0, kubernetes_events=False
    ),
}
"""One entry per target kind coalmine runs (the loader refuses others; see `canary.providers`)."""


def traits(canary: Canary) -> TargetTraits:
    """The traits of the spec's target kind (the loader accepts no other kinds)."""
    return TRAITS[canary.spec.target_ref.kind]
