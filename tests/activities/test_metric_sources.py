"""MetricTemplates and their Secrets as the worker reads them: the observe activity against
kmock (holding the templates and Secrets) and local servers answering as Datadog and a
Prometheus behind authentication do. Credentials reach the server and nothing else."""

import base64
import binascii
import concurrent.futures
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.alerts import AlertProviders
from activities.errors import MetricsUnavailableError
from activities.metric_sources import MetricSources
from activities.notify import NotifyActivities
from activities.rollout import RolloutActivities
from activities.scope import WorkerScope
from canary import contract, loader
from canary.spec import Canary
from canary.status import MetricObservation, Phase
from starter.verdict import final_status
from tests.support.hostile_http import vector
from tests.support.kube import ServedEmulator, kube_fixture, podinfo_deployment  # noqa: F401
from tests.support.metrics_api import MetricsApi, SeenRequest, self_signed_certificate
from tests.support.net import free_port
from worker.main import ACTIVITY_THREADS, build_worker, rollout_activities
from workflows.canary_workflow import CanaryWorkflow

TEMPLATES = "flagger.app/v1beta1/metrictemplates"
SECRETS = "v1/secrets"
DEPLOYMENTS = "apps/v1/deployments"
NAMESPACE = "test"
API_KEY = "dd-api-key-5f0c1e2d3c4b5a69"
APPLICATION_KEY = "dd-app-key-0a1b2c3d4e5f6a7b"
QUERY = "avg:trace.http.request.duration{service:{{ target }}-canary}"
CLOSED = "http://127.0.0.1:1"


def datadog(request: SeenRequest) -> tuple[int, Any]:
    """Datadog's query API: 80.5 with the right keys, 403 with others."""
    keys = (request.headers.get("dd-api-key"), request.headers.get("dd-application-key"))
    if keys != (API_KEY, APPLICATION_KEY):
        return 403, {"errors": ["Forbidden"]}
    series = {"metric": "trace.http.request.duration", "pointlist": [[1.7e12, 80.5]]}
    return 200, {"status": "ok", "res_type": "time_series", "series": [series]}


@pytest.fixture
def datadog_api() -> Iterator[MetricsApi]:
    with MetricsApi(datadog) as api:
        yield api


def secret(name: str, namespace: str = NAMESPACE, **data: str) -> dict[str, Any]:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": encoded,
    }


def template(
    name: str, provider: dict[str, Any], query: str = QUERY, namespace: str = NAMESPACE
) -> dict[str, Any]:
    return {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "MetricTemplate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"provider": provider, "query": query},
    }


def datadog_template(address: str, query: str = QUERY) -> dict[str, Any]:
    provider = {"type": "datadog", "address": address, "secretRef": {"name": "datadog"}}
    return template("latency", provider, query)


def datadog_secret(**data: str) -> dict[str, Any]:
    keys = {"datadog_api_key": API_KEY, "datadog_application_key": APPLICATION_KEY}
    return secret("datadog", **{**keys, **data})


def seed(kube: ServedEmulator, namespace: str = NAMESPACE) -> None:
    ready = {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
    for name in ("podinfo", "podinfo-primary"):
        deployment = podinfo_deployment(namespace=namespace, name=name)
        kube.put(DEPLOYMENTS, {**deployment, "status": ready})


def canary(ref: dict[str, str], namespace: str = NAMESPACE) -> Canary:
    return Canary.model_validate(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": namespace},
            "spec": {
                "provider": "istio",
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                "service": {"port": 9898},
                "analysis": {
                    "interval": "1m",
                    "maxWeight": 50,
                    "stepWeight": 50,
                    "metrics": [
                        {
                            "name": "latency",
                            "templateRef": ref,
                            "thresholdRange": {"max": 500},
                            "interval": "5m",
                        }
                    ],
                },
            },
        }
    )


async def observe(
    kube: ServedEmulator, spec: Canary, scope: WorkerScope | None = None
) -> MetricObservation:
    activities = RolloutActivities(lambda: kube.api, CLOSED, scope)
    request = contract.ObserveRequest(canary=spec, phase=Phase.PROGRESSING)
    observation = await ActivityEnvironment().run(activities.observe, request)
    [metric] = observation.metrics
    for key in (API_KEY, APPLICATION_KEY):
        assert key not in observation.model_dump_json()
        assert key not in request.model_dump_json()
    return metric


