"""End to end in Debian's Chromium (Playwright): log in, overview with data, drill into a risky user
from the review queue and resolve it, backtest and save a rule change, approve an MCP drift.
Screenshots of each page go to test-output/console/ (not committed)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_harness import ConsoleEnv, make_env, risky_user_events, seed_drift, seed_inline, stuffing_events

from vallum.mcp.pins import FilePinStore

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"no Chromium at {CHROMIUM} (apt-get install chromium; scripts/test installs it as root)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """uvicorn serving the app on a loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def live(tmp_data_dir: Path) -> Iterator[tuple[ConsoleEnv, str]]:
    env = make_env(tmp_data_dir)
    with LiveServer(env.app) as base:
        yield env, base
    env.store.engine.dispose()


@pytest.fixture
def shots(output_dir: Path) -> Path:
    d = output_dir / "console"
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_analyst_journey(live: tuple[ConsoleEnv, str], shots: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    env, base = live
    now = time.time()
    # seed through the real API over loopback
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {env.api_key}"}, trust_env=False) as api:
        r = api.post("/api/v1/events?wait=true", json=stuffing_events(now) + risky_user_events(now))
        assert r.status_code == 202 and r.json()["accepted"] == 50, r.text
    seed_inline(env, now)
    seed_drift(env, "files")
    assert any(x["entity_id"] == "u_mallory" for x in env.store.list_reviews())

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.set_default_timeout(10_000)

            # log in (the first-run admin credentials)
            page.goto(base + "/")
            expect(page).to_have_url(base + "/login?next=%2F")
            page.screenshot(path=str(shots / "01-login.png"))
            page.get_by_label("Username").fill("admin")
            page.get_by_label("Password").fill(env.admin_password)
            page.get_by_role("button", name="Log in").click()
            expect(page).to_have_url(base + "/")

            # overview with data: charts drawn by uPlot, rules, inline blocks, risky entities
            page.wait_for_selector("figure.chart canvas")
            expect(page.locator("#h-rules + table")).to_contain_text("guard.repeated_blocks")
            expect(page.locator("#h-blocks + table")).to_contain_text("credential")
            expect(page.locator("#h-top + table")).to_contain_text("u_mallory")
            assert page.evaluate("typeof htmx") == "object"
            page.screenshot(path=str(shots / "02-overview.png"), full_page=True)
            # live refresh: htmx polls the panels and the charts are drawn again after the swap
            page.goto(base + "/?range=6h&refresh=2")
            with page.expect_request(lambda rq: "/overview/panels?range=6h" in rq.url, timeout=8_000):
                pass
            page.wait_for_selector("figure.chart canvas")
            page.get_by_label("Time range").select_option("1h")
            page.get_by_role("button", name="Show").click()
            expect(page).to_have_url(base + "/?range=1h")

            # review queue → the risky user → resolve
            page.get_by_role("link", name="Review queue").click()
            expect(page.locator("main h1")).to_have_text("Review queue")
            page.screenshot(path=str(shots / "03-review-queue.png"), full_page=True)
            page.get_by_role("link", name="User u_mallory").click()
            expect(page.locator("main h1")).to_contain_text("u_mallory")
            page.wait_for_selector("figure.chart canvas")
            expect(page.locator("#h-why + table")).to_contain_text("guard.repeated_blocks")
            page.screenshot(path=str(shots / "04-entity-user.png"), full_page=True)
            page.locator("section[aria-labelledby=h-actions] a", has_text="#").first.click()
            expect(page.locator("main h1")).to_contain_text("Review #")
            page.get_by_label("Resolution").select_option("fraud")
            page.locator("#note").fill("Leaked key used by a scraper; key revoked.")
            page.get_by_role("button", name="Resolve").click()
            expect(page.locator("dl.facts")).to_contain_text("resolved (fraud)")
            page.screenshot(path=str(shots / "05-review-resolved.png"), full_page=True)
            assert not [x for x in env.store.list_reviews() if x["entity_id"] == "u_mallory"]

            # block-list with the confirmation step
            page.goto(base + "/entities/user/u_mallory")
            page.get_by_label("Reason (kept with the override or review)").fill("confirmed abuse")
            page.get_by_role("button", name="Block-list…").click()
            expect(page.locator("main h1")).to_contain_text("Confirm")
            page.screenshot(path=str(shots / "06-confirm-block.png"))
            page.get_by_role("button", name="Yes, block").click()
            expect(page.locator("p.note")).to_contain_text("block-listed")
            assert env.app.state.behaviour.engine.decide("user", "u_mallory").action == "block"

            # rules: backtest (htmx, CSRF header), then save
            page.get_by_role("link", name="Rules").click()
            page.screenshot(path=str(shots / "07-rules.png"), full_page=True)
            page.get_by_role("link", name="auth.stuffing_ip").click()
            page.get_by_label("Weight (0–100)").fill("55")
            page.get_by_label("Backtest over").select_option("all")
            page.get_by_role("button", name="Run backtest").click()
            expect(page.locator("#backtest")).to_contain_text("would fire on 1 entity")
            expect(page.locator("#backtest table")).to_contain_text("203.0.113.7")
            page.screenshot(path=str(shots / "08-rule-backtest.png"), full_page=True)
            assert env.store.rule_settings() == {}
            page.get_by_role("button", name="Save").click()
            expect(page.locator("p.ok")).to_have_text("Saved.")
            assert env.store.rule_settings()["auth.stuffing_ip"]["weight"] == 55

            # MCP drift: see the diff, approve
            page.get_by_role("link", name="MCP tools").click()
            expect(page.locator("pre.diff")).to_contain_text("id_rsa")
            page.screenshot(path=str(shots / "09-mcp-pending.png"), full_page=True)
            page.get_by_role("button", name="Approve read_file").click()
            expect(page.locator("p.ok")).to_contain_text("approved")
            assert FilePinStore(env.pins_dir).state("files")["pending"] == {}

            # the remaining pages render
            for name, path, text in (("10-events", "/events", "auth.login_failed"),
                                     ("11-traffic", "/traffic", "ghp_…[redacted]"),
                                     ("12-audit", "/audit", "intact"),
                                     ("13-users", "/users", "Add a user")):
                page.goto(base + path)
                expect(page.locator("main")).to_contain_text(text)
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

            # keyboard: the first Tab reaches the skip link, which moves focus to the content
            page.goto(base + "/rules")
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.textContent") == "Skip to content"
            page.keyboard.press("Enter")
            assert page.evaluate("document.activeElement.id") == "main"
        finally:
            browser.close()
    assert not errors, errors
