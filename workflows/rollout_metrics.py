"""Per-rollout metrics, recorded by the workflow with `workflow.metric_meter()`.

The worker's Temporal runtime serves them on /metrics next to the SDK's own metrics (see
`worker.main.metrics_runtime`). The meter is replay safe: nothing is recorded while a workflow
replays its history, and recording adds no history events, so these calls never affect
determinism. The SDK adds the labels `namespace`, `task_queue` and `workflow_type` (and the
runtime `service_name`).

As they appear on /metrics (the worker's runtime adds `_total` to counters and the unit suffix):

- `coalmine_canary_status{target, status}` gauge: 1 for the current status (running,
  succeeded, failed), 0 for the other two
- `coalmine_canary_weight{target}` gauge: percent of traffic on the canary
- `coalmine_canary_failed_checks{target}` gauge: failed checks so far
- `coalmine_canary_metric_value{target, metric}` gauge: last value of each analysis metric
  (NaN when the metric had no value)
- `coalmine_canary_updated_timestamp_seconds{target}` gauge: workflow time of the last update
- `coalmine_rollout_duration_seconds{result}` histogram: start to verdict
- `coalmine_rollouts_total{target, result}` counter: rollouts ended, result succeeded or failed;
  both results are set to 0 while a rollout runs, so that `increase()` sees its first end

Gauges live in the process of the worker that ran the workflow task; with several workers a
rollout that moved between them leaves an older copy behind. `..._updated_timestamp_seconds`
tells which copy is current: the dashboard keeps, per target, the series of the instance with
the newest timestamp.
"""

import math
from dataclasses import dataclass

from temporalio import workflow
from temporalio.common import (
    MetricCounter,
    MetricGauge,
    MetricGaugeFloat,
    MetricHistogramFloat,
    MetricMeter,
)

from canary.spec import Canary
from canary.status import CanaryStatus, Phase

PREFIX = "coalmine_"
STATUS = f"{PREFIX}canary_status"
WEIGHT = f"{PREFIX}canary_weight"
FAILED_CHECKS = f"{PREFIX}canary_failed_checks"
METRIC_VALUE = f"{PREFIX}canary_metric_value"
UPDATED = f"{PREFIX}canary_updated_timestamp_seconds"
DURATION = f"{PREFIX}rollout_duration"
"""Unit `seconds`: /metrics shows `coalmine_rollout_duration_seconds`."""
ROLLOUTS = f"{PREFIX}rollouts"
"""A counter: /metrics shows `coalmine_rollouts_total`."""

RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
STATUSES = (RUNNING, SUCCEEDED, FAILED)


def status_label(phase: Phase) -> str:
    """running, succeeded or failed: the three values of the `status` label."""
    if phase == Phase.SUCCEEDED:
        return SUCCEEDED
    if phase == Phase.FAILED:
        return FAILED
    return RUNNING


@dataclass(frozen=True)
class _Instruments:
    status: MetricGauge
    weight: MetricGauge
    failed_checks: MetricGauge
    metric_value: MetricGaugeFloat
    updated: MetricGaugeFloat
    rollouts: MetricCounter
    duration: MetricHistogramFloat

    @classmethod
    def create(cls, meter: MetricMeter) -> "_Instruments":
        return cls(
            status=meter.create_gauge(STATUS, "1 for the rollout's current status, else 0"),
            weight=meter.create_gauge(WEIGHT, "Percent of traffic routed to the canary"),
            failed_checks=meter.create_gauge(FAILED_CHECKS, "Failed checks of the rollout"),
            metric_value=meter.create_gauge_float(
                METRIC_VALUE, "Last value of each analysis metric (NaN: no value)"
            ),
            updated=meter.create_gauge_float(
                UPDATED, "Workflow time of the last update of the rollout's gauges (Unix time)"
            ),
            rollouts=meter.create_counter(ROLLOUTS, "Rollouts that ended, by result"),
            duration=meter.create_histogram_float(
                DURATION, "Time from the start of a rollout to its verdict", "seconds"
            ),
        )


class RolloutMetrics:
    """The metrics of one rollout: create and call it in workflow code only."""

    def __init__(self, canary: Canary) -> None:
        self._target = f"{canary.metadata.namespace}/{canary.metadata.name}"
        """Like the CanaryTarget search attribute."""
        self._created: _Instruments | None = None
        self._finished = False

    def publish(self, status: CanaryStatus) -> None:
        """Set every gauge from the status (and keep both results of the counter present)."""
        metrics = self._instruments()
        attributes = {"target": self._target}
        current = status_label(status.phase)
        for label in STATUSES:
            metrics.status.set(int(label == current), {**attributes, "status": label})
        for result in (SUCCEEDED, FAILED):
            metrics.rollouts.add(0, {**attributes, "result": result})
        metrics.weight.set(status.canary_weight, attributes)
        metrics.failed_checks.set(status.failed_checks, attributes)
        for metric in status.metrics:
            value = math.nan if metric.value is None else metric.value
            metrics.metric_value.set(value, {**attributes, "metric": metric.name})
        metrics.updated.set(workflow.now().timestamp(), attributes)

    def finish(self, status: CanaryStatus) -> None:
        """Publish the final status; count the rollout and record its duration, once."""
        self.publish(status)
        if self._finished:
            return
        self._finished = True
        metrics = self._instruments()
        result = status_label(status.phase)
        metrics.rollouts.add(1, {"target": self._target, "result": result})
        elapsed = workflow.now() - workflow.info().workflow_start_time
        metrics.duration.record(max(elapsed.total_seconds(), 0.0), {"result": result})

    def _instruments(self) -> _Instruments:
        if self._created is None:
            self._created = _Instruments.create(workflow.metric_meter())
        return self._created
