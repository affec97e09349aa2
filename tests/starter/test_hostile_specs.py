"""`coalmine validate` on hostile spec files: exit 2 with one line per problem, no traceback.

Each file runs through the real command in a subprocess, as a CI job would run it, and its
peak memory (about 65 MB here) stays under 200 MB. How long each one takes is measured, not
asserted, by scripts/measure-hostile-specs.py.
"""

import os
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PODINFO = REPO / "tests" / "canary" / "specs" / "podinfo.yaml"


def podinfo(**edits: Callable[[dict[str, Any]], None]) -> str:
    doc = yaml.safe_load(PODINFO.read_text())
    for edit in edits.values():
        edit(doc)
    return yaml.safe_dump(doc, sort_keys=False)


def billion_laughs() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        aliases = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{aliases}]")
    return "\n".join(lines) + "\n"


def with_line(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


def set_path(*path: str | int, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        node: Any = doc
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return edit


PODINFO_TEXT = PODINFO.read_text()

HOSTILE: dict[str, tuple[Callable[[], str], str | re.Pattern[str]]] = {
    "billion-laughs": (
        billion_laughs,
        "hostile.yaml:5: more than 10000 values once aliases are expanded",
    ),
    "nested-100-deep": (
        lambda: "spec: " + "[" * 100 + "]" * 100 + "\n",
        "hostile.yaml:1: nested more than 64 levels deep",
    ),
    "nested-1000-deep": (
        lambda: "spec: " + "[" * 1000 + "]" * 1000 + "\n",
        # libyaml, when PyYAML has it, stops at its own limit first
        re.compile(
            r"hostile.yaml:1: (nested more than 64 levels deep"
            r"|invalid YAML: exceeded maximum nesting depth)$"
        ),
    ),
    "integer-5000-digits": (
        lambda: with_line(PODINFO_TEXT, "threshold: 5", "threshold: " + "9" * 5000),
        "hostile.yaml:34: invalid YAML: integer of 5000 characters is too large",
    ),
    "integer-beyond-64-bits": (
        lambda: with_line(PODINFO_TEXT, "threshold: 5", "threshold: " + "9" * 30),
        "hostile.yaml:34: invalid YAML: integer beyond the 64-bit range",
    ),
    "interval-400-digits": (
        lambda: podinfo(i=set_path("spec", "analysis", "interval", value="7" * 400 + "s")),
        "spec.analysis.interval: invalid duration '7777777777777777777777777777777777777777",
    ),
    "interval-a-million-hours": (
        lambda: podinfo(i=set_path("spec", "analysis", "interval", value="1000000h")),
        "spec.analysis.interval: must be at most 24h",
    ),
    "progress-deadline-a-year": (
        lambda: podinfo(i=set_path("spec", "progressDeadlineSeconds", value=365 * 24 * 3600)),
        "spec.progressDeadlineSeconds: must be less than or equal to 604800",
    ),
    "file-of-2-mib": (
        lambda: PODINFO_TEXT + "#" * (2 * 1024 * 1024) + "\n",
        re.compile(r"hostile.yaml: 2\d{6} bytes, more than the 1048576 bytes \(1 MiB\) a spec"),
    ),
    "duplicate-key": (
        lambda: with_line(
            PODINFO_TEXT, "    threshold: 5\n", "    threshold: 5\n    threshold: 1\n"
        ),
        "hostile.yaml:35: invalid YAML: duplicate key 'threshold'",
    ),
    "ansi-escape-in-name": (
        lambda: podinfo(n=set_path("metadata", "name", value="\x1b[2J\x1b[31mpodinfo")),
        "metadata.name: must not contain control characters (such as terminal escapes)",
    ),
    "name-of-2000-characters": (
        lambda: podinfo(n=set_path("metadata", "name", value="a" * 2000)),
        "metadata.name: must be at most 63 characters (got 2000)",
    ),
    "target-name-of-57-characters": (
        lambda: podinfo(n=set_path("spec", "targetRef", "name", value="p" * 57)),
        "spec.targetRef.name: must be at most 55 characters so that '<name>-primary' fits in 63 "
        "(got 57)",
    ),
    "nan-threshold": (
        lambda: podinfo(
            t=set_path(
                "spec", "analysis", "metrics", 0, "thresholdRange", "min", value=float("nan")
            )
        ),
        "spec.analysis.metrics[0].thresholdRange.min: must be a finite number",
    ),
    "infinite-threshold": (
        lambda: podinfo(
            t=set_path(
                "spec", "analysis", "metrics", 1, "thresholdRange", "max", value=float("inf")
            )
        ),
        "spec.analysis.metrics[1].thresholdRange.max: must be a finite number",
    ),
}


MAX_RSS_MB = 200


@dataclass
class Run:
    code: int
    out: str
    err: str
    max_rss_mb: float
    """Peak memory of the command (its own, as the kernel accounts it)."""


MEASURING_LAUNCHER = """
import os, sys
child = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(child, 0)
with open(sys.argv[1], "w") as report:
    report.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""
"""Runs a command and reports its exit code and peak memory. A process started by
posix_spawn (vfork) is charged the peak of the process that started it, before its exec: this
launcher is small, where the test process (hundreds of MB) is not."""


def validate(path: Path) -> Run:
    """`coalmine validate -f path` as a subprocess, with its own peak memory."""
    out, err, report = (path.with_suffix(suffix) for suffix in (".out", ".err", ".usage"))
    writing = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    command = [sys.executable, "-m", "starter.cli", "validate", "-f", str(path)]
    launcher = os.posix_spawn(
        sys.executable,
        [sys.executable, "-c", MEASURING_LAUNCHER, str(report), *command],
        {**os.environ, "PYTHONPATH": str(REPO)},
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 1, str(out), writing, 0o644),
            (os.POSIX_SPAWN_OPEN, 2, str(err), writing, 0o644),
        ],
        setsid=True,
    )
    deadline = time.monotonic() + 120  # a hang fails the test instead of blocking the suite
    while not os.waitpid(launcher, os.WNOHANG)[0]:
        if time.monotonic() > deadline:
            os.killpg(launcher, signal.SIGKILL)
            os.waitpid(launcher, 0)
            raise AssertionError(f"coalmine validate -f {path} did not end within 120 s")
        time.sleep(0.05)
    code, max_rss_kb = report.read_text().split()
    return Run(int(code), out.read_text(), err.read_text(), int(max_rss_kb) / 1024)


@pytest.mark.parametrize(("make", "expected"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_spec_is_one_line_and_exit_2(
    tmp_path: Path, make: Callable[[], str], expected: str | re.Pattern[str]
) -> None:
    """`expected` is how the line starts after `error: `, naming the file `hostile.yaml`."""
    path = tmp_path / "hostile.yaml"
    path.write_text(make())
    if isinstance(expected, re.Pattern):
        pattern = expected.pattern.replace("hostile.yaml", re.escape(str(path)))
    else:
        pattern = re.escape(expected.replace("hostile.yaml", str(path)))

    run = validate(path)

    assert run.code == 2, run.err
    assert "Traceback" not in run.err
    assert "\x1b" not in run.err + run.out
    assert run.out == ""
    lines = run.err.splitlines()
    assert len(lines) == 1, run.err
    assert re.match("error: " + pattern, lines[0]), lines[0]
    assert len(lines[0]) < 300
    assert run.max_rss_mb < MAX_RSS_MB


def test_the_podinfo_spec_itself_validates(tmp_path: Path) -> None:
    """The hostile files above are edits of this one, which is fine as it is."""
    path = tmp_path / "hostile.yaml"
    path.write_text(PODINFO_TEXT)

    run = validate(path)

    assert run.code == 0, run.err
    assert "podinfo.test" in run.out
    assert run.max_rss_mb < MAX_RSS_MB
