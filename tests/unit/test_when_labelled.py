"""`when_labelled`: the after-response callback gets the label exactly once, on time or `unclassified`."""

import asyncio

from router.classify import Label, when_labelled


def test_ready_label_is_delivered_at_once():
    got: list[Label] = []
    when_labelled(Label("math", 0.9, "model"), 2.0, got.append)
    assert got == [Label("math", 0.9, "model")]


async def test_pending_label_is_delivered_when_the_model_answers_and_only_once():
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Label] = loop.create_future()
    got: list[Label] = []
    when_labelled(fut, 0.05, got.append)
    assert got == []
    fut.set_result(Label("coding", 0.8, "model"))
    await asyncio.sleep(0.1)  # past the timeout: the cancelled timer does not deliver a second label
    assert got == [Label("coding", 0.8, "model")]


async def test_a_late_label_is_unclassified_after_the_timeout_and_not_delivered_again():
    fut: asyncio.Future[Label] = asyncio.get_running_loop().create_future()
    got: list[Label] = []
    when_labelled(fut, 0.02, got.append)
    await asyncio.sleep(0.05)
    assert [g.category for g in got] == ["unclassified"]
    fut.set_result(Label("coding", 0.8, "model"))
    await asyncio.sleep(0)
    assert len(got) == 1
