"""The real Temporal Web UI, read by headless Chromium, over a dev server holding finished rollouts.

The dev server is the one the demo starts (`demo.platform.Platform`: UI on, coalmine's search
attributes registered). A worker with same-name fake activities runs one healthy rollout (image
`v2`) and one that fails its metrics (image `bad`), both started by `coalmine start`'s own code so
they carry its summary, details and search attributes. Chromium then dumps the DOM of:

- the workflow list: both rollouts, of type CanaryWorkflow;
- the list filtered by `CanaryPhase = "Failed"`: the failed rollout only;
- the failed rollout's page: id, type, task queue, and the timer summaries on the timeline;
- its User Metadata tab: the static summary and details, and the current details that the
  workflow set last (the UI asks the worker for them, so the worker stays up meanwhile);
- the list's status column: the rolled-back rollout is Failed in Temporal, not Completed;
- the "Send a Signal" dialog of a third rollout, still under analysis (image `v3`, 1h
  interval): it offers pause, resume, promote and abort with their descriptions (the UI reads
  them with the `__temporal_workflow_metadata` query), and sending `pause` from it pauses the
  rollout. Clicking needs the DevTools protocol (`tests.support.devtools`).

The UI renders summary and details as markdown inside iframes (`/render?content=...`), so the
DOM holds them in each iframe's `src`, not as text of the page.

Screenshots go to `.coalmine/artifacts/web-ui/` (ignored by git), to be looked at when a check
fails or the UI changes. Chromium is Debian's (`make test` installs it).
"""

import asyncio
import json
import os
import signal
import struct
import subprocess
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from canary import contract
from canary.details import status_markdown
from canary.spec import Canary
from canary.status import CanaryStatus, Phase
from demo.platform import Platform, Ports
from starter.cli import rollout_handle, start_rollout
from starter.verdict import final_status
from tests.support.devtools import Browser
from tests.workflows.fakes import FakePlatform, canary_spec
from workflows import search_attributes
from workflows.canary_workflow import CanaryWorkflow

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".coalmine" / "artifacts" / "web-ui"
CHROMIUM = Path("/usr/bin/chromium")
WINDOW = (1400, 1000)
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--virtual-time-budget=15000",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
)
CHROMIUM_TIMEOUT_SECONDS = 90
ROLLOUT_TIMEOUT_SECONDS = 60
VISIBILITY_TIMEOUT_SECONDS = 10
MIN_SCREENSHOT_BYTES = 20_000
"""A blank page of WINDOW's size compresses to a few kilobytes; the UI's pages to 70 kB and more."""


@dataclass(frozen=True)
class Rollouts:
    platform: Platform
    client: Client
    healthy: str
    running: str
    failed: str
    failed_run: str
    failed_canary: Canary
    failed_status: CanaryStatus


def renamed(canary: Canary, name: str) -> Canary:
    return canary.model_copy(update={"metadata": canary.metadata.model_copy(update={"name": name})})


@pytest.fixture(scope="module")
async def rollouts(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rollouts]:
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: run `make test` (it installs Debian's chromium) or "
        "`apt-get install -y --no-install-recommends chromium`"
    )
    platform = Platform(state_dir=tmp_path_factory.mktemp("web-ui"), ports=Ports.free())
    try:
        platform.start_temporal()
        client = await Client.connect(
            platform.temporal_address, data_converter=pydantic_data_converter
        )
        fakes = FakePlatform(failing_image="bad", task_queue=contract.TASK_QUEUE)
        # This server is ours alone, so the worker can serve `coalmine start`'s task queue.
        async with Worker(
            client,
            task_queue=contract.TASK_QUEUE,
            workflows=[CanaryWorkflow],
            activities=fakes.activities(),
        ):
            healthy = await start_rollout(client, canary_spec(interval="1s"), "v2")
            healthy_status = await asyncio.wait_for(healthy.result(), ROLLOUT_TIMEOUT_SECONDS)
            assert healthy_status.phase == Phase.SUCCEEDED
            failed_canary = renamed(canary_spec(interval="1s"), "backend")
            failed = await start_rollout(client, failed_canary, "bad")
            failed_status = await asyncio.wait_for(final_status(failed), ROLLOUT_TIMEOUT_SECONDS)
            assert failed_status.phase == Phase.FAILED
            running = await start_rollout(
                client, renamed(canary_spec(interval="1h"), "frontend"), "v3"
            )
            await _phase(running, Phase.PROGRESSING)
            await _visible(client, f'{search_attributes.PHASE.name} = "Failed"', failed.id)
            await _visible(client, f'{search_attributes.PHASE.name} = "Succeeded"', healthy.id)
            await _visible(client, f'{search_attributes.PHASE.name} = "Progressing"', running.id)
            # The worker stays up: the UI's User Metadata tab queries it for current details.
            yield Rollouts(
                platform=platform,
                client=client,
                healthy=healthy.id,
                running=running.id,
                failed=failed.id,
                failed_run=(await failed.describe()).run_id,
                failed_canary=failed_canary,
                failed_status=failed_status,
            )
    finally:
        platform.stop()


