"""Event messages come out in Flagger's wording, naming the object `name.namespace`."""

from collections.abc import Callable

import pytest

from canary import messages
from canary.spec import Metric, ThresholdRange

TARGET = "podinfo.test"


def metric(name: str, low: float | None = None, high: float | None = None) -> Metric:
    return Metric(name=name, threshold_range=ThresholdRange(min=low, max=high), query="q")


SUCCESS_RATE = Metric(name="request-success-rate", threshold_range=ThresholdRange(min=99))
DURATION = Metric(name="request-duration", threshold_range=ThresholdRange(max=500))


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        # the examples written down in DESIGN.md
        (lambda: messages.advance_weight(TARGET, 20), "Advance podinfo.test canary weight 20"),
        (
            lambda: messages.halt_metric(TARGET, SUCCESS_RATE, 69.17),
            "Halt podinfo.test advancement success rate 69.17% < 99%",
        ),
        (
            lambda: messages.halt_no_values(TARGET, "request-duration"),
            "Halt advancement no values found for metric request-duration "
            "probably podinfo.test is not receiving traffic",
        ),
        (
            lambda: messages.rolling_back_threshold(TARGET, 5),
            "Rolling back podinfo.test failed checks threshold reached 5",
        ),
        (
            lambda: messages.promotion_completed(TARGET),
            "Promotion completed! Scaling down podinfo.test",
        ),
        # the rest of Flagger's lifecycle events
        (lambda: messages.starting(TARGET), "Starting canary analysis for podinfo.test"),
        (lambda: messages.new_revision(TARGET), "New revision detected! Scaling up podinfo.test"),
        (lambda: messages.initialization_done(TARGET), "Initialization done! podinfo.test"),
        (
            lambda: messages.advance_iteration(TARGET, 3, 10),
            "Advance podinfo.test canary iteration 3/10",
        ),
        (
            lambda: messages.copying_template(TARGET, "podinfo-primary.test"),
            "Copying podinfo.test template spec to podinfo-primary.test",
        ),
        (lambda: messages.canary_failed(TARGET), "Canary failed! Scaling down podinfo.test"),
        (
            lambda: messages.waiting_for_approval(TARGET, "start-gate"),
            "Halt podinfo.test advancement waiting for approval start-gate",
        ),
        (
            lambda: messages.waiting_for_traffic_approval(TARGET, "traffic-gate"),
            "Halt podinfo.test advancement waiting for traffic increase approval traffic-gate",
        ),
        (
            lambda: messages.waiting_for_promotion_approval(TARGET, "promotion-gate"),
            "Halt podinfo.test advancement waiting for promotion approval promotion-gate",
        ),
        (
            lambda: messages.halt_webhook(TARGET, "load-test", "status 500"),
            "Halt podinfo.test advancement external check load-test failed status 500",
        ),
        (
            lambda: messages.rolling_back_deadline(TARGET, "canary not ready"),
            "Rolling back podinfo.test progress deadline exceeded canary not ready",
        ),
        (
            lambda: messages.halt_metrics_unavailable(TARGET, "request-duration", "timeout"),
            "Halt podinfo.test advancement request-duration check failed: timeout",
        ),
        (
            lambda: messages.routing_mirror(TARGET, 50),
            "Mirroring 50% of the traffic to podinfo.test",
        ),
        (lambda: messages.routing_match(TARGET), "Routing matching requests to podinfo.test"),
    ],
)
def test_wording(make: Callable[[], str], expected: str) -> None:
    assert make() == expected


@pytest.mark.parametrize(
    ("checked", "value", "comparison"),
    [
        (SUCCESS_RATE, 69.17, "success rate 69.17% < 99%"),
        # Flagger's %.2f for a value under its minimum, the threshold as written
        (SUCCESS_RATE, 61.5, "success rate 61.50% < 99%"),
        (SUCCESS_RATE, 69.0, "success rate 69.00% < 99%"),
        # a value that would round onto its threshold keeps its digits
        (SUCCESS_RATE, 98.999, "success rate 98.999% < 99%"),
        (DURATION, 500.001, "request duration 500.001ms > 500ms"),
        (metric("request-success-rate", low=99.5), 99.25, "success rate 99.25% < 99.5%"),
        (DURATION, 600.0, "request duration 600ms > 500ms"),
        (DURATION, 612.5, "request duration 612.5ms > 500ms"),
        (DURATION, 1500.0, "request duration 1500ms > 500ms"),
        (metric("404s percentage", high=5), 5.5, "404s percentage 5.5 > 5"),
        (metric("404s percentage", high=5), 7.0, "404s percentage 7 > 5"),
        (metric("cpu", low=1.5), 0.5, "cpu 0.5 < 1.5"),
        (metric("cpu", low=1, high=2), 3.0, "cpu 3 > 2"),
        # small ratios keep two significant digits, so value and threshold never look equal
        (metric("error-ratio", high=0.01), 0.015, "error-ratio 0.015 > 0.01"),
        (metric("error-ratio", high=0.001), 0.0012, "error-ratio 0.0012 > 0.001"),
        (metric("apdex", low=0.95), 0.9449, "apdex 0.94 < 0.95"),
    ],
)
def test_halt_metric_value_formatting(checked: Metric, value: float, comparison: str) -> None:
    assert messages.halt_metric(TARGET, checked, value) == (
        f"Halt podinfo.test advancement {comparison}"
    )


def test_halt_metric_survives_an_infinite_value() -> None:
    # histogram_quantile answers +Inf when requests land in the last bucket
    message = messages.halt_metric(TARGET, DURATION, float("inf"))
    assert message.startswith("Halt podinfo.test advancement request duration +Inf")
    assert message.endswith("> 500ms")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (
            lambda: messages.halt_webhook(TARGET, "load-test", ""),
            "Halt podinfo.test advancement external check load-test failed",
        ),
        (
            lambda: messages.pre_rollout_failed(TARGET, "acceptance-test", ""),
            "Pre-rollout check acceptance-test failed for podinfo.test",
        ),
        (
            lambda: messages.pre_rollout_failed(TARGET, "acceptance-test", "status 503"),
            "Pre-rollout check acceptance-test failed for podinfo.test status 503",
        ),
        (lambda: messages.hook_failed("rollback", "notify", ""), "rollback hook notify failed"),
        (
            lambda: messages.hook_failed("post-rollout", "notify", "timed out"),
            "post-rollout hook notify failed timed out",
        ),
    ],
)
def test_empty_detail_leaves_no_trailing_space(make: Callable[[], str], expected: str) -> None:
    assert make() == expected


@pytest.mark.parametrize(
    "make",
    [
        lambda target: messages.starting(target),
        lambda target: messages.new_revision(target),
        lambda target: messages.advance_weight(target, 10),
        lambda target: messages.halt_metric(target, SUCCESS_RATE, 1.0),
        lambda target: messages.halt_no_values(target, "request-success-rate"),
        lambda target: messages.rolling_back_threshold(target, 1),
        lambda target: messages.rolling_back_abort(target, "bad build"),
        lambda target: messages.promotion_requested(target),
        lambda target: messages.paused(target),
        lambda target: messages.resumed(target),
        lambda target: messages.nothing_to_roll_out(target),
        lambda target: messages.routing_all_to_primary(target),
    ],
)
def test_every_event_names_the_object_on_one_line(make: Callable[[str], str]) -> None:
    message = make("frontend.shop")
    assert "frontend.shop" in message
    assert "\n" not in message
    assert message == message.strip()
