"""Search attributes a rollout keeps current, for filters in the Web UI and `coalmine list`.

A server must know them first: `temporal operator search-attribute create --name CanaryTarget
--type Keyword` and so on (the dev server takes `--search-attribute Name=Type` at start).
"""

from temporalio.common import SearchAttributeKey

TARGET = SearchAttributeKey.for_keyword("CanaryTarget")
"""`namespace/name` of the Canary."""
PHASE = SearchAttributeKey.for_keyword("CanaryPhase")
WEIGHT = SearchAttributeKey.for_int("CanaryWeight")
FAILED_CHECKS = SearchAttributeKey.for_int("CanaryFailedChecks")
IMAGE = SearchAttributeKey.for_keyword("CanaryImage")

REGISTRATION = (
    (TARGET, "Keyword"),
    (PHASE, "Keyword"),
    (WEIGHT, "Int"),
    (FAILED_CHECKS, "Int"),
    (IMAGE, "Keyword"),
)
"""Each key with the type it is registered under."""