async def _phase(handle: WorkflowHandle[CanaryWorkflow, CanaryStatus], phase: Phase) -> None:
    deadline = asyncio.get_running_loop().time() + ROLLOUT_TIMEOUT_SECONDS
    while (status := await handle.query(CanaryWorkflow.status)).phase != phase:
        assert asyncio.get_running_loop().time() < deadline, f"never {phase}: {status}"
        await asyncio.sleep(0.2)


async def _visible(client: Client, query: str, workflow_id: str) -> None:
    """Visibility is eventually consistent: wait until the list the UI asks for has the rollout."""
    deadline = asyncio.get_running_loop().time() + VISIBILITY_TIMEOUT_SECONDS
    while True:
        found = [execution.id async for execution in client.list_workflows(query)]
        if workflow_id in found:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{query!r} lists only {found}"
        await asyncio.sleep(0.2)


def _chromium(url: str, mode: str, profile: Path) -> str:
    """One headless Chromium run in its own session; killed with its children if it hangs."""
    argv = [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", mode, url]
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=CHROMIUM_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError(
            f"chromium did not finish {url} in {CHROMIUM_TIMEOUT_SECONDS}s"
        ) from None
    assert process.returncode == 0, f"chromium failed on {url}:\n{err[-3000:]}"
    return out


async def dump_dom(url: str, tmp_path: Path) -> str:
    profile = tmp_path / "chromium-profile-dom"
    dom = await asyncio.to_thread(_chromium, url, "--dump-dom", profile)
    assert "<body" in dom, f"chromium printed no DOM for {url}"
    return dom


async def screenshot(url: str, name: str, tmp_path: Path) -> Path:
    """A PNG of the page in ARTIFACTS, checked to be of the window's size and not blank."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    path.unlink(missing_ok=True)
    profile = tmp_path / "chromium-profile-png"
    await asyncio.to_thread(_chromium, url, f"--screenshot={path}", profile)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == WINDOW, f"{path} is {width}x{height}"
    assert len(data) > MIN_SCREENSHOT_BYTES, f"{path} looks blank ({len(data)} bytes)"
    return path


class _Page(HTMLParser):
    """The text a person reads, and each iframe's src by id."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[str] = []
        self._skip = 0
        self.iframes: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "template"):
            self._skip += 1
        if tag == "iframe":
            found = dict(attrs)
            self.iframes[found.get("id") or ""] = found.get("src") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "template") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._chunks.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self._chunks).split())


def parse(dom: str) -> _Page:
    page = _Page()
    page.feed(dom)
    page.close()
    return page


def rendered_markdown(page: _Page, iframe_id: str) -> str:
    """What the UI hands its markdown renderer in the iframe `iframe_id`."""
    assert iframe_id in page.iframes, f"no iframe {iframe_id}; iframes: {sorted(page.iframes)}"
    source = urllib.parse.urlsplit(page.iframes[iframe_id])
    assert source.path == "/render", page.iframes[iframe_id]
    return urllib.parse.parse_qs(source.query)["content"][0]


