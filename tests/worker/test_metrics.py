"""The worker's Prometheus metrics, with real processes: the dev server, a worker whose runtime
serves /metrics, a real Prometheus scraping it with the shipped scrape job, and `coalmine worker`.

One module fixture runs a healthy and a failing rollout (same-name fake activities, 1 s
intervals) on a worker built like production (`worker.main.build_worker`, `metrics_runtime`)
and keeps what /metrics says afterwards. The dashboard tests check their PromQL against those
names and evaluate every expression in Prometheus.
"""

import asyncio
import concurrent.futures
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from canary import contract
from canary.decision import StepObservation
from canary.spec import Canary
from canary.status import Phase
from starter import cli
from starter.cli import rollout_handle
from starter.verdict import final_status
from tests.support.net import free_port
from tests.support.prometheus import RunningPrometheus, running_prometheus
from tests.workflows.fakes import FakePlatform, canary_spec
from worker import command as worker_command
from worker import main as worker_main
from workflows.canary_workflow import CanaryWorkflow

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
SERVICE_MONITOR = DEPLOY / "monitoring" / "servicemonitor.yaml"
SCRAPE_CONFIG = DEPLOY / "monitoring" / "prometheus-scrape.yaml"
METRIC_NAME = re.compile(r"\b(?:coalmine|temporal)_[A-Za-z0-9_]+")
"""Every metric the dashboard uses is the worker's own (coalmine_*) or the SDK's (temporal_*)."""


# --- /metrics ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


SAMPLE_LINE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")
LABEL_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition (what /metrics answers)."""
    samples = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = SAMPLE_LINE.match(line)
        assert match, f"not a sample line: {line!r}"
        labels = dict(LABEL_PAIR.findall(match.group(2) or ""))
        samples.append(Sample(match.group(1), labels, float(match.group(3))))
    return samples


def get_metrics(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        text: str = response.read().decode()
        return text


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include `labels`."""
    found = [s for s in samples if s.name == name and labels.items() <= s.labels.items()]
    assert len(found) == 1, f"{len(found)} samples of {name}{labels}: {found}"
    return found[0].value


def total(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


# --- the rollouts --------------------------------------------------------------------------


@dataclass
class FlakyPlatform(FakePlatform):
    """Fails the first call of two local activities (both retried), so the SDK's failure
    counters appear on /metrics too."""

    flaked: set[str] = field(default_factory=set)

    def _flake_once(self, name: str) -> None:
        if name not in self.flaked:
            self.flaked.add(name)
            raise RuntimeError(f"{name}: flaky on purpose, the retry passes")

    @activity.defn(name=contract.SCALE_CANARY)
    async def scale_canary(self, request: contract.ScaleRequest) -> None:
        self._flake_once(contract.SCALE_CANARY)
        await super().scale_canary(request)

    @activity.defn(name=contract.OBSERVE)
    async def observe(self, request: contract.ObserveRequest) -> StepObservation:
        self._flake_once(contract.OBSERVE)
        return await super().observe(request)


@dataclass(frozen=True)
class Rollouts:
    metrics_address: str
    """`127.0.0.1:port` where the worker's runtime serves /metrics."""
    task_queue: str
    workflow_ids: list[str]
    healthy: Canary
    failing: Canary
    text: str
    """/metrics once both rollouts have ended."""

    @property
    def samples(self) -> list[Sample]:
        return parse_exposition(self.text)


def named(canary: Canary, name: str) -> Canary:
    return canary.model_copy(update={"metadata": canary.metadata.model_copy(update={"name": name})})


def target(canary: Canary) -> str:
    return f"{canary.metadata.namespace}/{canary.metadata.name}"


async def metrics_client(env: WorkflowEnvironment, address: str) -> Client:
    """A client to the dev server whose runtime serves /metrics on `address`, as in production."""
    return await Client.connect(
        env.client.service_client.config.target_host,
        namespace=env.client.namespace,
        data_converter=pydantic_data_converter,
        runtime=worker_main.metrics_runtime(address),
    )


@pytest.fixture(scope="module")
async def rollouts(dev_server_env: WorkflowEnvironment) -> AsyncIterator[Rollouts]:
    address = f"127.0.0.1:{free_port()}"
    client = await metrics_client(dev_server_env, address)
    platform = FlakyPlatform(failing_image="bad")
    run = uuid.uuid4().hex[:8]
    spec = canary_spec(interval="1s")
    healthy, failing = named(spec, f"healthy-{run}"), named(spec, f"failing-{run}")
    workflow_ids = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=worker_main.ACTIVITY_THREADS) as pool:
        async with worker_main.build_worker(
            client, platform.activities(), pool, platform.task_queue
        ):
            # One after the other: the fake judges metrics by the last image it was given.
            for canary, image, phase in (
                (healthy, "v2", Phase.SUCCEEDED),
                (failing, "bad", Phase.FAILED),
            ):
                workflow_ids.append(f"{canary.workflow_id}-{uuid.uuid4()}")
                handle = await client.start_workflow(
                    CanaryWorkflow.run,
                    contract.RolloutRequest(canary=canary, image=image),
                    id=workflow_ids[-1],
                    task_queue=platform.task_queue,
                )
                status = await final_status(handle)
                assert status.phase == phase, status
    assert platform.flaked == {contract.SCALE_CANARY, contract.OBSERVE}
    text = get_metrics(address)
    yield Rollouts(address, platform.task_queue, workflow_ids, healthy, failing, text)


