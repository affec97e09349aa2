"""The whole Kubernetes path: CanaryWorkflow with the real activities, on the time-skipping
server, against kmock (Deployments, Services, Istio objects), a real Prometheus scraping
Istio-named metrics, and a local webhook receiver. Assertions are on the stored objects."""

import asyncio
import concurrent.futures
import contextlib
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import kubernetes
import pytest
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.alerts import AlertProviders
from activities.kubernetes_target import template_revision
from activities.notify import NotifyActivities
from activities.rollout import RolloutActivities
from canary import contract
from canary.decision import StepObservation
from canary.spec import Canary, Webhook
from canary.status import CanaryStatus, Phase
from starter.verdict import final_status
from tests.support.exporter import MetricsExporter
from tests.support.hostile_http import ODDITIES, HostileServer, vector
from tests.support.kube import ServedEmulator, kube_fixture, podinfo_deployment  # noqa: F401
from tests.support.net import free_port
from tests.support.prometheus import RunningPrometheus, running_prometheus, static_scrape_config
from tests.support.webhook_receiver import Receiver, receiver_fixture  # noqa: F401
from worker.main import ACTIVITY_THREADS, build_worker, rollout_activities
from workflows.canary_workflow import CanaryWorkflow

DEPLOYMENTS = "apps/v1/deployments"
VIRTUAL_SERVICES = "networking.istio.io/v1beta1/virtualservices"
NEW_IMAGE = "ghcr.io/stefanprodan/podinfo:6.1.0"


def istio_labels(workload: str, namespace: str, code: str) -> dict[str, str]:
    return {
        "reporter": "destination",
        "destination_workload_namespace": namespace,
        "destination_workload": workload,
        "response_code": code,
    }


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPrometheus]:
    """`healthy` answers 99.5% non-5xx in 40 ms; `broken` 70% in 40 ms."""
    exporter = MetricsExporter()
    for namespace, good, bad in (("healthy", 199.0, 1.0), ("broken", 70.0, 30.0)):
        exporter.set_rate("istio_requests_total", istio_labels("podinfo", namespace, "200"), good)
        exporter.set_rate("istio_requests_total", istio_labels("podinfo", namespace, "503"), bad)
        labels = istio_labels("podinfo", namespace, "200")
        del labels["response_code"]
        exporter.set_histogram("istio_request_duration_milliseconds", labels, 100.0, {50.0: 1.0})
    with (
        exporter,
        running_prometheus(
            tmp_path_factory.mktemp("prometheus"),
            [static_scrape_config("istio", [exporter.target])],
        ) as running,
    ):
        running.wait_for('count_over_time(istio_requests_total{response_code="503"}[1m]) >= 3')
        yield running


def seed(kube: ServedEmulator, namespace: str) -> None:
    """A target and an older primary, both reporting ready (there is no controller)."""
    ready = {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
    target = podinfo_deployment(namespace=namespace)
    primary = podinfo_deployment(namespace=namespace, name="podinfo-primary")
    for deployment in (target, primary):
        kube.put(DEPLOYMENTS, {**deployment, "status": ready})


def canary(namespace: str, hook_url: str, metrics_server: str) -> Canary:
    return Canary.model_validate(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": namespace},
            "spec": {
                "provider": "istio",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898, "targetPort": 9898, "hosts": ["app.example.com"]},
                "analysis": {
                    "interval": "1m",
                    "threshold": 2,
                    "maxWeight": 30,
                    "stepWeight": 10,
                    "metricsServer": metrics_server,
                    "metrics": [
                        {"name": "request-success-rate", "thresholdRange": {"min": 99}},
                        {"name": "request-duration", "thresholdRange": {"max": 500}},
                    ],
                    "webhooks": [{"name": "load-test", "url": f"{hook_url}/ok"}],
                },
            },
        }
    )


async def roll_out(env: WorkflowEnvironment, kube: ServedEmulator, spec: Canary) -> CanaryStatus:
    rollout = RolloutActivities(lambda: kube.api, "http://127.0.0.1:1")
    notify = NotifyActivities(AlertProviders.from_environment({}), lambda: kube.api)
    queue = f"rollout-{uuid.uuid4()}"
    activities = rollout_activities(rollout, notify)
    with concurrent.futures.ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        async with build_worker(env.client, activities, executor, task_queue=queue):
            handle = await env.client.start_workflow(
                CanaryWorkflow.run,
                contract.RolloutRequest(canary=spec, image=NEW_IMAGE),
                id=f"{spec.workflow_id}-{uuid.uuid4()}",
                task_queue=queue,
            )
            return await final_status(handle)


