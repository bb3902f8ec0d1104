"""Classification off the event loop. `LabelService` is what every front shares: an LRU cache answers
repeated prompts at once, identical requests in flight share one answer, and a bounded queue sheds load:
past it a request is labelled `unclassified` immediately instead of waiting (never delaying or failing
the request). `ClassifierService` runs the model in a thread that micro-batches concurrent requests;
`gateway/processes/classifier_link.py` sends them to the host's classifier process instead."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import queue
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from router.classify.layers import Label, threshold
from router.classify.taxonomy import UNCLASSIFIED

log = logging.getLogger("cliffguard.classifier")

SWITCH_INTERVAL_S = 0.0005
Parts = tuple[str, ...]  # what the model reads from one request (`PromptParts.model_parts`)
Model = Callable[[list[Parts]], list[tuple[str, float]]]
NO_LABEL = Label(UNCLASSIFIED, 0.0, "unclassified")  # shed, failed or late: never delays a request


@dataclass
class ServiceStats:
    batches: int = 0
    classified: int = 0
    cache_hits: int = 0
    overloaded: int = 0


class LabelService:
    """What every classifier front shares: `submit` answers from an LRU cache of labels, joins a request
    identical to one in flight, or hands the parts to `_enqueue` (the model's queue: a thread here, the
    host's classifier process in `gateway/processes/classifier_link.py`); `_resolve` delivers the model's labels."""

    def __init__(self, *, cache_size: int) -> None:
        self.cache_size = cache_size
        self.stats = ServiceStats()
        self._cache: OrderedDict[bytes, Label] = OrderedDict()
        self._pending: dict[bytes, list[asyncio.Future[Label]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    def stop(self) -> None:
        pass

    def _enqueue(self, key: bytes, parts: Parts) -> bool:
        """Hands the parts to the model without blocking; False when it cannot take them now."""
        raise NotImplementedError

    def submit(self, parts: Parts) -> asyncio.Future[Label]:
        """Never blocks: a cached answer, a shared in-flight answer, a queued one, or `unclassified`."""
        assert self._loop is not None, "start() first"
        fut: asyncio.Future[Label] = self._loop.create_future()
        key = hashlib.blake2b("\x00".join(parts).encode(), digest_size=16).digest()
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            self.stats.cache_hits += 1
            fut.set_result(hit)
            return fut
        waiting = self._pending.get(key)
        if waiting is not None:
            waiting.append(fut)
            return fut
        if not self._enqueue(key, parts):
            self.stats.overloaded += 1
            fut.set_result(NO_LABEL)
            return fut
        self._pending[key] = [fut]
        return fut

    def _resolve(self, keys: list[bytes], labels: list[Label]) -> None:
        self.stats.batches += 1
        self.stats.classified += len(keys)
        for key, label in zip(keys, labels, strict=True):
            if label.layer != "unclassified":
                self._cache[key] = label
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            for fut in self._pending.pop(key, []):
                if not fut.done():
                    fut.set_result(label)


class ClassifierService(LabelService):
    """The model in a thread of this process."""

    def __init__(self, model: Model, *, min_confidence: float, batch_size: int = 32, batch_wait_s: float = 0.002,
                 queue_size: int = 512, cache_size: int = 20_000,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        super().__init__(cache_size=cache_size)
        self.model = model
        self.min_confidence = min_confidence
        self.batch_size = batch_size
        self.batch_wait_s = batch_wait_s
        self._queue: queue.Queue[tuple[bytes, Parts] | None] = queue.Queue(maxsize=queue_size)
        self._on_batch = on_batch
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # The thread gives up the GIL in every numpy call; with the default 5 ms switch interval it then waits
        # up to 5 ms to get it back from a busy event loop, and under load the queue overflowed: up to 68% of
        # requests went unclassified (bench/cpu_per_request.py). At 0.5 ms none did, at the same throughput.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        super().start()
        self._thread = threading.Thread(target=self._run, name="cliffguard-classifier", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread:
            with contextlib.suppress(queue.Full):  # a full queue drains within a batch or two
                self._queue.put(None, timeout=5)
            self._thread.join(timeout=5)

    def _enqueue(self, key: bytes, parts: Parts) -> bool:
        try:
            self._queue.put_nowait((key, parts))
        except queue.Full:
            return False
        return True

    # -- worker thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:  # busy: the next batch is what arrived during the last one, taken at once
                first, idle = self._queue.get_nowait(), False
            except queue.Empty:
                first, idle = self._queue.get(), True
            if first is None:
                return
            batch = [first]
            # woken from idle: one short sleep lets a batch gather (a timed get per item would wake this
            # thread, and take the GIL from the event loop, once per request)
            if idle and self.batch_wait_s > 0 and self._queue.qsize() < self.batch_size - 1:
                time.sleep(self.batch_wait_s)
            while len(batch) < self.batch_size:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            keys = [k for k, _ in batch]
            labels, elapsed = classify_batch(self.model, [t for _, t in batch], self.min_confidence)
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._resolved, keys, labels, elapsed)

    def _resolved(self, keys: list[bytes], labels: list[Label], elapsed: float) -> None:
        if self._on_batch:
            self._on_batch(len(keys), elapsed)
        self._resolve(keys, labels)


def classify_batch(model: Model, batch: list[Parts], min_confidence: float) -> tuple[list[Label], float]:
    """The batch's labels (all `unclassified` if the model fails) and the seconds the model took."""
    t0 = time.perf_counter()
    try:
        labels = [threshold(c, p, min_confidence) for c, p in model(batch)]
    except Exception:
        log.exception("classifier batch failed; labelling %d requests unclassified", len(batch))
        labels = [NO_LABEL] * len(batch)
    return labels, time.perf_counter() - t0