async def test_rollout_counters_and_duration(rollouts: Rollouts) -> None:
    samples = rollouts.samples
    good, bad = target(rollouts.healthy), target(rollouts.failing)
    assert value(samples, "coalmine_rollouts_total", target=good, result="succeeded") == 1
    assert value(samples, "coalmine_rollouts_total", target=good, result="failed") == 0
    assert value(samples, "coalmine_rollouts_total", target=bad, result="failed") == 1
    assert value(samples, "coalmine_rollouts_total", target=bad, result="succeeded") == 0
    assert total(samples, "coalmine_rollout_duration_seconds_count") == 2
    for result in ("succeeded", "failed"):
        seconds = value(samples, "coalmine_rollout_duration_seconds_sum", result=result)
        assert 2 < seconds < 60, result
    # The buckets are coalmine's (minutes to a day), not the SDK's default latency buckets.
    bounds = {
        s.labels["le"]
        for s in samples
        if s.name == "coalmine_rollout_duration_seconds_bucket" and s.labels["result"] == "failed"
    }
    assert bounds == {f"{b:g}" for b in worker_main.ROLLOUT_DURATION_BUCKETS} | {"+Inf"}


async def test_final_status_weight_checks_and_metric_values(rollouts: Rollouts) -> None:
    samples = rollouts.samples
    good, bad = target(rollouts.healthy), target(rollouts.failing)
    for name, current in ((good, "succeeded"), (bad, "failed")):
        states = {
            status: value(samples, "coalmine_canary_status", target=name, status=status)
            for status in ("running", "succeeded", "failed")
        }
        assert states == {s: float(s == current) for s in states}, name
        assert value(samples, "coalmine_canary_weight", target=name) == 0
    threshold = rollouts.failing.spec.analysis.threshold
    assert value(samples, "coalmine_canary_failed_checks", target=bad) == threshold
    assert value(samples, "coalmine_canary_failed_checks", target=good) == 0
    metric = "coalmine_canary_metric_value"
    assert value(samples, metric, target=good, metric="request-success-rate") == 99.9
    assert value(samples, metric, target=bad, metric="request-success-rate") == 61.5
    assert value(samples, metric, target=bad, metric="request-duration") == 120.0
    updated = value(samples, "coalmine_canary_updated_timestamp_seconds", target=bad)
    assert abs(updated - time.time()) < 300


async def test_rollout_metrics_carry_the_sdk_labels(rollouts: Rollouts) -> None:
    weight = [s for s in rollouts.samples if s.name == "coalmine_canary_weight"]
    assert len(weight) == 2
    for sample in weight:
        assert sample.labels["workflow_type"] == "CanaryWorkflow"
        assert sample.labels["task_queue"] == rollouts.task_queue
        assert sample.labels["namespace"] == "default"


async def test_the_sdk_metrics_are_served_too(rollouts: Rollouts) -> None:
    samples = rollouts.samples
    queue = {"task_queue": rollouts.task_queue}
    rollout = {"workflow_type": "CanaryWorkflow", **queue}
    # the rolled-back rollout fails its workflow, so Temporal counts it as failed
    assert value(samples, "temporal_workflow_completed_total", **rollout) == 1
    assert value(samples, "temporal_workflow_failed_total", **rollout) == 1
    latency = "temporal_workflow_task_execution_latency_seconds_count"
    assert total(samples, latency, **queue) > 2, "each rollout ran several workflow tasks"
    local_failed = "temporal_local_activity_execution_failed_total"
    for activity_type in (contract.SCALE_CANARY, contract.OBSERVE):
        assert value(samples, local_failed, activity_type=activity_type, **queue) == 1


