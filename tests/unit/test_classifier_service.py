"""The micro-batching service with a scripted model (the real one is tested in integration)."""

import asyncio
import threading

from router.classify.service import ClassifierService
from router.classify.taxonomy import UNCLASSIFIED


def scripted(calls, gate=None):
    def model(requests):
        texts = [" ".join(parts) for parts in requests]  # each request is a tuple of parts
        if gate is not None:
            gate.wait(5)
        calls.append(texts)
        if "boom" in texts:
            raise RuntimeError("model failure")
        return [("math" if "sum" in t else "writing", 0.9 if "sure" in t else 0.1 if "meh" in t else 0.8)
                for t in texts]
    return model


async def test_concurrent_requests_are_micro_batched_and_labelled():
    calls = []
    gate = threading.Event()
    svc = ClassifierService(scripted(calls, gate), min_confidence=0.3, batch_size=64, batch_wait_s=0.05)
    svc.start()
    futs = [svc.submit((f"sum {i}",)) for i in range(40)] + [svc.submit(("poem meh",))]
    gate.set()
    labels = await asyncio.gather(*futs)
    svc.stop()
    assert [lab.category for lab in labels[:40]] == ["math"] * 40
    assert (labels[40].category, labels[40].layer) == ("other", "threshold")
    assert len(calls) <= 3 and sum(len(c) for c in calls) == 41  # batched, not one call each


async def test_a_busy_worker_takes_what_arrived_without_waiting_to_gather():
    """The gathering wait is for a worker woken from idle; under load it only added latency (the next batch
    is what queued during the last one)."""
    calls, gate = [], threading.Event()
    svc = ClassifierService(scripted(calls, gate), min_confidence=0.3, batch_size=2, batch_wait_s=5.0)
    svc.start()
    first = [svc.submit(("sum a",)), svc.submit(("sum b",))]  # a full batch: taken without waiting
    while not svc._queue.empty():
        await asyncio.sleep(0.01)
    late = svc.submit(("sum c",))  # queued while the worker is busy with the first batch
    gate.set()
    await asyncio.wait_for(asyncio.gather(*first, late), 2.0)  # a 5 s gathering wait would time out here
    assert [len(c) for c in calls] == [2, 1]
    svc.stop()


async def test_cache_and_in_flight_dedup():
    calls = []
    svc = ClassifierService(scripted(calls), min_confidence=0.3)
    svc.start()
    a, b = svc.submit(("sum sure",)), svc.submit(("sum sure",))  # same prompt while in flight: one model call
    assert (await a) == (await b)
    c = svc.submit(("sum sure",))
    assert c.done() and c.result().category == "math"  # cached: answered at once
    svc.stop()
    assert sum(len(x) for x in calls) == 1 and svc.stats.cache_hits == 1


async def test_overload_labels_unclassified_at_once_and_never_blocks():
    gate = threading.Event()
    svc = ClassifierService(scripted([], gate), min_confidence=0.3, queue_size=4, batch_size=1)
    svc.start()
    futs = [svc.submit((f"text {i}",)) for i in range(50)]
    shed = [f for f in futs if f.done()]
    assert len(shed) >= 40 and all(f.result().category == UNCLASSIFIED for f in shed)
    assert svc.stats.overloaded == len(shed)
    gate.set()
    await asyncio.gather(*futs)
    svc.stop()


async def test_model_failure_labels_unclassified_and_service_survives():
    svc = ClassifierService(scripted([]), min_confidence=0.3, batch_wait_s=0)
    svc.start()
    bad = await svc.submit(("boom",))
    assert bad.category == UNCLASSIFIED
    good = await svc.submit(("sum sure",))
    assert good.category == "math"
    svc.stop()


async def test_starting_the_thread_shortens_the_gil_switch_interval():
    """The classifier thread must get the GIL back quickly from a busy event loop, or its queue overflows
    and requests go unclassified under load (measured with bench/cpu_per_request.py)."""
    import sys

    from router.classify.service import SWITCH_INTERVAL_S

    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)  # the interpreter's default
    try:
        svc = ClassifierService(scripted([]), min_confidence=0.3)
        svc.start()
        assert sys.getswitchinterval() <= SWITCH_INTERVAL_S
        svc.stop()
    finally:
        sys.setswitchinterval(before)
