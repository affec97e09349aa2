"""Time and memory of `coalmine validate -f FILE` on each hostile spec of the tests.

Run from the repository root: `.venv/bin/python scripts/measure-hostile-specs.py`. For each
file it prints the exit code, the wall and CPU time and the peak memory (max RSS) of the whole
command, and the time `load_canary` alone takes in this process, so interpreter start and imports
(the same for every file) can be told apart from the work the file causes.
"""

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from canary import loader  # noqa: E402
from tests.starter.test_hostile_specs import HOSTILE, PODINFO  # noqa: E402


def run_command(path: Path) -> tuple[int, float, float, float]:
    """Exit code, wall seconds, CPU seconds and max RSS in MB of one `validate` run."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "starter.cli", "validate", "-f", str(path)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def load_seconds(text: str) -> float:
    started = time.monotonic()
    with contextlib.suppress(loader.SpecError):
        loader.load_canary(text, "hostile.yaml")
    return time.monotonic() - started


def near_the_limits() -> dict[str, str]:
    """Files just inside the bounds: the most work a spec can ask for."""
    podinfo = PODINFO.read_text()
    room = loader.safe_yaml.MAX_BYTES - len(podinfo) - 100
    labels = "".join(f"    l{index:05d}: v\n" for index in range(4_900))
    meta = "  namespace: test\n"
    values = ", ".join(["0"] * 9_900)
    return {
        "4,900 labels (valid)": podinfo.replace(meta, meta + "  labels:\n" + labels),
        "1 MiB annotation (valid)": podinfo.replace(
            meta, meta + "  annotations:\n    a: " + "a" * room + "\n"
        ),
        "9,900 values": f"values: [{values}]\n",
        "1 MiB name": podinfo.replace("name: podinfo\n", "name: " + "a" * room + "\n", 1),
    }


def main() -> None:
    cases = {"podinfo (valid, for reference)": PODINFO.read_text()}
    cases.update({name: make() for name, (make, _) in HOSTILE.items()})
    cases.update(near_the_limits())
    print(
        f"{'file':32} {'exit':>4} {'wall s':>7} {'CPU s':>6} {'max RSS MB':>10} "
        f"{'load_canary s':>13}"
    )
    with tempfile.TemporaryDirectory() as folder:
        for name, text in cases.items():
            path = Path(folder) / "hostile.yaml"
            path.write_text(text)
            code, wall, cpu, rss = run_command(path)
            print(
                f"{name:32} {code:>4} {wall:>7.2f} {cpu:>6.2f} {rss:>10.1f} "
                f"{load_seconds(text):>13.3f}"
            )


if __name__ == "__main__":
    main()
