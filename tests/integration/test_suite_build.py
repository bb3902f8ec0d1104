"""`cliffguard suite build` from traffic captured by the real path (gateway sampling, judge worker, stored
redacted pairs): every category present, redacted, versioned, and the same seed gives the same suite."""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson
import yaml
from typer.testing import CliRunner

from gateway.cli.main import app
from judges.config import JudgingConfig
from judges.preflight import suite as suites
from judges.queue import JudgeQueue
from judges.worker import JudgeWorker
from router.live_state import LiveState
from router.store import StateStore, connect
from tests.support.fake_judge import FakeJudge
from tests.support.servers import ThreadServer

ADMIN = {"authorization": "Bearer admin-secret"}
CATEGORIES = ("coding", "math", "writing")


async def test_suite_from_captured_traffic(backend_factory, gateway_factory, redis_srv, key_prefix, tmp_path):
    _, s = backend_factory("stable", model="base", text="stable answer")
    _, c = backend_factory("cand", model="ft", text="candidate answer")
    judge = ThreadServer(FakeJudge(mode="prefer:candidate").app).start()
    judging = JudgingConfig.model_validate({
        "sampling": {"default_rate": 1.0, "min_per_window": 0, "max_per_second": 1000},
        "judge": {"base_url": f"{judge.url}/v1", "model": "scripted"}, "worker": {"metrics_port": None}})
    gw = gateway_factory([{"name": "v1", "base_url": f"{s.url}/v1", "model": "base"},
                          {"name": "v2", "base_url": f"{c.url}/v1", "model": "ft"}],
                         [{"name": "bot", "stable": "v1"}], judging=judging.model_dump())
    assert httpx.put(f"{gw.url}/admin/aliases/bot/split", headers=ADMIN,
                     json={"candidate": "v2", "weight_pct": 0}).status_code == 200
    client = connect(redis_srv.url)
    state = LiveState(StateStore(client, key_prefix))
    await state.start()
    worker = JudgeWorker(judging, JudgeQueue(client, key_prefix), state)
    task = asyncio.create_task(worker.run())
    try:
        async with httpx.AsyncClient(base_url=gw.url) as h:
            for i in range(30):
                cat = CATEGORIES[i % 3]
                r = await h.post("/v1/chat/completions", headers={"x-cliffguard-category": cat}, json={
                    "model": "bot", "user": f"u{i}", "messages": [
                        {"role": "user", "content": f"{cat} task {i}: reply to jane.doe{i}@example.com"}]})
                assert r.status_code == 200
        deadline = time.monotonic() + 30
        while worker.stats.judged < 24:  # sampling decides per request: most, not necessarily all
            assert time.monotonic() < deadline, f"judged {worker.stats.judged}"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
    finally:
        worker.stop()
        await task
        await worker.http.close()
        await state.stop()
        await client.aclose()
        judge.stop()

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"redis_url": redis_srv.url, "key_prefix": key_prefix}))

    def build(seed: int, out: str) -> suites.Suite:
        r = CliRunner().invoke(app, ["suite", "build", "--alias", "bot", "--per-category", "4", "--seed", str(seed),
                                     "-o", str(tmp_path / out), "-c", str(config)])
        assert r.exit_code == 0, r.output
        return suites.load(tmp_path / out)

    # CliRunner swaps sys.stdout: one at a time, off the event loop (the CLI runs its own)
    a, b, other = await asyncio.to_thread(lambda: (build(7, "a.jsonl"), build(7, "b.jsonl"), build(8, "c.jsonl")))
    assert a.categories == {"coding": 4, "math": 4, "writing": 4}  # stratified: every category, N each
    assert (a.id, a.hash) == (b.id, b.hash) and (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()
    assert a.hash != other.hash  # another seed draws other prompts (about 10 captured per category, 4 drawn)
    text = (tmp_path / "a.jsonl").read_text()
    assert "@example.com" not in text and text.count("[REDACTED]") == 12
    head = orjson.loads(text.splitlines()[0])["suite"]
    assert head["id"] == a.id and head["hash"] == a.hash and head["format"] == 1 and "seed 7" in head["source"]
    assert all(it.messages and it.messages[0]["role"] == "user" for it in a.items)