def routes(kube: ServedEmulator, namespace: str) -> dict[str, int]:
    service = kube.get(VIRTUAL_SERVICES, namespace, "podinfo")
    [http] = service["spec"]["http"]
    return {item["destination"]["host"]: item["weight"] for item in http["route"]}


def image(kube: ServedEmulator, namespace: str, name: str) -> str:
    deployment = kube.get(DEPLOYMENTS, namespace, name)
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return str(container["image"])


async def test_healthy_rollout_promotes_the_new_image_to_the_primary(
    time_skipping_env: WorkflowEnvironment,
    kube: ServedEmulator,
    prometheus: RunningPrometheus,
    receiver: Receiver,
) -> None:
    seed(kube, "healthy")
    result = await roll_out(
        time_skipping_env, kube, canary("healthy", receiver.url, prometheus.address)
    )
    assert result.phase == Phase.SUCCEEDED, result.events
    assert routes(kube, "healthy") == {"podinfo-primary": 100, "podinfo-canary": 0}
    assert image(kube, "healthy", "podinfo-primary") == NEW_IMAGE
    assert kube.get(DEPLOYMENTS, "healthy", "podinfo")["spec"]["replicas"] == 0
    success = next(m for m in result.metrics if m.name == "request-success-rate")
    assert success.value == pytest.approx(99.5, abs=0.01)
    duration = next(m for m in result.metrics if m.name == "request-duration")
    assert duration.value == pytest.approx(49.5, abs=0.5)
    advances = [e.message for e in result.events if e.message.startswith("Advance")]
    assert advances == [f"Advance podinfo.healthy canary weight {w}" for w in (10, 20, 30)]
    assert len(receiver.bodies) == 3
    assert {body["name"] for body in receiver.bodies} == {"podinfo"}
    recorded = kubernetes.client.CoreV1Api(kube.api).list_namespaced_event("healthy").items
    assert [(e.reason, e.type, e.involved_object.name) for e in recorded][-1] == (
        "Synced",
        "Normal",
        "podinfo",
    )
    started = "Starting canary analysis for podinfo.healthy"
    promoted = "Promotion completed! Scaling down podinfo.healthy"
    assert sorted(e.message or "" for e in recorded) == sorted([started, *advances, promoted])
    assert {body["phase"] for body in receiver.bodies} == {"Progressing"}


async def test_failing_rollout_leaves_the_primary_and_routes_everything_to_it(
    time_skipping_env: WorkflowEnvironment,
    kube: ServedEmulator,
    prometheus: RunningPrometheus,
    receiver: Receiver,
) -> None:
    seed(kube, "broken")
    old_image = image(kube, "broken", "podinfo-primary")
    result = await roll_out(
        time_skipping_env, kube, canary("broken", receiver.url, prometheus.address)
    )
    assert result.phase == Phase.FAILED
    assert result.failed_checks == 2
    assert routes(kube, "broken") == {"podinfo-primary": 100, "podinfo-canary": 0}
    assert image(kube, "broken", "podinfo-primary") == old_image
    assert image(kube, "broken", "podinfo") == NEW_IMAGE
    assert kube.get(DEPLOYMENTS, "broken", "podinfo")["spec"]["replicas"] == 0
    halts = [e.message for e in result.events if e.message.startswith("Halt")]
    assert halts == ["Halt podinfo.broken advancement success rate 70.00% < 99%"] * 2


async def test_a_failed_promotion_step_gives_the_primary_its_old_template_back(
    time_skipping_env: WorkflowEnvironment,
    kube: ServedEmulator,
    prometheus: RunningPrometheus,
    receiver: Receiver,
) -> None:
    """stepWeightPromotion: the rollout hook fails once the primary runs the new version."""
    seed(kube, "healthy")
    old_image = image(kube, "healthy", "podinfo-primary")
    spec = canary("healthy", receiver.url, prometheus.address)
    analysis = spec.spec.analysis.model_copy(
        update={
            "step_weight_promotion": 50,
            "webhooks": [Webhook(name="load-test", url=f"{receiver.url}/fail-while-promoting")],
        }
    )
    spec = spec.model_copy(update={"spec": spec.spec.model_copy(update={"analysis": analysis})})

    result = await roll_out(time_skipping_env, kube, spec)

    assert result.phase == Phase.FAILED, result.events
    assert result.reason == "Rolling back podinfo.healthy failed checks threshold reached 2"
    messages = [event.message for event in result.events]
    copied = messages.index("Copying podinfo.healthy template spec to podinfo-primary.healthy")
    restoring = messages.index(
        "Restoring podinfo-primary.healthy to its template from before the rollout of "
        "podinfo.healthy"
    )
    assert copied < restoring
    assert image(kube, "healthy", "podinfo-primary") == old_image
    assert image(kube, "healthy", "podinfo") == NEW_IMAGE
    assert routes(kube, "healthy") == {"podinfo-primary": 100, "podinfo-canary": 0}
    assert kube.get(DEPLOYMENTS, "healthy", "podinfo")["spec"]["replicas"] == 0
    phases = [body["phase"] for body in receiver.bodies]
    assert phases.count("Promoting") == 2