def list_url(platform: Platform, query: str | None = None) -> str:
    url = f"{platform.ui_url}/namespaces/default/workflows"
    return f"{url}?{urllib.parse.urlencode({'query': query})}" if query else url


async def test_workflow_list_shows_the_rollouts(rollouts: Rollouts, tmp_path: Path) -> None:
    url = list_url(rollouts.platform)
    page = parse(await dump_dom(url, tmp_path))
    assert "3 Workflows" in page.text, page.text[:2000]
    assert rollouts.healthy in page.text
    assert rollouts.running in page.text
    assert rollouts.failed in page.text
    assert CanaryWorkflow.__name__ in page.text
    await screenshot(url, "workflow-list", tmp_path)


async def test_failed_phase_filter_lists_only_the_failed_rollout(
    rollouts: Rollouts, tmp_path: Path
) -> None:
    url = list_url(rollouts.platform, f'{search_attributes.PHASE.name}="Failed"')
    page = parse(await dump_dom(url, tmp_path))
    assert "1 Workflow" in page.text, page.text[:2000]
    assert rollouts.failed in page.text
    assert rollouts.healthy not in page.text
    # The filter shows as a chip, so a person sees why the list is short.
    assert f'{search_attributes.PHASE.name} = "Failed"' in page.text
    await screenshot(url, "workflow-list-failed", tmp_path)


async def test_rollout_page_shows_the_workflow_and_its_timer_summaries(
    rollouts: Rollouts, tmp_path: Path
) -> None:
    url = rollouts.platform.workflow_url(rollouts.failed)
    page = parse(await dump_dom(url, tmp_path))
    assert rollouts.failed in page.text
    assert CanaryWorkflow.__name__ in page.text
    assert f"Task Queue {contract.TASK_QUEUE}" in page.text
    assert rollouts.failed_run in page.text
    # Timer summaries label the timeline (3 analysis intervals before the rollback).
    for step in (1, 2, 3):
        assert f"analysis interval {step}/5" in page.text
    await screenshot(url, "rollout-timeline", tmp_path)


async def test_rollout_user_metadata_shows_summary_and_details(
    rollouts: Rollouts, tmp_path: Path
) -> None:
    url = f"{rollouts.platform.workflow_url(rollouts.failed)}/{rollouts.failed_run}/user-metadata"
    page = parse(await dump_dom(url, tmp_path))
    canary = rollouts.failed_canary
    summary = rendered_markdown(page, "user-metadata-summary")
    assert summary == f"{canary.target} bad {canary.spec.analysis.strategy}"
    details = rendered_markdown(page, "user-metadata-details")
    assert details.startswith(f"**{canary.target}**")
    assert '"name": "backend"' in details
    current = rendered_markdown(page, "user-metadata-current-details")
    assert current == status_markdown(canary, rollouts.failed_status)
    assert current.startswith(f"**{canary.target}** {Phase.FAILED}")
    await screenshot(url, "rollout-user-metadata", tmp_path)


INTERACTIVE_FLAGS = tuple(flag for flag in CHROMIUM_FLAGS if "virtual-time" not in flag)
"""Driven over DevTools, the page runs in real time until the test is done with it."""
PAGE_TIMEOUT_SECONDS = 30
ACTIONS = '[aria-controls="workflow-actions"]'
STATUSES = {"Running", "Completed", "Failed", "Terminated", "Canceled"}


def _shown(selector: str) -> str:
    """JavaScript for the first element `selector` matches that is displayed: the workflow
    page renders its actions twice, once for narrow screens (hidden here)."""
    return f"[...document.querySelectorAll({selector!r})].find(found => found.checkVisibility())"


def _status_column(url: str, workflow_ids: list[str], profile: Path) -> dict[str, str]:
    """The status each listed workflow's row shows (the row also has a "Select" box)."""
    rows = """[...document.querySelectorAll("tr")].map(row => row.innerText.trim())"""
    with Browser(CHROMIUM, INTERACTIVE_FLAGS, profile) as browser:
        browser.navigate(url)
        found: list[str] = browser.wait_for(
            f"(rows => {json.dumps(workflow_ids)}.every(id => rows.some(r => r.includes(id)))"
            f" && rows)({rows})",
            PAGE_TIMEOUT_SECONDS,
            "the workflow rows",
        )
    statuses = {}
    for workflow_id in workflow_ids:
        words = next(row for row in found if workflow_id in row).split()
        statuses[workflow_id] = next(
            (word.capitalize() for word in words if word.capitalize() in STATUSES), " ".join(words)
        )
    return statuses