async def test_a_cluster_template_and_its_secret_are_read_at_each_observation(
    kube: ServedEmulator, datadog_api: MetricsApi
) -> None:
    seed(kube)
    kube.put(TEMPLATES, datadog_template(datadog_api.url))
    kube.put(SECRETS, datadog_secret())
    spec = canary({"name": "latency"})

    first = await observe(kube, spec)
    kube.put(TEMPLATES, datadog_template(datadog_api.url, "avg:other{*}"))
    second = await observe(kube, spec)

    assert (first.value, first.error) == (80.5, None)
    assert (second.value, second.error) == (80.5, None)
    queries = [request.param("query") for request in datadog_api.requests]
    assert queries == ["avg:trace.http.request.duration{service:podinfo-canary}", "avg:other{*}"]
    window = [
        int(request.param("to")) - int(request.param("from")) for request in datadog_api.requests
    ]
    assert window == [300, 300]


@pytest.mark.parametrize(
    ("objects", "message"),
    [
        pytest.param([datadog_secret()], "not found in the cluster", id="no-template"),
        pytest.param(
            [template("latency", {"type": "datadog", "secretRef": {"name": "datadog"}}, "")],
            "spec.query is required",
            id="no-query",
        ),
        pytest.param(
            [template("latency", {"type": "cloudwatch"})],
            "spec.provider.type: provider 'cloudwatch' is not supported by coalmine yet",
            id="flagger-only-type",
        ),
        pytest.param(
            [template("latency", {"type": "datadog"})],
            "spec.provider.secretRef: required with provider 'datadog'",
            id="no-secret-ref",
        ),
        pytest.param(
            ["template"],
            "spec.provider.secretRef: Secret test/datadog not found",
            id="no-secret",
        ),
        pytest.param(
            ["template", secret("datadog", datadog_api_key=API_KEY)],
            "Secret test/datadog has no key 'datadog_application_key' (datadog needs "
            "datadog_api_key and datadog_application_key)",
            id="no-key",
        ),
        pytest.param(
            ["template", datadog_secret(datadog_application_key="revoked-app-key-000")],
            "datadog rejected the credentials (status 403)",
            id="rejected",
        ),
    ],
)
async def test_what_is_wrong_with_a_template_is_a_failed_check_naming_it(
    kube: ServedEmulator, datadog_api: MetricsApi, objects: list[Any], message: str
) -> None:
    seed(kube)
    for item in objects:
        if item == "template":
            kube.put(TEMPLATES, datadog_template(datadog_api.url))
        else:
            kube.put(TEMPLATES if item["kind"] == "MetricTemplate" else SECRETS, item)

    metric = await observe(kube, canary({"name": "latency"}))

    assert metric.value is None
    assert metric.error is not None
    assert metric.error.startswith(f"MetricTemplate test/latency: {message}"), metric.error


async def test_a_server_that_echoes_the_keys_gets_them_redacted(kube: ServedEmulator) -> None:
    """Some APIs quote what they were sent in their errors: the observation must not."""

    def echoing(request: SeenRequest) -> tuple[int, Any]:
        return 400, {"errors": [f"bad query with key {request.headers['dd-api-key']}"]}

    seed(kube)
    kube.put(SECRETS, datadog_secret())
    with MetricsApi(echoing) as api:
        kube.put(TEMPLATES, datadog_template(api.url))
        metric = await observe(kube, canary({"name": "latency"}))

    assert metric.error is not None
    assert "bad query with key ***" in metric.error


async def test_a_template_outside_the_workers_namespaces_is_refused(
    kube: ServedEmulator, datadog_api: MetricsApi
) -> None:
    seed(kube)
    kube.put(
        TEMPLATES,
        {
            **datadog_template(datadog_api.url),
            "metadata": {"name": "latency", "namespace": "monitoring"},
        },
    )
    scope = WorkerScope(namespaces=frozenset({NAMESPACE}))

    metric = await observe(kube, canary({"name": "latency", "namespace": "monitoring"}), scope)

    assert metric.error is not None
    assert metric.error.startswith(
        "MetricTemplate monitoring/latency: spec.analysis.metrics.templateRef: this worker may "
        "not touch Kubernetes namespace 'monitoring'"
    )
    assert datadog_api.requests == []


async def test_a_template_the_worker_may_not_read_names_the_permission(
    kube: ServedEmulator, datadog_api: MetricsApi
) -> None:
    seed(kube)
    kube.put(TEMPLATES, datadog_template(datadog_api.url))
    kube.refuse("get", TEMPLATES)

    metric = await observe(kube, canary({"name": "latency"}))

    assert metric.error is not None
    assert metric.error.startswith(
        "MetricTemplate test/latency: RBAC refusal: not allowed to get "
        "metrictemplates.flagger.app in namespace test"
    )