async def test_a_replay_records_nothing(
    rollouts: Rollouts, dev_server_env: WorkflowEnvironment
) -> None:
    """A query on a finished rollout makes a worker replay its whole history, the end of the
    run included: a fresh worker doing so must not count the rollout again."""
    address = f"127.0.0.1:{free_port()}"
    client = await metrics_client(dev_server_env, address)
    with concurrent.futures.ThreadPoolExecutor(max_workers=worker_main.ACTIVITY_THREADS) as pool:
        async with worker_main.build_worker(
            client, FakePlatform().activities(), pool, rollouts.task_queue
        ):
            for workflow_id in rollouts.workflow_ids:
                handle = rollout_handle(client, workflow_id)
                status = await handle.query(CanaryWorkflow.status)
                assert status.phase.final
    samples = parse_exposition(get_metrics(address))
    queries = value(samples, "temporal_request_total", operation="RespondQueryTaskCompleted")
    assert queries == len(rollouts.workflow_ids)
    assert not [sample for sample in samples if sample.name.startswith("coalmine_")]


# --- the dashboard -------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels") or []


def expressions(board: Mapping[str, Any]) -> list[str]:
    """Every PromQL expression: panel targets and template variable queries."""
    found = [
        target["expr"]
        for panel in panels(board)
        for target in panel.get("targets") or []
        if "expr" in target
    ]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            found.append(query["query"] if isinstance(query, dict) else query)
    return found


def test_dashboard_is_a_grafana_dashboard_with_the_panels() -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids))
    titles = {panel["title"] for panel in panels(board)}
    assert {
        "Rollouts by current status",
        "Status per target",
        "Canary weight",
        "Failed checks",
        "Analysis metric values",
        "Rollout duration p50 / p95",
        "Succeeded",
        "Failed",
        "Workflow task execution latency",
        "Activity failures",
    } <= titles
    variables = {variable["name"] for variable in board["templating"]["list"]}
    assert variables == {"datasource", "target"}
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        assert panel["targets"], panel["title"]
        for query in panel["targets"]:
            assert query["expr"].strip() and query["refId"], panel["title"]


ONLY_EARLIER_ROLLOUTS = {"temporal_activity_execution_failed_total"}
"""Metrics of rollouts started before FEWER_ROUND_TRIPS: they call activities, new ones only
local activities, so a worker running new rollouts does not serve these."""


async def test_dashboard_uses_only_metrics_the_worker_serves(rollouts: Rollouts) -> None:
    served = {sample.name for sample in rollouts.samples} | ONLY_EARLIER_ROLLOUTS
    for expression in expressions(dashboard()):
        names = set(METRIC_NAME.findall(expression))
        assert names, f"no coalmine_/temporal_ metric in {expression}"
        assert names <= served, f"{sorted(names - served)} not on /metrics: {expression}"


def grafana_to_promql(expression: str) -> str:
    """What Grafana sends for an expression: its variables replaced."""
    replacements = {
        "$__rate_interval": "1m",
        "$__range": "1h",
        "$__interval": "15s",
        "$target": ".*",
        "${target}": ".*",
    }
    for variable, replacement in replacements.items():
        expression = expression.replace(variable, replacement)
    assert "$" not in expression, expression
    return expression


