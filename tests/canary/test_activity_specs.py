"""What each activity gets of the spec: the parts it reads, as a `Canary` an activity
deserializes like a whole spec."""

from canary import contract
from canary.activity_specs import for_notify, for_observe, for_target, for_webhooks
from canary.spec import Canary, WebhookType

SPEC = {
    "apiVersion": "flagger.app/v1beta1",
    "kind": "Canary",
    "metadata": {
        "name": "podinfo",
        "namespace": "test",
        "labels": {"team": "a"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x" * 5000},
    },
    "spec": {
        "provider": "traefik",
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
        "progressDeadlineSeconds": 120,
        "service": {"port": 9898, "targetPort": "http", "unknownServiceKey": "y" * 1000},
        "analysis": {
            "interval": "30s",
            "threshold": 4,
            "iterations": 5,
            "match": [{"headers": {"x-canary": {"exact": "insider"}}}],
            "metrics": [
                {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "1m"}
            ],
            "webhooks": [
                {"name": "gate", "type": "confirm-promotion", "url": "http://hooks/gate"},
                {"name": "smoke", "type": "rollout", "url": "http://hooks/smoke"},
                {"name": "load", "type": "pre-rollout", "url": "http://hooks/load"},
                {"name": "stop", "type": "rollback", "url": "http://hooks/stop"},
                {"name": "audit", "type": "event", "url": "http://hooks/audit"},
            ],
            "alerts": [{"name": "on-call", "severity": "error", "providerRef": {"name": "pd"}}],
        },
        "traefik": {"configFile": "/tmp/dynamic.yaml"},
        "someFutureField": {"big": "z" * 5000},
    },
}


def canary() -> Canary:
    return Canary.model_validate(SPEC)


def sent(spec: Canary) -> Canary:
    """The spec as an activity reads it: through the input's JSON."""
    request = contract.ReadinessRequest(canary=spec, primary=True)
    return contract.ReadinessRequest.model_validate_json(request.model_dump_json()).canary


def test_the_workload_activities_get_the_target_and_the_routing_only() -> None:
    whole = canary()
    slim = sent(for_target(whole))
    assert slim.metadata.name == "podinfo" and slim.metadata.namespace == "test"
    assert slim.spec.target_ref == whole.spec.target_ref
    assert slim.spec.service.port == 9898 and slim.spec.service.target_port == "http"
    assert slim.spec.provider == "traefik"
    assert slim.spec.traefik == whole.spec.traefik
    assert slim.spec.progress_deadline_seconds == 120
    assert slim.spec.analysis.match == whole.spec.analysis.match
    assert slim.spec.analysis.strategy == whole.spec.analysis.strategy
    assert slim.spec.analysis.interval == 30.0
    assert slim.spec.analysis.metrics == []
    assert slim.spec.analysis.webhooks == []
    assert slim.spec.analysis.alerts == []
    assert slim.metadata.annotations == {} and slim.metadata.labels == {}
    assert slim.spec.model_extra == {} and slim.spec.service.model_extra == {}
    assert len(slim.model_dump_json()) < len(whole.model_dump_json()) / 10


def test_call_webhooks_gets_the_hooks_of_its_kinds_only() -> None:
    slim = sent(for_webhooks(canary(), [WebhookType.CONFIRM_PROMOTION, WebhookType.ROLLBACK]))
    assert [hook.name for hook in slim.spec.analysis.webhooks] == ["gate", "stop"]
    assert slim.spec.analysis.metrics == []
    assert slim.target == "podinfo.test"


def test_observe_gets_the_metrics_and_the_hooks_it_calls() -> None:
    whole = canary()
    slim = sent(for_observe(whole))
    assert slim.spec.analysis.metrics == whole.spec.analysis.metrics
    assert [hook.name for hook in slim.spec.analysis.webhooks] == ["smoke", "stop"]
    assert slim.spec.analysis.alerts == []
    assert slim.spec.target_ref == whole.spec.target_ref
    assert slim.spec.analysis.interval == 30.0
    assert slim.metadata.annotations == {}


def test_notify_gets_the_alerts_and_the_event_hooks() -> None:
    whole = canary()
    slim = sent(for_notify(whole))
    assert slim.spec.analysis.alerts == whole.spec.analysis.alerts
    assert [hook.name for hook in slim.spec.analysis.webhooks] == ["audit"]
    assert slim.spec.analysis.metrics == []
    assert slim.target == "podinfo.test"
    assert slim.spec.target_ref == whole.spec.target_ref


def test_an_input_with_the_whole_spec_still_reads() -> None:
    """Rollouts started before send whole specs."""
    assert sent(canary()) == canary()
