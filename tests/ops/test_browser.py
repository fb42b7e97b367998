"""The web UI in a real browser: Debian's Chromium driven by playwright.

Marked ``browser``; run in CI like every other test. Without Chromium the tests fail,
saying how to install it (``make install`` does, as root).
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
import uvicorn
from luno_wf_ops import create_app
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from starlette.applications import Starlette
from starlette.routing import Mount

from luno_wf import Record, RunState
from luno_wf.memory import MemRecordStore

from .support import build, seed

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("LUNO_WF_TEST_CHROMIUM", "/usr/bin/chromium")
HOW_TO = (
    f"no Chromium at {CHROMIUM} for the browser tests: install Debian's with "
    "`apt-get update && apt-get install -y chromium chromium-driver` (as root; "
    "`make install` does it), or point LUNO_WF_TEST_CHROMIUM at a Chromium binary"
)
PREFIX = "/ops"
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
    """The UI served by uvicorn in a thread, mounted under ``/ops``, over a seeded store."""

    def __init__(self) -> None:
        self.store = MemRecordStore()
        self.runs: list[Record] = run_aside(seed(self.store, 4))
        app = create_app(self.store, workflows=[build(self.store)], read_only=False)
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}{PREFIX}"
        config = uvicorn.Config(
            Starlette(routes=[Mount(PREFIX, app=app)]),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
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


@pytest.fixture
def served() -> Iterator[Served]:
    with Served() as served:
        yield served


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
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


def test_filter_open_a_run_and_pause_it(served: Served, page: Page) -> None:
    page.goto(f"{served.url}/runs")
    expect(page.locator("a.run-link")).to_have_count(4)
    # htmx loaded from the app's own static files, under the CSP.
    assert page.evaluate("typeof window.htmx") == "object"

    page.fill("input[name=status]", "AWAITING_PAYMENT")
    page.click("form.filters button[type=submit]")
    expect(page).to_have_url(f"{served.url}/runs?status=AWAITING_PAYMENT")
    expect(page.locator("a.run-link")).to_have_count(2)

    page.locator("a.run-link").first.click()
    expect(page.locator("#run-state")).to_have_text("RUNNING")
    pause = page.locator("form.action.pause")
    pause.locator("input[name=reason]").fill("waiting for the bank")
    pause.locator("button").click()

    expect(page.locator(".message")).to_contain_text("paused by anonymous")
    expect(page.locator("#run-state")).to_have_text("PAUSED")
    expect(page.locator("#reason")).to_have_text("waiting for the bank")
    run_id = page.locator("h1 code").inner_text()
    stored = run_aside(served.store.lookup(run_id))
    assert (stored.run_state, stored.meta.run_state_reason) == (
        RunState.PAUSED,
        "waiting for the bank",
    )


def test_overview_and_workflow_graph_render(served: Served, page: Page) -> None:
    page.goto(f"{served.url}/")
    expect(page.locator("svg.graph")).to_be_visible()
    page.locator("svg.graph a", has_text="PAID").click()
    expect(page).to_have_url(f"{served.url}/runs?workflow=orders&status=PAID")
    expect(page.locator("a.run-link")).to_have_count(2)
    page.goto(f"{served.url}/workflows/orders")
    expect(page.locator("svg.graph .node")).to_have_count(4)
