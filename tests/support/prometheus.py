"""A real Prometheus process for tests (the Debian `prometheus` binary).

    with MetricsExporter() as exporter, running_prometheus(
        tmp_path, [static_scrape_config("app", [exporter.target])]
    ) as prometheus:
        prometheus.wait_for("count_over_time(up[1m]) >= 2")
        prometheus.query("up")

It listens on a free 127.0.0.1 port, keeps its config, data and log under the given directory,
and is stopped by its own pid when the block exits, also when a test fails.
"""

import contextlib
import json
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.net import free_port
from tests.support.processes import serving_process


@dataclass(frozen=True)
class RunningPrometheus:
    address: str
    """Base URL, e.g. `http://127.0.0.1:41234`."""
    pid: int
    log_path: Path

    def query(self, promql: str) -> list[Any]:
        """The raw `data.result` of an instant query (for test set-up, not the code under test)."""
        url = f"{self.address}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as response:
            result: list[Any] = json.load(response)["data"]["result"]
            return result

    def wait_for(self, promql: str, timeout_seconds: float = 30.0) -> None:
        """Poll until the query returns something, e.g. `count_over_time(x[1m]) >= 5` to wait
        for five scraped samples of `x`; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout_seconds
        while not self.query(promql):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no result for {promql!r} after {timeout_seconds:g}s")
            time.sleep(0.25)


def static_scrape_config(
    job: str, targets: Sequence[str], scrape_interval: str = "1s"
) -> dict[str, Any]:
    """One `scrape_configs` entry scraping `host:port` targets at `/metrics`."""
    return {
        "job_name": job,
        "scrape_interval": scrape_interval,
        "static_configs": [{"targets": list(targets)}],
    }


@contextlib.contextmanager
def running_prometheus(
    workdir: Path,
    scrape_configs: Sequence[Mapping[str, Any]],
    *,
    startup_timeout_seconds: float = 30.0,
) -> Iterator[RunningPrometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("the prometheus binary is not installed (apt-get install prometheus)")
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "prometheus.yml"
    # JSON is valid YAML, so no YAML writer is needed.
    config = {"global": {"scrape_interval": "1s"}, "scrape_configs": list(scrape_configs)}
    config_path.write_text(json.dumps(config, indent=2))
    port = free_port()
    log_path = workdir / "prometheus.log"
    address = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with serving_process(
        "prometheus", argv, log_path, f"{address}/-/ready", timeout_seconds=startup_timeout_seconds
    ) as process:
        yield RunningPrometheus(address=address, pid=process.pid, log_path=log_path)
