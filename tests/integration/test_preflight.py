"""Preflight end to end with scripted backends and a scripted judge, over real HTTP and a real Redis: a
candidate worse on one category fails on exactly that category and `rollout start` refuses it (API and
CLI); a good one passes and starts; --force with a reason overrides, in the audit log; the reports render
(Markdown, and HTML in headless Chromium from the console's link)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from typer.testing import CliRunner

from gateway.cli.main import app
from tests.support.fake_judge import FakeJudge
from tests.support.servers import ThreadServer

ADMIN = {"authorization": "Bearer admin-secret"}
REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
POLICY = {"stages": [{"name": "canary", "weight_pct": 10}, {"name": "full", "weight_pct": 100}],
          "min_bake_s": 3600, "default_category": {"tolerance": 0.05},
          "preflight": {"required": True, "thresholds": {"coding": 0.1}}}


@pytest.fixture
def setup(backend_factory, gateway_factory, redis_srv, key_prefix, tmp_path) -> dict[str, Any]:
    _, stable = backend_factory("stable", model="base", text="a good answer")
    _, bad = backend_factory("bad", model="ft-bad", text="a good answer", replies={"[math]": "a poor answer"})
    _, good = backend_factory("good", model="ft-good", text="a good answer")
    judge = ThreadServer(FakeJudge(mode="prefer:good").app).start()
    versions = [{"name": "v1", "base_url": f"{stable.url}/v1", "model": "base"},
                {"name": "v2-bad", "base_url": f"{bad.url}/v1", "model": "ft-bad"},
                {"name": "v3-good", "base_url": f"{good.url}/v1", "model": "ft-good"}]
    controller = {"interval_s": 0.2, "policy": POLICY}
    judging = {"judge": {"base_url": f"{judge.url}/v1", "model": "scripted"}}
    gw = gateway_factory(versions, [{"name": "bot", "stable": "v1"}], controller=controller, judging=judging)
    config = tmp_path / "cliffguard.yaml"
    config.write_text(yaml.safe_dump({"redis_url": redis_srv.url, "key_prefix": key_prefix, "data_dir": str(tmp_path),
                                      "controller": controller, "judging": judging}))
    suite = tmp_path / "suite.jsonl"
    rows = [{"id": f"m{i}", "category": "math", "prompt": f"[math] what is {i} + {i}?"} for i in range(12)]
    rows += [{"id": f"c{i}", "category": "coding", "messages": [{"role": "user", "content": f"write f{i}"}]}
             for i in range(12)]
    suite.write_text("\n".join(orjson.dumps(r).decode() for r in rows) + "\n")
    yield {"gw": gw, "config": str(config), "suite": str(suite), "tmp": tmp_path}
    judge.stop()


def stamp_of(gw: ThreadServer, version: str) -> dict[str, Any]:
    """The version's preflight stamp as the gateway sees it (its state refreshes within state_refresh_s)."""
    deadline = time.monotonic() + 5
    while (stamp := httpx.get(f"{gw.url}/admin/versions/{version}", headers=ADMIN).json()["preflight"]) is None:
        assert time.monotonic() < deadline, "the preflight stamp never reached the gateway"
        time.sleep(0.05)
    return stamp


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_a_candidate_worse_on_one_category_is_refused_a_good_one_starts(setup):
    gw, config = setup["gw"], setup["config"]
    env = {"CLIFFGUARD_URL": gw.url, "CLIFFGUARD_TOKEN": "admin-secret"}

    # no preflight yet: refused, through the API and the CLI
    r = httpx.post(f"{gw.url}/admin/aliases/bot/rollout", headers=ADMIN, json={"candidate": "v2-bad"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "preflight_required", r.text
    assert "has no preflight" in r.json()["error"]["message"]

    bad = cli("preflight", "--alias", "bot", "--candidate", "v2-bad", "--suite", setup["suite"], "-c", config)
    assert bad.exit_code == 1, bad.output
    assert "FAILED on math" in bad.output
    stamp = stamp_of(gw, "v2-bad")
    assert stamp["passed"] is False and stamp["failed"] == ["math"] and stamp["baseline"] == "v1"
    assert stamp["suite_id"].startswith("suite@") and len(stamp["suite_hash"]) == 64 and stamp["items"] == 24

    r = httpx.post(f"{gw.url}/admin/aliases/bot/rollout", headers=ADMIN, json={"candidate": "v2-bad"})
    assert r.status_code == 409 and "failed its preflight" in r.json()["error"]["message"]
    assert "math" in r.json()["error"]["message"] and "coding" not in r.json()["error"]["message"]
    refused = CliRunner().invoke(app, ["rollout", "start", "bot", "--candidate", "v2-bad"], env=env)
    assert refused.exit_code == 1 and "failed its preflight" in refused.output, refused.output
    # a manual split that would serve users is gated too
    r = httpx.put(f"{gw.url}/admin/aliases/bot/split", headers=ADMIN, json={"candidate": "v2-bad", "weight_pct": 5})
    assert r.status_code == 409

    # the per-category numbers: math lost every item, coding tied every item (identical answers)
    data = httpx.get(f"{gw.url}/admin/reports/preflight/v2-bad?format=json", headers=ADMIN).json()
    rows = {iv["category"]: iv for iv in data["intervals"]}
    assert (rows["math"]["losses"], rows["math"]["status"]) == (12, "fail")
    assert (rows["coding"]["ties"], rows["coding"]["status"], rows["coding"]["threshold"]) == (12, "pass", 0.1)
    assert rows["math"]["upper"] < -0.05  # the breach is shown, not only seen
    assert {e["category"] for e in data["examples"]} == {"math"}

    good = cli("preflight", "--alias", "bot", "--candidate", "v3-good", "--suite", setup["suite"], "-c", config)
    assert good.exit_code == 0 and "PASSED" in good.output, good.output
    assert stamp_of(gw, "v3-good")["passed"] is True
    started = CliRunner().invoke(app, ["rollout", "start", "bot", "--candidate", "v3-good"], env=env)
    assert started.exit_code == 0 and "candidate v3-good at 10%" in started.output, started.output

    # --force needs a reason; with one, the refused candidate starts and the override is in the audit log
    r = httpx.post(f"{gw.url}/admin/aliases/bot/abort", headers=ADMIN, json={"reason": "make room"})
    assert r.status_code == 200
    no_reason = CliRunner().invoke(app, ["rollout", "start", "bot", "--candidate", "v2-bad", "--force"], env=env)
    assert no_reason.exit_code == 2
    r = httpx.post(f"{gw.url}/admin/aliases/bot/rollout", headers=ADMIN, json={"candidate": "v2-bad", "force": True})
    assert r.status_code == 400 and "reason" in r.json()["error"]["message"]
    forced = CliRunner().invoke(app, ["rollout", "start", "bot", "--candidate", "v2-bad", "--force", "--reason",
                                      "math regression accepted: hotfix for coding"], env=env)
    assert forced.exit_code == 0, forced.output
    ev = next(e for e in httpx.get(f"{gw.url}/admin/events?count=20", headers=ADMIN).json()["events"]
              if e["type"] == "rollout_started")
    assert ev["forced"] is True and ev["actor"] == "ops" and ev["reason"].startswith("math regression accepted")
    assert ev["preflight"]["failed"] == ["math"]

    md = cli("report", "preflight", "v2-bad", "--format", "md", "-c", config)
    assert md.exit_code == 0 and "**FAIL**" in md.output and "| math | 12 | 0/0/12 |" in md.output, md.output
    ro = cli("report", "rollout", "bot", "--format", "md", "-c", config)
    assert ro.exit_code == 0 and "rollout started" in ro.output and "forced past preflight" in ro.output, ro.output


def test_preflight_resumes_and_reuses_the_baseline(setup, backend_factory):
    config = setup["config"]
    first = cli("preflight", "--alias", "bot", "--candidate", "v3-good", "--suite", setup["suite"], "-c", config)
    assert first.exit_code == 0
    again = cli("preflight", "--alias", "bot", "--candidate", "v3-good", "--suite", setup["suite"], "-c", config)
    assert again.exit_code == 0 and "resumed 24" in again.output, again.output


async def test_report_in_chromium_from_the_console(setup):
    import asyncio

    from playwright.async_api import async_playwright

    gw = setup["gw"]
    result = await asyncio.to_thread(cli, "preflight", "--alias", "bot", "--candidate", "v2-bad", "--suite",
                                     setup["suite"], "-c", setup["config"])
    assert result.exit_code == 1
    stamp_of(gw, "v2-bad")
    # a split by hand at 0% (shadow, no users): the console shows the candidate and links its preflight
    r = httpx.put(f"{gw.url}/admin/aliases/bot/split", headers=ADMIN, json={"candidate": "v2-bad", "weight_pct": 0})
    assert r.status_code == 200, r.text
    html_file = setup["tmp"] / "report.html"
    out = await asyncio.to_thread(cli, "report", "preflight", "v2-bad", "--format", "html", "-o", str(html_file),
                                  "-c", setup["config"])
    assert out.exit_code == 0 and "<svg" in html_file.read_text()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox",
                                                                          "--disable-gpu"])
        page = await browser.new_page(viewport={"width": 1200, "height": 900})
        await page.goto(f"{gw.url}/console")
        await page.fill("#token", "read-secret")
        await page.click("#login button[type=submit]")
        link = page.locator('article[data-alias="bot"] a[data-action="preflight-report"]')
        await link.wait_for(timeout=15_000)
        assert "failed: math" in await link.inner_text()
        async with page.context.expect_page() as opened:
            await link.click()
        report = await opened.value
        await report.locator("#numbers tr[data-category=math]").wait_for(timeout=10_000)
        assert "fail" in await report.locator("#numbers tr[data-category=math]").inner_text()
        assert await report.locator("#verdict").inner_text() == "FAIL"
        assert await report.locator("svg.chart circle").count() == 2
        # the linked stylesheet applied under the console's CSP (the verdict badge is red)
        color = await report.locator("#verdict").evaluate("e => getComputedStyle(e).backgroundColor")
        assert color == "rgb(198, 40, 40)"
        await report.screenshot(path=str(setup["tmp"] / "preflight-report.png"), full_page=True)
        # the alias's rollout report (the split set by hand), from the same card
        async with page.context.expect_page() as opened:
            await page.locator('article[data-alias="bot"] a[data-action="rollout-report"]').click()
        rollout_page = await opened.value
        await rollout_page.locator("h1").wait_for(timeout=10_000)
        assert "Rollout of v2-bad on bot" in await rollout_page.locator("h1").inner_text()
        assert "split set" in await rollout_page.locator("body").inner_text()
        # the standalone file renders on its own too
        page2 = await browser.new_page(viewport={"width": 1200, "height": 900})
        await page2.goto(html_file.as_uri())
        assert await page2.locator("#verdict").inner_text() == "FAIL"
        await browser.close()
    assert (setup["tmp"] / "preflight-report.png").stat().st_size > 10_000
