"""Fault injection under load (issue 12), shared by bench/chaos.py (the full run) and tests/chaos (a short one).

The system runs as operators run it, every part its own process so it can be killed with SIGKILL and
started again: a redis-server, `cliffguard serve` (2 workers, the controller inside them), a
`cliffguard worker`, and scripted backends and judge speaking real HTTP. A live rollout splits a
thousand users between stable and candidate; sampling runs at its defaults (the default budget, 10/s).

Each phase sends load (official openai client, plain and streamed, distinct users, prompts from the
labelled evaluation set), injects one fault, restarts what it killed, stops the load and waits until
every sample is judged. Then it counts, against the phase's own snapshot:
- failed requests: in flight when the fault hit (streams that had their first chunk counted apart) and
  new ones (sent after it);
- samples by gateway request id: every entry ever appended to the judge stream is read by an audit
  reader (checked complete against the stream's `entries-added`); lost = accepted and neither judged
  nor dead-lettered; double-counted = judged-pair counts minus distinct judged ids;
- the recovery time the fault calls for, and what the rollout did (events in the phase).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import redis.asyncio as aioredis
import yaml

from judges.queue import JudgeQueue, Keys
from router.store import StateStore, connect
from tests.support.metrics import sample
from tests.support.serve import CLI, per_process, running, start, stop, wait_up
from tests.support.servers import RedisServer, free_port

REPO = Path(__file__).resolve().parents[2]
ADMIN = {"authorization": "Bearer chaos-admin"}
REQUEST_LIMIT_S = 45.0
PREFIX = "chaos"
STABLE_TEXT = ("Here is a clear answer: first restate the question, then work through it step by step, and "
               "finally give the result with a short check of why it holds.")
CANDIDATE_TEXT = ("Sure. Let me go through this carefully, one step at a time, and end with the answer and a "
                  "quick sanity check so you can verify it yourself.")


def conversations() -> list[list[dict[str, str]]]:
    """The labelled evaluation prompts and multi-turn conversations, as chat messages."""
    rows = []
    for name in ("classifier_eval.jsonl", "classifier_dev.jsonl"):
        for line in (REPO / "bench" / "data" / name).read_text().splitlines():
            row = json.loads(line)
            rows.append(row.get("messages") or [{"role": "user", "content": row["prompt"]}])
    return rows


class Service:
    """A killable process serving HTTP on a fixed port (restarted on the same port)."""

    def __init__(self, name: str, argv: list[str], port: int | None, ready_path: str = "",
                 env: dict[str, str] | None = None) -> None:
        self.name, self.argv, self.port, self.ready_path, self.env = name, argv, port, ready_path, env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> float:
        """Starts it; returns the wall time it answers (at once for a process without a port)."""
        self.proc = subprocess.Popen(self.argv, cwd=REPO, env=self.env, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while self.port is not None:
            assert self.proc.poll() is None, f"{self.name} exited with {self.proc.returncode}"
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{self.port}{self.ready_path}", timeout=1)
                return time.time()
            assert time.monotonic() < deadline, f"{self.name} did not start"
            time.sleep(0.05)
        return time.time()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def backend(name: str, model: str, text: str) -> Service:
    port = free_port()
    return Service(name, [sys.executable, "-m", "tests.support.fake_backend", "--port", str(port), "--name", name,
                          "--model", model, "--text", text, "--chunks", "24", "--chunk-delay-s", "0.04"],
                   port, "/v1/models")


# -- load -------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    start: float
    end: float
    stream: bool
    ok: bool
    first_chunk: float | None = None
    arm: str | None = None
    error: str | None = None


class Load:
    """`clients` concurrent openai clients (one connection pool each, no retries: every failure counts),
    each request from one of `users` users, half of them streamed."""

    def __init__(self, url: str, clients: int, users: int, seed: int = 0) -> None:
        self.url, self.clients, self.users = url, clients, users
        self.conversations = conversations()
        self.rng = random.Random(seed)
        self.outcomes: list[Outcome] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._stop.clear()
        self._tasks = [asyncio.create_task(self._client(i)) for i in range(self.clients)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)  # each request is bounded (REQUEST_LIMIT_S), so this ends

    async def _client(self, i: int) -> None:
        async with openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0,
                                      timeout=30) as client:
            while not self._stop.is_set():
                user, messages = f"user-{self.rng.randrange(self.users)}", self.rng.choice(self.conversations)
                stream = self.rng.random() < 0.5
                out = Outcome(time.time(), 0.0, stream, False)
                try:  # a request that hangs past the limit is a failure, never a stuck run
                    await asyncio.wait_for(self._stream(client, user, messages, out) if stream else
                                           self._plain(client, user, messages, out), REQUEST_LIMIT_S)
                except TimeoutError:
                    out.error = f"no answer within {REQUEST_LIMIT_S:g}s"
                except openai.APIStatusError as e:  # e.g. 502: stable is down
                    out.arm = e.response.headers.get("x-cliffguard-arm")
                    out.error = f"{e.status_code}: {e.message}"[:200]
                except openai.OpenAIError as e:  # with its cause: connect refused, reset, closed...
                    cause = f" ({type(e.__cause__).__name__}: {e.__cause__})" if e.__cause__ else ""
                    out.error = f"{type(e).__name__}: {e}{cause}"[:200]
                out.end = time.time()
                self.outcomes.append(out)
                await asyncio.sleep(0.02)  # a client's think time

    @staticmethod
    async def _plain(client: openai.AsyncOpenAI, user: str, messages: Any, out: Outcome) -> None:
        raw = await client.chat.completions.with_raw_response.create(
            model="bot", user=user, messages=messages, max_tokens=64)
        out.arm = raw.headers.get("x-cliffguard-arm")
        out.ok = bool(raw.parse().choices[0].message.content)

    @staticmethod
    async def _stream(client: openai.AsyncOpenAI, user: str, messages: Any, out: Outcome) -> None:
        async with client.chat.completions.with_streaming_response.create(
                model="bot", user=user, messages=messages, max_tokens=64,
                stream=True) as raw:
            out.arm = raw.headers.get("x-cliffguard-arm")
            finish = None
            async for chunk in await raw.parse():  # an error event raises APIError
                if chunk.choices and chunk.choices[0].delta.content and out.first_chunk is None:
                    out.first_chunk = time.time()
                if chunk.choices and chunk.choices[0].finish_reason:
                    finish = chunk.choices[0].finish_reason
            out.ok = finish == "stop"


# -- the audit of the judge stream ----------------------------------------------------------------------


class Audit:
    """Reads every entry appended to the judge stream (XREAD, no group: it changes nothing), by request id.
    Entries are trimmed only after a worker judged them and a trim ran (seconds), so a reader following the
    stream sees each; `complete()` checks that against the stream's own count of appends."""

    def __init__(self, url: str, queue_key: str) -> None:
        self.url, self.key = url, queue_key
        self.accepted: dict[str, float] = {}  # request id -> answered at
        self.appended = 0  # entries read, duplicates included
        self._last = "0-0"
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        self._stopping = True  # redis-py may turn a cancel inside a command into a RedisError: a flag too
        if self._task:
            self._task.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(self._task, return_exceptions=True), 10)

    async def _follow(self) -> None:
        while not self._stopping:
            client = aioredis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=1)
            try:
                while not self._stopping:
                    resp: Any = await client.xread({self.key: self._last}, count=1000, block=200)
                    for _, entries in resp or []:
                        for entry_id, fields in entries:
                            self._last = entry_id.decode()
                            self.appended += 1
                            s = json.loads(fields[b"sample"])
                            self.accepted.setdefault(s["request_id"], s["ts"])
            except (aioredis.RedisError, OSError):
                await asyncio.sleep(0.02)  # Redis is down: reconnect at once when it is back
            finally:
                await client.aclose()

    async def complete(self, client: aioredis.Redis) -> bool:
        if self._task is not None and self._task.done():  # a bug in the reader must not read as a lost sample
            raise RuntimeError(f"the audit reader stopped: {self._task.exception()!r}")
        try:
            info = await client.xinfo_stream(self.key)
        except aioredis.ResponseError:  # no stream yet
            return self.appended == 0
        return int(info["entries-added"]) == self.appended


