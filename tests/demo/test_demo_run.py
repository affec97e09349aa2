"""`python -m demo` (what `make demo` runs) stops everything it started when interrupted."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in command:
            found.append(f"{proc.name}: {command}")
    return found


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_ctrl_c_stops_every_process_the_demo_started(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "demo.log"
    with log.open("wb") as output:
        demo = subprocess.Popen(
            [sys.executable, "-m", "demo"],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    state = tmp_path / ".coalmine" / "demo"
    try:
        deadline = time.monotonic() + 90
        while "Advance podinfo.demo canary weight" not in log.read_text():
            assert demo.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert processes_mentioning(str(state)), "the platform should be running by now"
        ports = yaml.safe_load((state / "canary.yaml").read_text())["spec"]["local"]
        assert listening(ports["primaryPort"])
        demo.send_signal(signal.SIGINT)
        code = demo.wait(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    output_text = log.read_text()
    assert code == 130, output_text
    assert "interrupted: stopping everything the demo started" in output_text
    assert processes_mentioning(str(state)) == []
    assert not listening(ports["primaryPort"])
    assert not listening(ports["canaryPort"])
