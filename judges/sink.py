"""The request path's side of sampling: an O(1) push into a bounded in-memory buffer, flushed in order to the
Redis Stream by a background task. A request never waits on any of it.

Samples are evidence. The buffer is flushed oldest first, and each candidate is admitted against the
budget of the second it was answered in, so what an outage held back is judged by the same rule as live
traffic. If Redis is unreachable (or the stream is full), candidates wait; the only loss is the buffer's
overflow (the oldest is dropped), counted in `cliffguard_samples_dropped_total{reason="overflow"}`. A process
stopping while Redis is unreachable writes its buffer to `spill_dir` and the next one to start replays it;
only a process killed outright (SIGKILL, OOM) loses what it held in memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from pathlib import Path

from redis.exceptions import RedisError

from judges.queue import JudgeQueue
from monitoring import metrics as m

log = logging.getLogger("cliffguard.sampling")

Candidate = tuple[float, bytes]  # (answered at, the sample's JSON)


class SampleSink:
    def __init__(self, queue: JudgeQueue, *, buffer_size: int, max_per_second: int, max_per_day: int,
                 spill_dir: Path | None = None, batch: int = 256, max_backoff_s: float = 1.0) -> None:
        self.queue = queue
        self.buffer: deque[Candidate] = deque()
        self.buffer_size = buffer_size
        self.max_per_second = max_per_second
        self.max_per_day = max_per_day
        self.spill_dir = spill_dir
        self.batch = batch
        self.max_backoff_s = max_backoff_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def push(self, ts: float, payload: bytes) -> None:
        if len(self.buffer) >= self.buffer_size:
            self.buffer.popleft()
            m.SAMPLES_DROPPED.labels("overflow").inc()
        self.buffer.append((ts, payload))
        self._wake.set()

    def start(self) -> None:
        self.replay()
        self._task = asyncio.create_task(self._run(), name="cliffguard-sample-sink")

    async def stop(self, drain_timeout_s: float = 2.0) -> None:
        """Flush what can be flushed in drain_timeout_s; write the rest to disk."""
        self._stopping = True
        self._wake.set()
        if self._task:
            try:
                await asyncio.wait_for(self._task, drain_timeout_s)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        if self.buffer:
            self.spill()

    async def flush_once(self) -> bool:
        """Send the buffer, oldest first; False when the stream is full (the rest waits)."""
        while self.buffer:
            chunk = [self.buffer[i] for i in range(min(self.batch, len(self.buffer)))]
            r = await self.queue.append(chunk, self.max_per_second, self.max_per_day)
            for _ in range(r.processed):  # only now: a failed append keeps them for the next try
                self.buffer.popleft()
            m.SAMPLES_QUEUED.inc(r.admitted)
            if r.over_budget:
                m.SAMPLES_OVER_BUDGET.inc(r.over_budget)
            if r.processed < len(chunk):
                return False
        return True

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            m.SAMPLE_BUFFER.set(len(self.buffer))
            if not self.buffer:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                if await self.flush_once():
                    backoff = 0.05
                    continue
                if backoff == 0.05:  # once per episode: the workers are far behind
                    log.warning("judge stream full (%d); %d samples wait", self.queue.maxlen, len(self.buffer))
            except (RedisError, OSError) as e:
                if self._stopping:
                    return  # stop() writes the buffer to disk
                log.warning("sample append failed (%s); %d samples buffered", e, len(self.buffer))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)

    # -- across restarts ------------------------------------------------------------------------------

    def spill(self) -> None:
        """Write the buffer to a file of its own under spill_dir (one line per sample: time, JSON)."""
        n = len(self.buffer)
        if self.spill_dir is None:
            m.SAMPLES_DROPPED.labels("shutdown").inc(n)
            log.error("stopping with Redis unreachable: %d samples lost (no data_dir to keep them)", n)
            return
        try:
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            path = self.spill_dir / f"spill-{time.time_ns()}-{os.getpid()}.jsonl"  # sorts by time
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # redacted, still not for everyone
            with os.fdopen(fd, "wb") as f:
                f.writelines(b"%r %s\n" % (ts, payload) for ts, payload in self.buffer)
                f.flush()
                os.fsync(f.fileno())
            tmp.rename(path)  # complete files only: a replay never reads half of one
        except OSError as e:
            m.SAMPLES_DROPPED.labels("shutdown").inc(n)
            log.error("stopping with Redis unreachable: %d samples lost (cannot write %s: %s)", n, self.spill_dir, e)
            return
        self.buffer.clear()
        m.SAMPLES_SPILLED.inc(n)
        log.warning("stopping with Redis unreachable: %d samples written to %s for the next start", n, path)

    def replay(self) -> None:
        """Take the samples earlier processes wrote to disk, ahead of new ones. Each file goes to exactly one
        process: it is claimed by renaming it (atomic), then read and deleted."""
        if self.spill_dir is None or not self.spill_dir.is_dir():
            return
        taken: list[Candidate] = []
        for path in sorted(self.spill_dir.glob("spill-*.jsonl")):
            claimed = path.with_suffix(f".replay-{os.getpid()}")
            try:
                path.rename(claimed)
            except FileNotFoundError:  # another process took it
                continue
            for line in claimed.read_bytes().splitlines():
                ts, _, payload = line.partition(b" ")
                if payload:
                    taken.append((float(ts), payload))
            claimed.unlink()
        if taken:
            for c in reversed(taken):
                self.buffer.appendleft(c)
            while len(self.buffer) > self.buffer_size:
                self.buffer.popleft()
                m.SAMPLES_DROPPED.labels("overflow").inc()
            m.SAMPLES_REPLAYED.inc(len(taken))
            log.warning("replaying %d samples kept on disk by a previous run", len(taken))