async def test_observe_reports_unreachable_metrics_and_hooks_as_observations(
    kube: ServedEmulator,
) -> None:
    seed(kube, "x")
    closed = f"http://127.0.0.1:{free_port()}"
    activities = RolloutActivities(lambda: kube.api, closed)
    request = contract.ObserveRequest(canary=canary("x", closed, closed), phase=Phase.PROGRESSING)
    observation = await ActivityEnvironment().run(activities.observe, request)
    assert observation.canary_ready
    assert [hook.ok for hook in observation.webhooks] == [False]
    assert "connection refused" in observation.webhooks[0].message
    assert [metric.value for metric in observation.metrics] == [None, None]
    for metric in observation.metrics:
        assert metric.error == f"metrics unavailable: prometheus at {closed}: connection refused"


async def test_observe_reads_the_canary_first_and_skips_the_analysis_when_it_changed(
    kube: ServedEmulator, receiver: Receiver
) -> None:
    """Not ready, or no longer the revision under analysis: no hook is called, no metric read."""
    seed(kube, "changed")
    closed = f"http://127.0.0.1:{free_port()}"
    activities = RolloutActivities(lambda: kube.api, closed)
    spec = canary("changed", receiver.url, closed)
    revision = template_revision(kube.get(DEPLOYMENTS, "changed", "podinfo")["spec"]["template"])
    current = contract.ObserveRequest(canary=spec, phase=Phase.PROGRESSING, checksum=revision)
    observation = await ActivityEnvironment().run(activities.observe, current)
    assert (observation.canary_ready, observation.canary_revision) == (True, revision)
    assert len(observation.metrics) == 2
    calls = len(receiver.bodies)

    older = current.model_copy(update={"checksum": "an-older-revision"})
    observation = await ActivityEnvironment().run(activities.observe, older)
    assert observation.canary_revision == revision
    assert (observation.webhooks, observation.metrics) == ([], [])

    deployment = kube.get(DEPLOYMENTS, "changed", "podinfo")
    kube.set_status(DEPLOYMENTS, "changed", "podinfo", {**deployment["status"], "readyReplicas": 1})
    observation = await ActivityEnvironment().run(activities.observe, current)
    assert not observation.canary_ready
    assert "1 of 2 replicas ready" in observation.canary_readiness
    assert (observation.webhooks, observation.metrics) == ([], [])
    assert len(receiver.bodies) == calls

    absent = current.model_copy(update={"canary": canary("absent", receiver.url, closed)})
    observation = await ActivityEnvironment().run(activities.observe, absent)
    assert not observation.canary_ready
    assert observation.canary_readiness.startswith("cannot read the canary: ")


def canary_measuring(namespace: str, servers: Sequence[str]) -> Canary:
    """A Canary whose metric `m<i>` is a custom query on Prometheus `servers[i]`."""
    metrics = [
        {"name": f"m{i}", "query": "up", "metricsServer": server, "thresholdRange": {"min": 1}}
        for i, server in enumerate(servers)
    ]
    return Canary.model_validate(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": namespace},
            "spec": {
                "provider": "istio",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898},
                "analysis": {"interval": "1m", "metrics": metrics},
            },
        }
    )


