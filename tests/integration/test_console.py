"""The web console in headless Chromium (Debian's, driven by Playwright): live state, one-click rollback
with confirmation, the read-only view. Screenshots are kept in artifacts/ (a CI artefact)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import httpx
import pytest

from judges.queue import JudgeQueue
from router.store import connect

ADMIN = {"authorization": "Bearer admin-secret"}
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

@pytest.fixture
async def rolling(backend_factory, gateway_factory, redis_srv, key_prefix):
    _, s = backend_factory("stable", model="base")
    _, c = backend_factory("cand", model="ft")
    stages = [{"name": "canary", "weight_pct": 50}, {"name": "full", "weight_pct": 100}]
    gw = gateway_factory([{"name": "v1", "base_url": f"{s.url}/v1", "model": "base"},
                          {"name": "v2", "base_url": f"{c.url}/v1", "model": "ft"}],
                         [{"name": "support-bot", "stable": "v1"}],
                         controller={"interval_s": 0.2, "policy": {"stages": stages}})
    # a split set by hand: the controller analyses it (what the console shows) but leaves the decision to us
    r = httpx.put(f"{gw.url}/admin/aliases/support-bot/split", headers=ADMIN,
                  json={"candidate": "v2", "weight_pct": 50})
    rollout = r.json()["rollout_id"]
    client = connect(redis_srv.url)
    q = JudgeQueue(client, key_prefix)
    for i in range(120):  # judged pairs as workers record them: reasoning loses, coding holds
        for cat, outcome in (("reasoning", "losses" if i % 3 else "ties"), ("coding", "wins" if i % 2 else "ties")):
            await q.record(request_id=f"{cat}-{i}", alias="support-bot", rollout_id=rollout, pair_json="{}", ts=1.0,
                           increments={f"{cat}:n": 1, f"{cat}:{outcome}": 1}, ttl_s=3600)
    await client.aclose()
    return gw


async def test_console_rollback_with_admin_token_and_read_only_view(rolling):
    from playwright.async_api import async_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: scripts/test.sh installs it"
    gw = rolling
    head = httpx.get(f"{gw.url}/console")
    assert "frame-ancestors 'none'" in head.headers["content-security-policy"]
    assert head.headers["x-frame-options"] == "DENY"
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 1000})
        await page.goto(f"{gw.url}/console")
        await page.fill("#token", "admin-secret")
        await page.click("#login button[type=submit]")
        card = page.locator('article[data-alias="support-bot"]')
        await card.locator('tr[data-category="reasoning"]').wait_for(timeout=15_000)
        assert "regressed" in await card.locator('tr[data-category="reasoning"]').inner_text()
        assert "gate met" in await card.locator('tr[data-category="coding"]').inner_text()
        assert "manual" in await card.inner_text() and "50%" in await card.inner_text()
        assert "next gate" in await card.inner_text() and "controller:" in await card.inner_text()
        assert await card.locator("svg.ci").count() == 2
        await page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)

        # a second tab, left open on the same state, whose refreshes stop (a stale page)
        stale = await browser.new_page(viewport={"width": 1280, "height": 1000})
        await stale.goto(f"{gw.url}/console")
        await stale.fill("#token", "admin-secret")
        await stale.click("#login button[type=submit]")
        stale_card = stale.locator('article[data-alias="support-bot"]')
        await stale_card.locator('button[data-action="rollback"]').wait_for()
        await stale.route("**/admin/state", lambda route: route.abort())

        await card.locator('button[data-action="rollback"]').click()
        dialog = page.locator("#confirm")
        assert "All traffic for support-bot goes to v1" in await dialog.inner_text()
        await page.fill("#confirm-reason", "reasoning regressed on the console")
        await page.click("#confirm-ok")
        await card.locator(".phase.rolled_back").wait_for(timeout=10_000)
        await page.locator("#events tbody tr", has_text="rolled_back").first.wait_for(timeout=10_000)
        await page.screenshot(path=str(ARTIFACTS / "console-rolled-back.png"), full_page=True)

        # the stale tab still shows the old state and a Rollback button: its click is refused, nothing changes
        await stale_card.locator('button[data-action="rollback"]').click()
        await stale.fill("#confirm-reason", "clicked on an old page")
        await stale.click("#confirm-ok")
        toast = stale.locator("#toast.show")
        await toast.wait_for(timeout=10_000)
        assert "changed since you looked" in await toast.inner_text()
        events = httpx.get(f"{gw.url}/admin/events?count=20", headers=ADMIN).json()["events"]
        assert [e["type"] for e in events].count("rolled_back") == 1

        # traffic answers from stable now
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient() as h:
            versions = {(await h.post(f"{gw.url}/v1/chat/completions", json={
                "model": "support-bot", "user": f"u{i}", "messages": []})).headers["x-cliffguard-version"]
                for i in range(20)}
        assert versions == {"v1"}

        viewer = await browser.new_page()
        await viewer.goto(f"{gw.url}/console")
        await viewer.fill("#token", "read-secret")
        await viewer.click("#login button[type=submit]")
        await viewer.locator('article[data-alias="support-bot"]').wait_for()
        assert "read-only" in await viewer.locator("#who").inner_text()
        assert await viewer.locator("article button").count() == 0
        await viewer.screenshot(path=str(ARTIFACTS / "console-read-only.png"), full_page=True)
        await browser.close()
