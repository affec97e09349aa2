"""`coalmine worker` options that set what its rollouts may touch: `--allow-local-targets`,
`--local-root` and `--namespaces`, and their environment variables."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from activities.scope import WorkerScope
from starter import cli
from worker import command

REPO = Path(__file__).resolve().parents[2]


def scope(argv: list[str]) -> WorkerScope:
    return command.scope_of(cli._parser().parse_args(["worker", *argv]))


@pytest.fixture(autouse=True)
def no_scope_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COALMINE_ALLOW_LOCAL_TARGETS", "COALMINE_LOCAL_ROOT", "COALMINE_NAMESPACES"):
        monkeypatch.delenv(name, raising=False)


def test_by_default_a_worker_refuses_local_targets_and_allows_every_namespace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert scope([]) == WorkerScope(
        allow_local_targets=False, local_root=tmp_path / ".coalmine", namespaces=None
    )


def test_the_options_set_the_scope(tmp_path: Path) -> None:
    given = scope(
        [
            "--allow-local-targets",
            "--local-root",
            str(tmp_path / "root"),
            "--namespaces",
            "team-a, team-b,",
        ]
    )
    assert given == WorkerScope(
        allow_local_targets=True,
        local_root=tmp_path / "root",
        namespaces=frozenset({"team-a", "team-b"}),
    )


def test_the_environment_sets_the_scope(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COALMINE_ALLOW_LOCAL_TARGETS", "1")
    monkeypatch.setenv("COALMINE_LOCAL_ROOT", str(tmp_path))
    monkeypatch.setenv("COALMINE_NAMESPACES", "payments")
    assert scope([]) == WorkerScope(
        allow_local_targets=True, local_root=tmp_path, namespaces=frozenset({"payments"})
    )
    monkeypatch.setenv("COALMINE_ALLOW_LOCAL_TARGETS", "false")
    assert not scope([]).allow_local_targets
    assert scope(["--allow-local-targets"]).allow_local_targets


@pytest.mark.parametrize(
    ("argv", "env", "problem"),
    [
        (["--namespaces", "team-a,Team_B"], {}, "--namespaces team-a,Team_B: 'Team_B' is not"),
        ([], {"COALMINE_NAMESPACES": "-x"}, "--namespaces -x: '-x' is not"),
        ([], {"COALMINE_ALLOW_LOCAL_TARGETS": "maybe"}, "COALMINE_ALLOW_LOCAL_TARGETS=maybe:"),
        (["--local-root", "pyproject.toml"], {}, "--local-root pyproject.toml: not a folder"),
    ],
)
def test_a_malformed_option_is_one_line_and_exit_2(
    argv: list[str], env: dict[str, str], problem: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "starter.cli", "worker", *argv],
        cwd=REPO,
        env={**os.environ, **env, "TEMPORAL_ADDRESS": "127.0.0.1:1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {problem}")