async def test_observe_reports_http_oddities_as_unavailable_metrics(kube: ServedEmulator) -> None:
    """Redirect loops, HTML, 1 GiB, drips and odd JSON: each one metric's error, no exception."""
    seed(kube, "odd")
    activities = RolloutActivities(
        lambda: kube.api, "http://127.0.0.1:1", metrics_timeout_seconds=1
    )
    with HostileServer() as server:
        spec = canary_measuring("odd", [f"{server.url}{path}" for path, _, _ in ODDITIES])
        request = contract.ObserveRequest(canary=spec, phase=Phase.PROGRESSING)
        observation = await asyncio.wait_for(activities.observe(request), timeout=120)

    assert [metric.name for metric in observation.metrics] == [f"m{i}" for i in range(10)]
    for metric, (_, _, message) in zip(observation.metrics, ODDITIES, strict=True):
        assert metric.value is None
        assert metric.error is not None and message in metric.error, metric


SLOW_SERVERS = 8
SLOW_ATTEMPTS = 8
"""Observations of the slow rollout running at once: attempts that time out and are retried
pile up like this, and so do rollouts of one team that share its slow servers."""


async def test_slow_metrics_servers_of_one_rollout_do_not_hold_up_another(
    kube: ServedEmulator,
) -> None:
    """One rollout names 8 metrics servers that drip their answers; another rollout's
    observation beside it finishes with its values while the slow ones still wait."""
    deadline = 5.0
    for namespace in ("slow", "quick"):
        seed(kube, namespace)
    activities = RolloutActivities(
        lambda: kube.api, "http://127.0.0.1:1", metrics_timeout_seconds=deadline
    )
    with contextlib.ExitStack() as stack:
        slow_servers = [stack.enter_context(HostileServer()) for _ in range(SLOW_SERVERS)]
        healthy_server = stack.enter_context(HostileServer())
        healthy_server.json_bodies = {"rate": vector("99.5")}
        slow = canary_measuring("slow", [f"{s.url}/drip" for s in slow_servers])
        healthy = canary_measuring("quick", [f"{healthy_server.url}/json/rate"] * 2)
        finished: list[str] = []

        async def observe(label: str, spec: Canary) -> StepObservation:
            request = contract.ObserveRequest(canary=spec, phase=Phase.PROGRESSING)
            observation = await activities.observe(request)
            finished.append(label)
            return observation

        slow_tasks = [asyncio.create_task(observe("slow", slow)) for _ in range(SLOW_ATTEMPTS)]
        healthy_observation = await asyncio.wait_for(observe("healthy", healthy), timeout=120)
        slow_still_waiting = [not task.done() for task in slow_tasks]
        slow_observations = await asyncio.wait_for(asyncio.gather(*slow_tasks), timeout=120)

    assert [metric.value for metric in healthy_observation.metrics] == [99.5, 99.5]
    assert slow_still_waiting == [True] * SLOW_ATTEMPTS
    assert finished == ["healthy"] + ["slow"] * SLOW_ATTEMPTS
    for observation in slow_observations:
        assert [metric.value for metric in observation.metrics] == [None] * SLOW_SERVERS
        for metric in observation.metrics:
            assert metric.error is not None
            assert metric.error.endswith(f"timed out after {deadline:g}s")


async def test_observe_fills_ingress_and_asks_the_spec_metrics_server(
    kube: ServedEmulator, prometheus: RunningPrometheus
) -> None:
    """`{{ ingress }}` is `spec.ingressRef.name` (not the target), and `spec.metricsServer`
    (Flagger's field) is asked when the analysis names none: the worker's default is closed."""
    ready = {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
    frontend = podinfo_deployment(namespace="healthy", name="frontend")
    kube.put(DEPLOYMENTS, {**frontend, "status": ready})
    closed = f"http://127.0.0.1:{free_port()}"
    document = canary("healthy", closed, prometheus.address).model_dump(by_alias=True)
    del document["spec"]["analysis"]["metricsServer"]
    document["spec"]["metricsServer"] = prometheus.address
    document["spec"]["targetRef"]["name"] = "frontend"
    document["spec"]["ingressRef"] = {"name": "podinfo"}
    document["spec"]["analysis"]["webhooks"] = []
    document["spec"]["analysis"]["metrics"] = [
        {
            "name": "series",
            "query": (
                'count(istio_requests_total{destination_workload="{{ ingress }}",'
                ' destination_workload_namespace="{{ namespace }}"})'
            ),
        }
    ]
    request = contract.ObserveRequest(
        canary=Canary.model_validate(document), phase=Phase.PROGRESSING
    )
    observation = await ActivityEnvironment().run(
        RolloutActivities(lambda: kube.api, closed).observe, request
    )
    assert [(metric.value, metric.error) for metric in observation.metrics] == [(2.0, None)]