def scrape_job(*worker_addresses: str) -> dict[str, Any]:
    """The shipped scrape job, with Kubernetes discovery replaced by what it would find: the
    worker pods behind Service coalmine-worker-metrics (and a pod of another Service and one on
    another port, which the job must drop)."""
    snippet = yaml.safe_load(documents(SCRAPE_CONFIG)[0]["data"]["coalmine-worker.yml"])
    (job,) = snippet["scrape_configs"]
    del job["kubernetes_sd_configs"]
    discovered = {
        "__meta_kubernetes_namespace": "coalmine-system",
        "__meta_kubernetes_service_name": "coalmine-worker-metrics",
        "__meta_kubernetes_endpoint_port_name": "metrics",
    }
    job["static_configs"] = [
        {"targets": [address], "labels": {**discovered, "__meta_kubernetes_pod_name": pod}}
        for pod, address in ((f"coalmine-worker-{i}", a) for i, a in enumerate(worker_addresses))
    ] + [
        {
            "targets": [f"127.0.0.1:{free_port()}"],
            "labels": {**discovered, "__meta_kubernetes_service_name": "something-else"},
        },
        {
            "targets": [f"127.0.0.1:{free_port()}"],
            "labels": {**discovered, "__meta_kubernetes_endpoint_port_name": "http"},
        },
    ]
    job["scrape_interval"] = "1s"
    job["scrape_timeout"] = "1s"
    return dict(job)


ELSEWHERE = "test/elsewhere"
"""A target whose rollout only the second (stale) worker knows."""


def stale_worker_metrics(rollouts: Rollouts) -> str:
    """What a second worker would still serve after the healthy rollout moved away from it at
    weight 50 (older update time), plus a rollout running on it alone (newer update time)."""
    good = target(rollouts.healthy)
    updated = value(rollouts.samples, "coalmine_canary_updated_timestamp_seconds", target=good)
    common = 'namespace="default",workflow_type="CanaryWorkflow",task_queue="coalmine"'
    lines = []
    for name, when, weight in ((good, updated - 600, 50), (ELSEWHERE, updated + 1, 30)):
        labels = f'{common},target="{name}"'
        for status in ("running", "succeeded", "failed"):
            on = int(status == "running")
            lines.append(f'coalmine_canary_status{{{labels},status="{status}"}} {on}')
        lines.append(f"coalmine_canary_weight{{{labels}}} {weight}")
        lines.append(f"coalmine_canary_failed_checks{{{labels}}} 1")
        lines.append(f"coalmine_canary_updated_timestamp_seconds{{{labels}}} {when}")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def serving(text: str) -> Iterator[str]:
    """Serve `text` at /metrics on a free port; yield `host:port`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def prometheus(
    rollouts: Rollouts, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningPrometheus]:
    """A real Prometheus scraping, with the shipped job, the rollouts' worker and a stale one."""
    workdir = tmp_path_factory.mktemp("prometheus")
    with (
        serving(stale_worker_metrics(rollouts)) as stale,
        running_prometheus(workdir, [scrape_job(rollouts.metrics_address, stale)]) as running,
    ):
        running.wait_for("count_over_time(coalmine_canary_weight[1m]) >= 8", 60)
        yield running


def query(prometheus: RunningPrometheus, promql: str) -> list[Any]:
    """`data.result` of an instant query; a PromQL error fails with Prometheus's message."""
    url = f"{prometheus.address}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            result: list[Any] = json.load(response)["data"]["result"]
            return result
    except urllib.error.HTTPError as error:
        raise AssertionError(f"{promql}: {error.read().decode()}") from None


async def test_shipped_scrape_job_keeps_the_worker_pods_only(
    prometheus: RunningPrometheus,
) -> None:
    up = query(prometheus, "up")
    assert {series["metric"]["pod"] for series in up} == {"coalmine-worker-0", "coalmine-worker-1"}
    for series in up:
        assert series["metric"]["job"] == "coalmine-worker"
        assert series["metric"]["kubernetes_namespace"] == "coalmine-system"
        assert series["value"][1] == "1"
    # The worker's own `namespace` label (the Temporal namespace) survives the scrape.
    weights = query(prometheus, "coalmine_canary_weight")
    assert {series["metric"]["namespace"] for series in weights} == {"default"}


async def test_every_dashboard_expression_evaluates_in_prometheus(
    prometheus: RunningPrometheus, rollouts: Rollouts
) -> None:
    for expression in expressions(dashboard()):
        promql = grafana_to_promql(expression)
        if promql.startswith("label_values("):
            call = re.fullmatch(r"label_values\((\w+), *(\w+)\)", promql)
            assert call, promql
            metric, label = call.groups()
            found = {series["metric"][label] for series in query(prometheus, metric)}
            assert {target(rollouts.healthy), target(rollouts.failing)} <= found
            continue
        if set(METRIC_NAME.findall(promql)) <= ONLY_EARLIER_ROLLOUTS:
            continue
        assert query(prometheus, promql), f"no result for {promql}"


