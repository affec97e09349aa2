"""What the workflow must know about each kind of target to move traffic safely (pure data)."""

from dataclasses import dataclass

from canary.spec import LOCAL_KIND, Canary


@dataclass(frozen=True)
class TargetTraits:
    primary_replaced_in_place: bool
    """Promotion stops the primary before the new one runs (a LocalProcess on its fixed port),
    so the primary's share of traffic moves to the canary first. A Deployment's rolling
    update keeps the primary available instead."""


TRAITS = {
    "Deployment": TargetTraits(primary_replaced_in_place=False),
    LOCAL_KIND: TargetTraits(primary_replaced_in_place=True),
}

ROUTE_SETTLE_SECONDS = 3.0
"""How long a router takes to apply new weights (Traefik reloads its file, Envoy receives a
route): a workload that just lost its traffic keeps running this long before it stops."""


def traits(canary: Canary) -> TargetTraits:
    """The traits of the spec's target kind (the loader accepts no other kinds)."""
    return TRAITS[canary.spec.target_ref.kind]