def test_an_unreachable_kubernetes_api_leaves_the_metric_unavailable() -> None:
    unreachable = kubernetes.client.ApiClient(
        kubernetes.client.Configuration(host=f"http://127.0.0.1:{free_port()}")
    )
    sources = MetricSources(lambda: unreachable, WorkerScope(), CLOSED)
    spec = canary({"name": "latency"})

    with pytest.raises(MetricsUnavailableError) as raised:
        sources.resolve(spec, spec.spec.analysis.metrics[0])

    assert str(raised.value).startswith(
        "cannot read MetricTemplate test/latency from the Kubernetes API: "
    )


def readable(value: Any) -> str:
    """Every string of a history's JSON, and each one that is a base64 payload decoded."""
    if isinstance(value, dict):
        return "\n".join(readable(item) for item in value.values())
    if isinstance(value, list):
        return "\n".join(readable(item) for item in value)
    if not isinstance(value, str):
        return str(value)
    try:
        return value + "\n" + base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return value


IN_FILE = """
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {name: success, namespace: test}
spec:
  provider:
    type: prometheus
    address: ADDRESS
    secretRef: {name: prom-auth}
    headers: {X-Scope-OrgID: [team-a]}
    insecureSkipVerify: INSECURE
  query: sum(rate(requests{namespace="{{ namespace }}"}[{{ interval }}]))
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  provider: istio
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
  analysis:
    interval: 1m
    stepWeight: 50
    maxWeight: 50
    metrics:
      - name: success
        templateRef: {name: success}
        thresholdRange: {min: 99}
"""
PASSWORD = "prom-password-1234"


@pytest.mark.parametrize("insecure", [True, False])
async def test_a_template_in_the_file_reads_its_secret_and_may_skip_tls_checks(
    kube: ServedEmulator, tmp_path: Path, insecure: bool
) -> None:
    """A Prometheus behind basic authentication on HTTPS with a certificate nobody trusts."""
    seed(kube)
    kube.put(SECRETS, secret("prom-auth", username="flagger", password=PASSWORD))
    with MetricsApi(
        lambda request: (200, vector("99.5")), self_signed_certificate(tmp_path)
    ) as api:
        text = IN_FILE.replace("ADDRESS", api.url).replace("INSECURE", str(insecure).lower())
        spec = loader.load_canary(text).canary
        assert PASSWORD not in spec.model_dump_json()
        metric = await observe(kube, spec)

    if insecure:
        assert (metric.value, metric.error) == (99.5, None)
        [request] = api.requests
        expected = base64.b64encode(f"flagger:{PASSWORD}".encode()).decode()
        assert request.headers["authorization"] == f"Basic {expected}"
        assert request.headers["x-scope-orgid"] == "team-a"
        assert request.param("query") == 'sum(rate(requests{namespace="test"}[1m]))'
    else:
        assert api.requests == []
        assert metric.error is not None
        assert metric.error.endswith("tls: certificate_verify_failed")


async def test_credentials_stay_out_of_the_rollouts_history(
    time_skipping_env: WorkflowEnvironment, kube: ServedEmulator, datadog_api: MetricsApi
) -> None:
    """A whole rollout judged on a cluster template: the server got the keys on every
    analysis step; the workflow's input, result and history hold the Secret's name only."""
    seed(kube)
    kube.put(TEMPLATES, datadog_template(datadog_api.url))
    kube.put(SECRETS, datadog_secret())
    rollout = RolloutActivities(lambda: kube.api, CLOSED)
    notify = NotifyActivities(AlertProviders.from_environment({}), lambda: kube.api)
    queue = f"metrics-{uuid.uuid4()}"
    spec = canary({"name": "latency"})
    with concurrent.futures.ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        async with build_worker(
            time_skipping_env.client,
            rollout_activities(rollout, notify),
            executor,
            task_queue=queue,
        ):
            handle = await time_skipping_env.client.start_workflow(
                CanaryWorkflow.run,
                contract.RolloutRequest(canary=spec, image="ghcr.io/stefanprodan/podinfo:6.1.0"),
                id=f"{spec.workflow_id}-{uuid.uuid4()}",
                task_queue=queue,
            )
            status = await final_status(handle)
            history = readable(json.loads((await handle.fetch_history()).to_json()))

    assert status.phase == Phase.SUCCEEDED
    assert [metric.value for metric in status.metrics] == [80.5]
    assert datadog_api.requests
    assert all(request.headers["dd-api-key"] == API_KEY for request in datadog_api.requests)
    assert "80.5" in history and '"templateRef":{"name":"latency"' in history
    for key in (API_KEY, APPLICATION_KEY):
        assert key not in history
        assert base64.b64encode(key.encode()).decode() not in history