async def test_dashboard_shows_the_current_state_of_each_target(
    prometheus: RunningPrometheus, rollouts: Rollouts
) -> None:
    by_title = {panel["title"]: panel for panel in panels(dashboard())}

    def only_expression(title: str) -> str:
        (expression,) = [t["expr"] for t in by_title[title]["targets"]]
        return str(expression)

    def results(title: str) -> dict[str, float]:
        return {
            series["metric"]["target"]: float(series["value"][1])
            for series in query(prometheus, grafana_to_promql(only_expression(title)))
        }

    good, bad = target(rollouts.healthy), target(rollouts.failing)
    mapping = by_title["Status per target"]["fieldConfig"]["defaults"]["mappings"][0]["options"]
    statuses = {
        name: mapping[f"{code:g}"]["text"] for name, code in results("Status per target").items()
    }
    # The stale worker's copy of the healthy rollout (running, weight 50) is ignored.
    assert statuses == {good: "succeeded", bad: "failed", ELSEWHERE: "running"}
    assert results("Canary weight") == {good: 0, bad: 0, ELSEWHERE: 30}
    threshold = rollouts.failing.spec.analysis.threshold
    assert results("Failed checks") == {good: 0, bad: threshold, ELSEWHERE: 1}
    values = query(prometheus, grafana_to_promql(only_expression("Analysis metric values")))
    assert {
        (series["metric"]["target"], series["metric"]["metric"]): float(series["value"][1])
        for series in values
    } == {
        (good, "request-success-rate"): 99.9,
        (good, "request-duration"): 120.0,
        (bad, "request-success-rate"): 61.5,
        (bad, "request-duration"): 120.0,
    }
    counts = query(prometheus, grafana_to_promql(only_expression("Rollouts by current status")))
    assert {series["metric"]["status"]: float(series["value"][1]) for series in counts} == {
        "running": 1,
        "succeeded": 1,
        "failed": 1,
    }


# --- the manifests -------------------------------------------------------------------------


def documents(path: Path) -> list[Any]:
    with path.open() as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def test_service_servicemonitor_scrape_job_and_deployment_agree_on_the_port() -> None:
    deployment = documents(DEPLOY / "worker-deployment.yaml")[0]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["COALMINE_WORKER_METRICS_ADDRESS"] == f"0.0.0.0:{ports['metrics']}"
    assert f"127.0.0.1:{ports['metrics']}" == worker_command.DEFAULT_METRICS_ADDRESS

    service = documents(DEPLOY / "worker-service.yaml")[0]
    assert service["kind"] == "Service"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (service_port,) = service["spec"]["ports"]
    assert service_port["name"] == "metrics"
    assert service_port["targetPort"] in ("metrics", ports["metrics"])

    monitor = documents(SERVICE_MONITOR)[0]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "ServiceMonitor"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert service["metadata"]["namespace"] in monitor["spec"]["namespaceSelector"]["matchNames"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service_port["name"]
    assert endpoint["path"] == "/metrics"

    job = yaml.safe_load(documents(SCRAPE_CONFIG)[0]["data"]["coalmine-worker.yml"])
    (config,) = job["scrape_configs"]
    (discovery,) = config["kubernetes_sd_configs"]
    assert discovery["role"] == "endpoints"
    assert service["metadata"]["namespace"] in discovery["namespaces"]["names"]
    keep = next(rule for rule in config["relabel_configs"] if rule.get("action") == "keep")
    assert keep["regex"] == f"{service['metadata']['name']};{service_port['name']}"


def test_kustomization_applies_the_service_but_not_the_servicemonitor() -> None:
    resources = documents(DEPLOY / "kustomization.yaml")[0]["resources"]
    assert "worker-service.yaml" in resources
    assert not any(
        "servicemonitor" in resource or "monitoring/" in resource for resource in resources
    )


def test_shipped_scrape_job_is_valid_prometheus_config(tmp_path: Path) -> None:
    """promtool checks the job; Debian's Prometheus has no Kubernetes discovery, so the check
    runs on the job with its discovery swapped for a static target."""
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({"scrape_configs": [scrape_job("127.0.0.1:9464")]}))
    check = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_metrics_address_comes_from_the_option_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(worker_command.METRICS_ADDRESS_ENV, raising=False)
    assert cli._parser().parse_args(["worker"]).metrics_address is None
    monkeypatch.setenv(worker_command.METRICS_ADDRESS_ENV, "off")
    assert cli._parser().parse_args(["worker"]).metrics_address == "off"
    given = cli._parser().parse_args(["worker", "--metrics-address", "127.0.0.1:9"])
    assert given.metrics_address == "127.0.0.1:9"