# -- the system -----------------------------------------------------------------------------------------


@dataclass
class Phase:
    fault: str
    requests: int = 0
    failed_in_flight: int = 0
    failed_streaming: int = 0  # of those in flight: streams that had their first chunk
    failed_new: int = 0
    failed_new_stable: int = 0  # new failures of requests routed to stable (the stable-loss exception)
    sampled: int = 0  # pushed to the gateways' buffers (cliffguard_samples_total)
    accepted: int = 0
    judged: int = 0
    dead: int = 0
    lost: int = 0
    double_counted: int = 0
    over_budget: int = 0
    down_s: float = 0.0
    accepted_while_down: int = 0  # samples answered while the killed process was down
    recovery: dict[str, float] = field(default_factory=dict)
    rollout: str = "unchanged"
    seconds: float = 0.0  # the phase, load and drain included
    errors: list[str] = field(default_factory=list)


class Chaos:
    """The whole system on loopback; `await run_phase(name, fault)` for each fault."""

    def __init__(self, tmp: Path, clients: int = 16, users: int = 1000, worker: dict[str, Any] | None = None
                 ) -> None:
        self.tmp = tmp
        self.redis = RedisServer(appendonly=True)
        self.stable = backend("stable", "base", STABLE_TEXT)
        self.candidate = backend("candidate", "ft", CANDIDATE_TEXT)
        judge_port = free_port()
        self.judge = Service("judge", [sys.executable, "-m", "tests.support.fake_judge", "--port", str(judge_port),
                                       "--mode", "tie"], judge_port, "/")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.prom_dir = tmp / "data" / "prometheus" / str(self.port)
        self.config = tmp / "cliffguard.yaml"
        self.config.write_text(yaml.safe_dump({
            "listen": {"port": self.port}, "workers": 2, "data_dir": str(tmp / "data"), "redis_url": self.redis.url,
            "key_prefix": PREFIX, "auth": {"admin_tokens": [{"name": "ops", "token": "chaos-admin", "role": "admin"}]},
            "versions": [{"name": "v1", "base_url": f"http://127.0.0.1:{self.stable.port}/v1", "model": "base"},
                         {"name": "v2", "base_url": f"http://127.0.0.1:{self.candidate.port}/v1", "model": "ft"}],
            "aliases": [{"name": "bot", "stable": "v1"}],
            # sampling and the judging budget at their defaults; the judge and its worker are ours
            "judging": {"judge": {"base_url": f"http://127.0.0.1:{judge_port}/v1", "model": "scripted"},
                        "worker": {"metrics_port": None, **(worker or {})}},
            # a canary that neither promotes (bake time) nor regresses (the judge calls every pair a tie):
            # only a guard can end it
            "controller": {"policy": {
                "stages": [{"name": "canary", "weight_pct": 50}, {"name": "full", "weight_pct": 100}],
                "min_bake_s": 86400}}}))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIFFGUARD_", "PROMETHEUS_"))}
        self.worker = Service("judge worker", [*CLI, "worker", "--config", str(self.config)], None, env=self.env)
        self.gateway: subprocess.Popen[bytes] | None = None
        self.load = Load(self.url, clients, users)
        self.keys = Keys(PREFIX)
        self.audit = Audit(self.redis.url, self.keys.samples)
        self.client: aioredis.Redis | None = None

    # -- lifecycle --

    async def __aenter__(self) -> Chaos:
        self.redis.start()
        for s in (self.stable, self.candidate, self.judge):
            s.start()
        self.gateway = start(self.config, self.env)
        wait_up(self.url, self.gateway, timeout=120)
        self.worker.start()
        r = httpx.post(f"{self.url}/admin/aliases/bot/rollout", headers=ADMIN, timeout=10,
                       json={"candidate": "v2", "reason": "chaos run"})
        assert r.status_code == 200 and r.json()["weight_pct"] == 50, r.text
        self.client = connect(self.redis.url, timeout_s=2)
        self.audit.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.audit.stop()
            if self.client is not None:
                await self.client.aclose()
        finally:  # the processes go whatever happened above (Ctrl-C included): nothing is left running
            self.worker.stop()
            if self.gateway is not None and self.gateway.poll() is None:
                stop(self.gateway)
            for s in (self.stable, self.candidate, self.judge):
                s.stop()
            self.redis.stop()

    # -- what the system says --

    def gateway_workers(self) -> dict[int, bool]:
        """Live serve workers -> whether each leads the controller (from their metrics files)."""
        leader = per_process(self.prom_dir, "cliffguard_controller_leader")
        return {pid: leader.get(pid) == 1 for pid in per_process(self.prom_dir, "cliffguard_redis_up")
                if running(pid)}

    async def metric(self, name: str, **labels: str) -> float:
        async with httpx.AsyncClient(timeout=10) as h:
            return sample((await h.get(f"{self.url}/metrics")).text, name, **labels)

    async def judged_ids(self) -> set[str]:
        assert self.client is not None
        ids: list[bytes] = await self.client.zrange(  # type: ignore[assignment]
            self.keys.pairs("bot"), 0, -1)
        return {i.decode() for i in ids}

    async def dead_ids(self) -> set[str]:
        assert self.client is not None
        rows: Any = await self.client.xrange(self.keys.dead)
        return {json.loads(f[b"sample"])["request_id"] for _, f in rows if b"sample" in f}

    async def counted(self) -> int:
        """Judged pairs as the statistics count them (every rollout of the alias)."""
        assert self.client is not None
        total = 0
        async for key in self.client.scan_iter(match=f"{PREFIX}:judge:stats:bot:*"):
            fields: dict[bytes, bytes] = await self.client.hgetall(key)  # type: ignore[assignment]
            total += sum(int(v) for k, v in fields.items() if k.endswith(b":n"))
        return total

    async def events(self) -> list[dict[str, Any]]:
        assert self.client is not None
        return await StateStore(self.client, PREFIX).events(50)

    async def until(self, check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
        """Polls `check` (Redis errors count as not yet); returns the wall time it first held."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(aioredis.RedisError, OSError, httpx.HTTPError):
                if await check():
                    return time.time()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not within {timeout:.0f}s")
            await asyncio.sleep(0.05)

    async def drained(self) -> bool:
        assert self.client is not None
        return (await self.metric("cliffguard_sample_buffer_length") == 0
                and (await JudgeQueue(self.client, PREFIX).backlog())[0] == 0
                and await self.audit.complete(self.client))

    async def judged_all(self, answered_before: float) -> bool:
        """Every sample answered before `answered_before` reached Redis and is judged (or dead-lettered)."""
        assert self.client is not None
        if await self.metric("cliffguard_sample_buffer_length") or not await self.audit.complete(self.client):
            return False
        want = {i for i, ts in self.audit.accepted.items() if ts < answered_before}
        return want <= (await self.judged_ids()) | (await self.dead_ids())

    # -- one phase --

    async def run_phase(self, name: str, fault: FaultFn, before_s: float,
                        after_s: float, drain_s: float = 180) -> Phase:
        phase, t0 = Phase(name), time.monotonic()
        judged0, dead0, counted0 = await self.judged_ids(), await self.dead_ids(), await self.counted()
        over0 = await self.metric("cliffguard_samples_over_budget_total")
        sampled0 = await self.metric("cliffguard_samples_total")
        accepted0, events0 = set(self.audit.accepted), {e["id"] for e in await self.events()}
        outcomes0 = len(self.load.outcomes)
        self.load.start()
        await asyncio.sleep(before_s)
        t_fault = await fault(self, phase)  # when the killed process was gone: later requests are new
        await asyncio.sleep(after_s)
        await self.load.stop()
        try:
            await self.until(self.drained, drain_s, f"{name}: every sample judged")
        except TimeoutError as e:
            assert self.client is not None
            raise TimeoutError(f"{e}; buffered {await self.metric('cliffguard_sample_buffer_length')}, backlog "
                               f"{await JudgeQueue(self.client, PREFIX).backlog()}, audit read {self.audit.appended} "
                               f"of {(await self.client.xinfo_stream(self.keys.samples))['entries-added']}") from e
        outcomes = self.load.outcomes[outcomes0:]
        phase.requests = len(outcomes)
        for o in outcomes:
            if o.ok:
                continue
            if o.start < t_fault:
                phase.failed_in_flight += 1
                phase.failed_streaming += o.stream and o.first_chunk is not None and o.first_chunk < t_fault
                if len(phase.errors) < 5 and o.error:
                    phase.errors.append(o.error)
            else:  # rare, and what the test is about: each one is shown, with when it started
                phase.failed_new += 1
                phase.failed_new_stable += o.arm == "stable"
                phase.errors.append(f"new, started {o.start - t_fault:+.3f} s after the fault: {o.error}")
        accepted = set(self.audit.accepted) - accepted0
        judged, dead = await self.judged_ids() - judged0, await self.dead_ids() - dead0
        phase.accepted, phase.judged, phase.dead = len(accepted), len(judged & accepted), len(dead & accepted)
        phase.lost = len(accepted - judged - dead)
        phase.accepted_while_down = sum(t_fault <= self.audit.accepted[i] <= t_fault + phase.down_s for i in accepted)
        phase.double_counted = (await self.counted() - counted0) - len(judged)
        phase.over_budget = int(await self.metric("cliffguard_samples_over_budget_total") - over0)
        phase.sampled = int(await self.metric("cliffguard_samples_total") - sampled0)
        new_events = [e for e in reversed(await self.events()) if e["id"] not in events0]
        if new_events:
            phase.rollout = "; ".join(f"{e['type']} by {e.get('by')} at +{e['ts'] - t_fault:.1f}s"
                                      f" ({(e.get('reason') or '')[:60]})" for e in new_events)
        phase.seconds = time.monotonic() - t0
        return phase


# -- the faults ---------------------------------------------------------------------------------------------

# A fault kills something and brings it back, measuring its recovery; it returns the wall time at which the
# killed process was gone (requests sent after it are new, the rest were in flight).
FaultFn = Callable[[Chaos, Phase], Awaitable[float]]



def redis_outage(down_s: float) -> FaultFn:
    async def fault(c: Chaos, p: Phase) -> float:
        c.redis.kill()
        t0 = time.time()
        await asyncio.sleep(down_s)
        await asyncio.to_thread(c.redis.start)
        t_up = time.time()
        p.down_s = t_up - t0
        t = await c.until(lambda: c.judged_all(t_up), 120, "the outage's samples judged")
        p.recovery["outage samples judged after restart"] = t - t_up
        return t0
    return fault


def backend_kill(which: str, down_s: float) -> FaultFn:
    async def fault(c: Chaos, p: Phase) -> float:
        svc = c.candidate if which == "candidate" else c.stable
        svc.kill()
        t0 = time.time()
        if which == "candidate":  # the error-rate guard should roll it back while it is down
            t = await c.until(lambda: _rolled_back(c), 60, "the candidate rolled back")
            p.recovery["rolled back after the kill"] = t - t0
        await asyncio.sleep(max(0.0, down_s - (time.time() - t0)))
        t_up = await asyncio.to_thread(svc.start)
        p.down_s = t_up - t0
        if which == "stable":
            t = await c.until(lambda: _served_by_stable_since(c, t_up), 30, "a request served by stable")
            p.recovery["first stable answer after restart"] = t - t_up
        return t0
    return fault


async def _rolled_back(c: Chaos) -> bool:
    return any(e["type"] == "rolled_back" for e in await c.events())


async def _served_by_stable_since(c: Chaos, t: float) -> bool:
    return any(o.ok and o.arm == "stable" and o.start >= t for o in c.load.outcomes[-2000:])


def judge_worker_kill(down_s: float) -> FaultFn:
    async def fault(c: Chaos, p: Phase) -> float:
        c.worker.kill()
        t0 = time.time()
        await asyncio.sleep(down_s)
        t_up = c.worker.start()
        p.down_s = t_up - t0
        t = await c.until(lambda: c.judged_all(t_up), 120, "the killed worker's samples judged")
        p.recovery["samples of the outage judged after restart"] = t - t_up
        return t0
    return fault


def gateway_worker_kill(leader: bool) -> FaultFn:
    async def fault(c: Chaos, p: Phase) -> float:
        workers = c.gateway_workers()
        victim = next(pid for pid, leads in workers.items() if leads == leader)
        os.kill(victim, signal.SIGKILL)
        t0 = await c.until(lambda: _true(_gone(victim)), 10, "the killed worker gone")
        t = await c.until(lambda: _true(len(c.gateway_workers()) == 2 and victim not in c.gateway_workers()), 60,
                          "a replacement worker")
        p.recovery["replacement worker up"] = t - t0
        if leader:
            t = await c.until(lambda: _true(any(c.gateway_workers().values())), 60, "a new leader")
            p.recovery["leader re-elected"] = t - t0
        return t0
    return fault


async def _true(v: bool) -> bool:
    return v


def _gone(pid: int) -> bool:
    """Exited with its sockets closed: no such process, or a zombie its supervisor has not reaped yet whose
    other threads are gone too. The main thread turns zombie first; the process's sockets close only when its
    last thread exits, measured up to 6 ms later under load, and a request sent on a kept-alive connection in
    between is reset: it was in flight when the process died, not new."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state == "Z" and os.listdir(f"/proc/{pid}/task") == [str(pid)]
    except FileNotFoundError:
        return True


def faults(redis_down_s: float, down_s: float) -> list[tuple[str, FaultFn]]:
    """Every fault of issue 12, one at a time; the candidate last (its rollback ends the rollout)."""
    return [("redis", redis_outage(redis_down_s)), ("judge worker", judge_worker_kill(down_s)),
            ("gateway worker", gateway_worker_kill(leader=False)),
            ("controller leader", gateway_worker_kill(leader=True)),
            ("stable backend", backend_kill("stable", down_s)),
            ("candidate backend", backend_kill("candidate", down_s))]
