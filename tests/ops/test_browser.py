"""The web UI in a real browser: Debian's Chromium driven by playwright.

Marked ``browser``; run in CI like every other test. Without Chromium the tests fail,
saying how to install it (``make install`` does, as root).

The UI is served on its own (at ``/``, as ``luno-wf ui`` does) and mounted under ``/ops``
in a host application, over a store of twelve orders (``support.showcase``).
``test_screenshots_for_the_docs`` saves the pictures docs/operations.md shows, in
``docs/images/``: the data, the clock and the run ids are fixed, so they change only when
the pages do.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn
from luno_wf_ops import OpsService, create_app
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)
from starlette.applications import Starlette
from starlette.routing import Mount

from luno_wf import Record, RunState
from luno_wf.memory import MemRecordStore
from luno_wf.testing import FakeClock

from .support import T0, build, showcase

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("LUNO_WF_TEST_CHROMIUM", "/usr/bin/chromium")
HOW_TO = (
    f"no Chromium at {CHROMIUM} for the browser tests: install Debian's with "
    "`apt-get update && apt-get install -y chromium chromium-driver` (as root; "
    "`make install` does it), or point LUNO_WF_TEST_CHROMIUM at a Chromium binary"
)
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
T = TypeVar("T")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(HOW_TO, pytrace=False)
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                ],
            )
        except Exception as error:
            pytest.fail(f"{HOW_TO}\n(launching {CHROMIUM} failed: {error})", pytrace=False)
        yield browser
        browser.close()


def run_aside(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end in a thread of its own (playwright's sync API holds an
    event loop in this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Served:
    """The UI served by uvicorn in a thread over the showcase store, at ``prefix``.

    At ``""`` the UI is the whole application; otherwise it is mounted there in a host
    Starlette app. Actions are allowed, in the name of ``ann``.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.clock = FakeClock(T0)
        self.store = MemRecordStore(clock=self.clock)
        self.runs: dict[str, Record] = run_aside(showcase(self.store, self.clock))
        service = OpsService(self.store, workflows=[build(self.store)], clock=self.clock)
        app = create_app(service, read_only=False, identity=lambda request: "ann")
        host = Starlette(routes=[Mount(prefix, app=app)]) if prefix else app
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}{prefix}"
        config = uvicorn.Config(
            host, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start in 10 s"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(params=["", "/ops"], ids=["standalone", "mounted"])
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    with Served(request.param) as served:
        yield served


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, timezone_id="UTC", locale="en-GB")
    page = context.new_page()
    violations: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            violations.append(message.text)

    page.on("console", on_console)
    yield page
    context.close()
    # Every page works under the strict CSP: the browser reported no blocked script or style.
    assert violations == []


def act(page: Page, verb: str, reason: str) -> None:
    """Fill in the reason of the run page's ``verb`` form and submit it."""
    form = page.locator(f"form.action.{verb}")
    form.locator("input[name=reason]").fill(reason)
    form.locator("button").click()


def filter_open_pause_and_resume(served: Served, page: Page) -> None:
    """List the runs, filter them by status, open the newest and pause, then resume it."""
    page.goto(f"{served.url}/runs")
    expect(page.locator("a.run-link")).to_have_count(12)
    # htmx loaded from the app's own static files, under the CSP.
    assert page.evaluate("typeof window.htmx") == "object"

    page.fill("input[name=status]", "AWAITING_PAYMENT")
    page.click("form.filters button[type=submit]")
    expect(page).to_have_url(f"{served.url}/runs?status=AWAITING_PAYMENT")
    # Four waiting to pay, and one cancelled while it waited.
    expect(page.locator("a.run-link")).to_have_count(5)

    page.locator("a.run-link").first.click()
    expect(page.locator("#run-state")).to_have_text("RUNNING")
    served.clock.advance(timedelta(minutes=1))
    act(page, "pause", "card fraud check")
    expect(page.locator(".message")).to_contain_text("paused by ann")
    expect(page.locator("#run-state")).to_have_text("PAUSED")
    expect(page.locator("#reason")).to_have_text("card fraud check")

    served.clock.advance(timedelta(minutes=1))
    act(page, "resume", "the bank confirmed the card")
    expect(page.locator(".message")).to_contain_text("resumed by ann")
    expect(page.locator("#run-state")).to_have_text("RUNNING")


def test_list_filter_pause_resume_and_read_who_did_what(served: Served, page: Page) -> None:
    filter_open_pause_and_resume(served, page)
    run_id = page.locator("h1 code").inner_text()
    assert run_id == served.runs["order-1011"].run_id  # the newest waiting to pay

    # The history timeline: each write, who made it and why, oldest first.
    entries = page.locator("#history .timeline li")
    expect(entries).to_have_count(4)
    expect(entries.nth(0)).to_contain_text("CREATED")
    expect(entries.nth(0).locator(".actor")).to_have_text("by api")
    expect(entries.nth(1).locator(".actor")).to_have_text("by step:CREATED")
    paused, resumed = entries.nth(2), entries.nth(3)
    expect(paused.locator(".state")).to_have_text("PAUSED")
    expect(paused.locator(".actor")).to_have_text("by operator:ann")
    expect(paused.locator(".reason")).to_have_text("— card fraud check")
    expect(resumed.locator(".state")).to_have_text("RUNNING")
    expect(resumed.locator(".actor")).to_have_text("by operator:ann")
    expect(resumed.locator(".reason")).to_have_text("— the bank confirmed the card")

    stored = run_aside(served.store.lookup(run_id))
    assert (stored.run_state, stored.meta.version, stored.meta.actor) == (
        RunState.RUNNING,
        4,
        "operator:ann",
    )
    history = run_aside(served.store.history(run_id))
    assert [(h.actor, h.reason) for h in history[2:]] == [
        ("operator:ann", "card fraud check"),
        ("operator:ann", "the bank confirmed the card"),
    ]


def test_overview_and_workflow_graph_render(served: Served, page: Page) -> None:
    page.goto(f"{served.url}/")
    expect(page.locator("svg.graph")).to_be_visible()
    expect(page.locator("#lag table.outbox td.age")).to_have_text(["10m 0s"])
    page.locator("svg.graph a", has_text="PAID").click()
    expect(page).to_have_url(f"{served.url}/runs?workflow=orders&status=PAID")
    expect(page.locator("a.run-link")).to_have_count(2)  # both paused
    page.goto(f"{served.url}/workflows/orders")
    expect(page.locator("svg.graph .node")).to_have_count(4)


def test_screenshots_for_the_docs(browser: Browser) -> None:
    """The pictures of docs/operations.md: the overview, the runs list and a run page."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport=VIEWPORT, timezone_id="UTC", locale="en-GB")
    page = context.new_page()
    try:
        with Served("/ops") as served:
            page.goto(f"{served.url}/")
            expect(page.locator("svg.graph")).to_be_visible()
            page.screenshot(path=IMAGES / "ops-overview.png", full_page=True)

            filter_open_pause_and_resume(served, page)
            page.goto(f"{served.url}/runs")
            expect(page.locator("a.run-link")).to_have_count(12)
            page.screenshot(path=IMAGES / "ops-runs.png", full_page=True)

            page.goto(f"{served.url}/runs/{served.runs['order-1011'].run_id}")
            expect(page.locator("#history .timeline li")).to_have_count(4)
            page.screenshot(path=IMAGES / "ops-run.png", full_page=True)
    finally:
        context.close()
    for name in ("ops-overview.png", "ops-runs.png", "ops-run.png"):
        assert (IMAGES / name).read_bytes().startswith(b"\x89PNG"), name