# --- `coalmine worker` ----------------------------------------------------------------------


async def run_cli_worker(
    dev_server_env: WorkflowEnvironment, tmp_path: Path, args: list[str], env: dict[str, str]
) -> tuple[bytes, asyncio.subprocess.Process]:
    """Start `coalmine worker`; return the log line that says it polls, and the process."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "starter.cli",
        "worker",
        *args,
        cwd=REPO,
        env={
            **os.environ,
            "TEMPORAL_ADDRESS": dev_server_env.client.service_client.config.target_host,
            "KUBECONFIG": str(tmp_path / "absent-kubeconfig"),
            **env,
        },
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    earlier = b""
    try:
        while b"polling task queue" not in (
            line := await asyncio.wait_for(process.stderr.readline(), timeout=30)
        ):
            assert line, f"coalmine worker ended before polling: {earlier.decode()}"
            earlier += line
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    return line, process


async def stop(process: asyncio.subprocess.Process) -> tuple[int, bytes]:
    assert process.stderr is not None
    try:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=40)
        return code, await process.stderr.read()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.parametrize("how", ["option", "environment"])
async def test_coalmine_worker_serves_metrics(
    dev_server_env: WorkflowEnvironment, tmp_path: Path, how: str
) -> None:
    address = f"127.0.0.1:{free_port()}"
    queue = f"metrics-{uuid.uuid4()}"
    args = ["--task-queue", queue]
    env = {}
    if how == "option":
        args += ["--metrics-address", address]
        env["COALMINE_WORKER_METRICS_ADDRESS"] = "off"
    else:
        env["COALMINE_WORKER_METRICS_ADDRESS"] = address
    line, process = await run_cli_worker(dev_server_env, tmp_path, args, env)
    try:
        assert f"polling task queue {queue} on default".encode() in line, line
        assert f"metrics on http://{address}/metrics".encode() in line, line
        samples = parse_exposition(await asyncio.to_thread(get_metrics, address))
    finally:
        code, rest = await stop(process)
    assert value(samples, "temporal_worker_start_total", task_queue=queue) == 1
    assert code == 0
    assert b"Traceback" not in rest


async def test_coalmine_worker_metrics_off(
    dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    queue = f"metrics-{uuid.uuid4()}"
    line, process = await run_cli_worker(
        dev_server_env, tmp_path, ["--task-queue", queue, "--metrics-address", "off"], {}
    )
    code, _ = await stop(process)
    assert f"polling task queue {queue} on default; metrics off".encode() in line, line
    assert code == 0


async def test_coalmine_worker_runs_without_metrics_when_the_default_port_is_busy(
    dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Only the default: a second worker on one machine still starts, and says why."""
    queue = f"metrics-{uuid.uuid4()}"
    host, port = worker_command.DEFAULT_METRICS_ADDRESS.rsplit(":", 1)
    with contextlib.ExitStack() as stack:
        holder = stack.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # already busy (another worker here): just as good
            holder.bind((host, int(port)))
            holder.listen()
        line, process = await run_cli_worker(
            dev_server_env,
            tmp_path,
            ["--task-queue", queue],
            {worker_command.METRICS_ADDRESS_ENV: ""},
        )
        code, rest = await stop(process)
    assert f"polling task queue {queue} on default; metrics off".encode() in line, line
    assert (
        f"no metrics: the default address {worker_command.DEFAULT_METRICS_ADDRESS}".encode() in rest
    )
    assert code == 0


@pytest.mark.parametrize("address", ["nonsense", "localhost:9464", "busy"])
def test_coalmine_worker_refuses_an_unusable_metrics_address(address: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        if address == "busy":
            address = f"127.0.0.1:{busy.getsockname()[1]}"
        result = subprocess.run(
            [sys.executable, "-m", "starter.cli", "worker", "--metrics-address", address],
            cwd=REPO,
            env={**os.environ, "TEMPORAL_ADDRESS": "127.0.0.1:1"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == cli.EXIT_BAD_INPUT, result.stderr
    assert f"error: --metrics-address {address}:" in result.stderr
    assert "Traceback" not in result.stderr
