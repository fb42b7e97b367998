"""The web UI through Starlette's TestClient, mounted under a prefix as a user would."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from luno_wf_ops import OpsService, RunRow, create_app
from luno_wf_ops.web._security import CSRF_COOKIE
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount
from starlette.testclient import TestClient

from luno_wf import Record, RunState
from luno_wf.memory import MemRecordStore
from luno_wf.testing import FakeClock

from .support import WORKFLOW, OrderStatus, build, put, record, seed

PREFIX = "/admin/workflows"


def mounted(store: MemRecordStore, service: OpsService | None = None, **options: Any) -> TestClient:
    app = create_app(service or store, workflows=[build(store)], **options)
    return TestClient(Starlette(routes=[Mount(PREFIX, app=app)]), base_url="http://ops.test")


@pytest.fixture
def store() -> MemRecordStore:
    return MemRecordStore()


@pytest.fixture
def runs(store: MemRecordStore) -> list[Record]:
    return asyncio.run(seed(store, 4))


@pytest.fixture
def client(store: MemRecordStore, runs: list[Record]) -> Iterator[TestClient]:
    with mounted(store, read_only=False) as client:
        yield client


def token(client: TestClient, path: str) -> str:
    page = client.get(path)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found[1]


def test_every_page_answers_under_the_prefix_with_a_strict_csp(
    client: TestClient, runs: list[Record]
) -> None:
    for path in ("/", "/runs", f"/runs/{runs[0].run_id}", "/workflows", "/workflows/orders"):
        page = client.get(PREFIX + path)
        assert page.status_code == 200, (path, page.text)
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        # Links, scripts and styles point inside the mount; no inline script or style.
        assert f'href="{PREFIX}/static/ops.css"' in page.text
        assert f'src="{PREFIX}/static/htmx-2.0.11.min.js"' in page.text
        assert not re.search(r"<script(?![^>]*\ssrc=)", page.text)
        assert " style=" not in page.text and "<style" not in page.text
    assert client.get(PREFIX + "/static/htmx-2.0.11.min.js").status_code == 200


def test_runs_page_filters_from_the_query_string(client: TestClient) -> None:
    page = client.get(PREFIX + "/runs", params={"status": "PAID"})
    assert "order-1" in page.text and "order-3" in page.text
    assert "order-0" not in page.text and "order-2" not in page.text
    # A submitted form's empty fields are dropped from the address (a clean link to share).
    form = client.get(
        PREFIX + "/runs", params={"workflow": "", "status": "PAID"}, follow_redirects=False
    )
    assert form.status_code == 303
    assert form.headers["location"] == f"{PREFIX}/runs?status=PAID"
    bad = client.get(PREFIX + "/runs", params={"run_state": "sleepy"})
    assert bad.status_code == 400 and "unknown run state" in bad.text


def test_runs_page_pages_by_cursor(store: MemRecordStore, client: TestClient) -> None:
    asyncio.run(seed(store, 60, prefix="more"))  # 64 runs: two pages of 50
    first = client.get(PREFIX + "/runs")
    next_link = re.search(r'rel="next" href="([^"]+)"', first.text)
    assert next_link
    second = client.get(next_link[1].replace("&amp;", "&"))
    assert second.text.count('class="run-link"') == 14
    assert 'rel="next"' not in second.text


def test_run_page_shows_the_decoded_object_and_the_history(
    client: TestClient, runs: list[Record]
) -> None:
    page = client.get(f"{PREFIX}/runs/{runs[0].run_id}")
    assert "Order" in page.text and "&#34;amount&#34;: 100" in page.text
    assert '<ol class="timeline">' in page.text and '<span class="version">v1</span>' in page.text
    assert "keeps no history" not in page.text
    assert client.get(f"{PREFIX}/runs/nope").status_code == 404


def test_pause_with_a_reason_through_the_form(
    store: MemRecordStore, client: TestClient, runs: list[Record]
) -> None:
    path = f"{PREFIX}/runs/{runs[0].run_id}"
    done = client.post(
        f"{path}/pause",
        data={"csrf_token": token(client, path), "reason": "looks odd"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"].startswith(path + "?done=paused+by+anonymous")
    stored = asyncio.run(store.lookup(runs[0].run_id))
    assert (stored.run_state, stored.meta.run_state_reason) == (RunState.PAUSED, "looks odd")
    again = client.post(f"{path}/pause", data={"csrf_token": token(client, path)})
    assert again.status_code == 409 and "Paused" in again.text


def test_cancel_needs_a_reason(client: TestClient, runs: list[Record]) -> None:
    path = f"{PREFIX}/runs/{runs[0].run_id}"
    refused = client.post(f"{path}/cancel", data={"csrf_token": token(client, path)})
    assert refused.status_code == 409 and "needs a reason" in refused.text


def test_posts_without_the_csrf_token_or_from_elsewhere_are_refused(
    client: TestClient, runs: list[Record]
) -> None:
    path = f"{PREFIX}/runs/{runs[0].run_id}"
    good = token(client, path)
    assert client.post(f"{path}/pause", data={"reason": "x"}).status_code == 403
    assert client.post(f"{path}/pause", data={"csrf_token": "forged"}).status_code == 403
    foreign = client.post(
        f"{path}/pause", data={"csrf_token": good}, headers={"origin": "http://evil.test"}
    )
    assert foreign.status_code == 403
    assert client.cookies.get(CSRF_COOKIE) == good


def test_read_only_refuses_actions_and_shows_none(
    store: MemRecordStore, runs: list[Record]
) -> None:
    with mounted(store) as client:  # read_only is the default
        path = f"{PREFIX}/runs/{runs[0].run_id}"
        page = client.get(path)
        assert "read-only" in page.text and "/pause" not in page.text
        tok = client.cookies.get(CSRF_COOKIE) or ""
        refused = client.post(f"{path}/pause", data={"csrf_token": tok, "reason": "x"})
        assert refused.status_code == 403 and "read-only" in refused.text
        bulk = client.get(f"{PREFIX}/runs/bulk/pause", params={"workflow": "orders"})
        assert bulk.status_code == 403
    assert asyncio.run(store.lookup(runs[0].run_id)).run_state == RunState.RUNNING


def test_authorize_and_identity_hooks(store: MemRecordStore, runs: list[Record]) -> None:
    async def identity(request: Request) -> str:
        return request.headers.get("x-user", "")

    def authorize(request: Request, action: str) -> bool:
        return action != "cancel" and request.headers.get("x-user") == "ann"

    with mounted(store, read_only=False, authorize=authorize, identity=identity) as client:
        path = f"{PREFIX}/runs/{runs[0].run_id}"
        page = client.get(path, headers={"x-user": "ann"})
        assert f"{path}/pause" in page.text and f"{path}/cancel" not in page.text
        tok = client.cookies.get(CSRF_COOKIE) or ""
        data = {"csrf_token": tok, "reason": "r"}
        assert client.post(f"{path}/pause", data=data).status_code == 403  # not ann
        assert (
            client.post(f"{path}/cancel", data=data, headers={"x-user": "ann"}).status_code == 403
        )
        done = client.post(
            f"{path}/pause", data=data, headers={"x-user": "ann"}, follow_redirects=False
        )
        assert done.headers["location"].endswith("?done=paused+by+ann")


def test_bulk_action_confirms_the_count_then_applies(
    store: MemRecordStore, client: TestClient
) -> None:
    confirm = client.get(f"{PREFIX}/runs/bulk/resume", params={"workflow": "orders"})
    assert confirm.status_code == 200
    assert re.search(r'id="eligible">2<', confirm.text)
    assert "Resume 2 runs" in confirm.text
    tok = client.cookies.get(CSRF_COOKIE) or ""
    form = {"csrf_token": tok, "workflow": "orders", "expected": "1", "reason": ""}
    changed = client.post(f"{PREFIX}/runs/bulk/resume", data=form)
    assert changed.status_code == 409 and "confirm again" in changed.text
    done = client.post(f"{PREFIX}/runs/bulk/resume", data={**form, "expected": "2"})
    assert done.status_code == 200 and "Resumed: 2 runs" in done.text
    assert client.get(f"{PREFIX}/runs/bulk/pause").status_code == 400  # no filter


def test_overview_draws_counts_on_the_graph(store: MemRecordStore, client: TestClient) -> None:
    asyncio.run(put(store, record("late", OrderStatus.CREATED, RunState.INITIATED)))
    page = client.get(PREFIX + "/")
    assert '<svg class="graph"' in page.text
    assert "2 runs · 2 paused" in page.text  # PAID
    assert f'href="{PREFIX}/runs?workflow=orders&amp;status=PAID"' in page.text
    assert "Stuck" in page.text and "3 runs" in page.text
    assert "Outbox: events written, not yet published" in page.text
    assert "consumer lag is known for the PostgreSQL event stream only" in page.text
    graph = client.get(PREFIX + "/workflows/orders")
    assert "stateDiagram-v2" in graph.text
    assert client.get(PREFIX + "/workflows/refunds").status_code == 404


def test_the_overview_shows_the_outbox_lag_with_its_age(
    store: MemRecordStore, runs: list[Record]
) -> None:
    # Each stored record left one unpublished event in the outbox, stamped when stored.
    (oldest,) = {e.created_at for e in asyncio.run(store.list_outbox_events(WORKFLOW, 1))}
    clock = FakeClock(oldest + timedelta(hours=2, minutes=5, seconds=7))
    service = OpsService(store, workflows=[build(store)], clock=clock)
    with mounted(store, service=service) as client:
        page = client.get(PREFIX + "/").text
    lag = page[page.index('<section class="card" id="lag">') :]
    assert "<td>orders</td><td>4</td>" in lag, lag
    assert '<td class="age">2h 5m</td>' in lag, lag
    assert "consumer lag is known for the PostgreSQL event stream only" in lag


def test_the_redaction_hook_decides_what_a_run_page_shows(
    store: MemRecordStore, runs: list[Record]
) -> None:
    seen: list[tuple[str, Any]] = []

    async def redact(row: RunRow, data: Any) -> Any:
        seen.append((row.foreign_id, data))
        return {**data, "amount": "***"}

    with mounted(store, redact=redact) as client:
        page = client.get(f"{PREFIX}/runs/{runs[0].run_id}").text
    assert seen == [("order-0", {"id": "order-0", "amount": 100})]
    shown = page[page.index('<section class="card" id="object">') :]
    assert "&#34;amount&#34;: &#34;***&#34;" in shown and "100" not in shown, shown
    assert "Redacted for display." in shown
    # The workflow's own report (in Inspection) leaves the object out too.
    assert "object:     (not shown here" in page and "amount&#34;:100" not in page, page

    # A string is shown as is; a hook that fails shows no object at all.
    with mounted(store, redact=lambda row, data: "(hidden)") as client:
        page = client.get(f"{PREFIX}/runs/{runs[0].run_id}").text
    assert '<pre class="object">(hidden)</pre>' in page

    def broken(row: RunRow, data: Any) -> Any:
        raise KeyError("card")

    with mounted(store, redact=broken) as client:
        page = client.get(f"{PREFIX}/runs/{runs[0].run_id}").text
    assert page.count('<pre class="object">') == 0 and "order-0&#34;" not in page
    assert "Hidden: the redaction hook failed (KeyError)." in page


def test_with_a_redaction_hook_a_decode_error_names_only_its_type(store: MemRecordStore) -> None:
    (run,) = asyncio.run(put(store, record("odd", obj=b'{"id": 5, "amount": "secret"}')))
    with mounted(store) as client:
        assert "secret" in client.get(f"{PREFIX}/runs/{run.run_id}").text
    with mounted(store, redact=lambda row, data: {"id": data["id"]}) as client:
        page = client.get(f"{PREFIX}/runs/{run.run_id}").text
    assert "Cannot decode: " in page and "secret" not in page, page