def _signal_dialog_sends_pause(url: str, profile: Path) -> list[tuple[str, str]]:
    """Open More Actions > Send a Signal; list the offered signals; send `pause` (no input)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dialog = _shown("#signal-confirmation-modal")
    options = f"[...{dialog}.querySelectorAll('li[role=option]')]"
    with Browser(CHROMIUM, INTERACTIVE_FLAGS, profile) as browser:
        browser.navigate(url)
        for step in (ACTIONS, '[data-testid="signal-button"]'):
            browser.wait_for(f"!!{_shown(step)}", PAGE_TIMEOUT_SECONDS, step)
            browser.evaluate(f"{_shown(step)}.click()")
        offered: list[list[str]] = browser.wait_for(
            f"""(items => items.length > 1 && items.map(item => [
                item.querySelector(".menu-item-wrapper").textContent.trim(),
                (item.querySelector(".menu-item-description") || {{}}).textContent || ""
            ]))({options})""",
            PAGE_TIMEOUT_SECONDS,
            "the signal names",
        )
        select = f"{dialog}.querySelector('[data-testid=signal-select-button]')"
        browser.evaluate(f"{select}.click()")
        listbox = f"{dialog}.querySelector('[role=listbox]')"
        shown = f"getComputedStyle({listbox}).opacity === '1'"  # once its transition is done
        browser.wait_for(shown, PAGE_TIMEOUT_SECONDS, "the list of signals")
        browser.screenshot(ARTIFACTS / "signal-dialog.png")
        browser.evaluate(
            f'{options}.find(item => item.textContent.trim().startsWith("pause")).click()'
        )
        submit = f"{dialog}.querySelector('[data-testid=confirm-modal-button]')"
        browser.wait_for(f"!{submit}.disabled", PAGE_TIMEOUT_SECONDS, "Submit enabled")
        browser.evaluate(f"{submit}.click()")
        browser.wait_for(f"!{dialog}", PAGE_TIMEOUT_SECONDS, "the dialog to close")
    return [(name, description) for name, description in offered]


async def test_the_list_shows_the_rolled_back_rollout_as_failed(
    rollouts: Rollouts, tmp_path: Path
) -> None:
    url = list_url(rollouts.platform)
    ids = [rollouts.healthy, rollouts.running, rollouts.failed]
    statuses = await asyncio.to_thread(_status_column, url, ids, tmp_path / "profile")
    assert statuses == {
        rollouts.healthy: "Completed",
        rollouts.running: "Running",
        rollouts.failed: "Failed",
    }


async def test_the_signal_dialog_offers_the_controls_and_sends_pause(
    rollouts: Rollouts, tmp_path: Path
) -> None:
    url = rollouts.platform.workflow_url(rollouts.running)
    offered = await asyncio.to_thread(_signal_dialog_sends_pause, url, tmp_path / "profile")
    names = [name for name, _ in offered]
    assert names[0] == "Custom"
    assert {"pause", "resume", "promote", "abort"} <= set(names)
    described = dict(offered)
    assert described["pause"].startswith("Pause the analysis")
    assert described["promote"].startswith("Promote now")
    assert described["abort"].startswith("Roll back now")
    assert described["resume"].startswith("Resume a paused analysis")
    handle = rollout_handle(rollouts.client, rollouts.running)
    deadline = asyncio.get_running_loop().time() + PAGE_TIMEOUT_SECONDS
    while not (status := await handle.query(CanaryWorkflow.status)).paused:
        assert asyncio.get_running_loop().time() < deadline, f"not paused: {status}"
        await asyncio.sleep(0.2)
    assert status.phase == Phase.PROGRESSING
    assert status.events[-1].message == "Canary analysis of frontend.test paused"
