"""A kmock `KubernetesEmulator` served over real HTTP to the blocking `kubernetes` client.

    with served_emulator() as kube:
        kube.put(DEPLOYMENTS, podinfo_deployment())
        KubernetesTarget(kube.api, "test", "podinfo").initialize()
        assert kube.get(DEPLOYMENTS, "test", "podinfo-primary")["spec"]["replicas"] == 2

or take the `kube` fixture: import `kube_fixture` into a test module. The emulator runs on its own
event loop in a daemon thread, so blocking client calls work from sync tests and from inside
pytest-asyncio's loop alike. It is an in-memory store without a controller: tests write
`status` themselves (`set_status`) and read what the code stored (`get`).
"""

import asyncio
import contextlib
import copy
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import kmock
import kubernetes
import pytest

NAMESPACE = "test"
DEPLOYMENTS = "apps/v1/deployments"
SERVICES = "v1/services"
AUTOSCALERS = "autoscaling/v2/horizontalpodautoscalers"
VIRTUAL_SERVICES = "networking.istio.io/v1beta1/virtualservices"
DESTINATION_RULES = "networking.istio.io/v1beta1/destinationrules"

_WRITE_METHODS = frozenset(
    {kmock.method.POST, kmock.method.PUT, kmock.method.PATCH, kmock.method.DELETE}
)
_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class ServedEmulator:
    emulator: kmock.KubernetesEmulator
    api: kubernetes.client.ApiClient
    """A real client whose host is the emulator's URL."""
    url: str

    def put(self, resource: str, obj: Mapping[str, Any]) -> None:
        """Store `obj` as it is, keyed by its metadata (records no request)."""
        metadata = obj["metadata"]
        key = (kmock.resource(resource), metadata.get("namespace"), metadata["name"])
        self.emulator.objects[key] = copy.deepcopy(dict(obj))

    def exists(self, resource: str, namespace: str | None, name: str) -> bool:
        key = (kmock.resource(resource), namespace, name)
        return key in self.emulator.objects and not self.emulator.objects[key].deleted

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any]:
        """A copy of the object as stored now; KeyError when there is none."""
        if not self.exists(resource, namespace, name):
            raise KeyError(f"no {resource} {namespace}/{name} in the emulator")
        return copy.deepcopy(self.emulator.objects[kmock.resource(resource), namespace, name].raw)

    def set_status(
        self, resource: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> None:
        """Replace the object's status in place, as a controller would."""
        self.emulator.objects[kmock.resource(resource), namespace, name]["status"] = dict(status)

    def writes(self) -> int:
        """How many create/update/patch/delete requests the emulator has received so far."""
        return sum(1 for request in self.emulator if request.method in _WRITE_METHODS)

    def refuse(
        self, method: str, resource: str, status: int = 403, reason: str = "Forbidden"
    ) -> None:
        """Answer every later `method` request on `resource` with a Kubernetes Status error.

        The emulator still applies a refused create, patch or delete to its store.
        """
        error = kmock.KubernetesError(
            status=status, reason=reason, message=f"{method} {resource}: refused by the test"
        )
        self.emulator[method.lower(), kmock.resource(resource)] << error

    def unexpected_errors(self) -> list[Exception]:
        """Failures inside the emulator other than the Kubernetes errors it answers with."""
        return [
            error for error in self.emulator.errors if not isinstance(error, kmock.KubernetesError)
        ]


@contextlib.contextmanager
def served_emulator() -> Iterator[ServedEmulator]:
    """Serve a fresh emulator on a free 127.0.0.1 port; fail on exit if it broke internally."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="kmock-emulator", daemon=True)
    thread.start()
    stack = contextlib.AsyncExitStack()

    async def start() -> tuple[kmock.KubernetesEmulator, kmock.Server]:
        emulator = await stack.enter_async_context(kmock.KubernetesEmulator())
        server = await stack.enter_async_context(kmock.Server(emulator))
        return emulator, server

    try:
        future = asyncio.run_coroutine_threadsafe(start(), loop)
        emulator, server = future.result(timeout=_TIMEOUT_SECONDS)
        url = str(server.url)
        configuration = kubernetes.client.Configuration(host=url)
        with kubernetes.client.ApiClient(configuration) as api:
            served = ServedEmulator(emulator=emulator, api=api, url=url)
            yield served
            unexpected = served.unexpected_errors()
            if unexpected:
                raise AssertionError(f"the emulator failed internally: {unexpected!r}")
    finally:
        asyncio.run_coroutine_threadsafe(stack.aclose(), loop).result(timeout=_TIMEOUT_SECONDS)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=_TIMEOUT_SECONDS)
        loop.close()


@pytest.fixture(name="kube")
def kube_fixture() -> Iterator[ServedEmulator]:
    """A fresh served emulator per test; import `kube_fixture` and ask for `kube`."""
    with served_emulator() as served:
        yield served


def podinfo_deployment(
    namespace: str = NAMESPACE, name: str = "podinfo", replicas: int = 2
) -> dict[str, Any]:
    """A Deployment like Flagger's podinfo example."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": 3,
            "progressDeadlineSeconds": 60,
            "revisionHistoryLimit": 5,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}},
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name},
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9797"},
                },
                "spec": {
                    "containers": [
                        {
                            "name": "podinfod",
                            "image": "ghcr.io/stefanprodan/podinfo:6.0.0",
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["./podinfo", "--port=9898", "--port-metrics=9797"],
                            "ports": [
                                {"name": "http", "containerPort": 9898, "protocol": "TCP"},
                                {"name": "http-metrics", "containerPort": 9797, "protocol": "TCP"},
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/readyz", "port": 9898},
                                "initialDelaySeconds": 5,
                            },
                            "resources": {
                                "limits": {"cpu": "2000m", "memory": "512Mi"},
                                "requests": {"cpu": "100m", "memory": "64Mi"},
                            },
                        }
                    ]
                },
            },
        },
    }


def podinfo_autoscaler(
    namespace: str = NAMESPACE, name: str = "podinfo", target: str = "podinfo"
) -> dict[str, Any]:
    """An autoscaling/v2 HPA scaling `target` on CPU, like Flagger's podinfo example."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": target}},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": 2,
            "maxReplicas": 4,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 99},
                    },
                }
            ],
        },
    }
