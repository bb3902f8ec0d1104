"""After an answer is complete: decide whether the judges get it and, if so, push the sample."""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.proxy.request import RESPONSES
from judges import answers
from judges.records import Sample, generation_params
from judges.sampling import Sampler
from judges.sink import SampleSink
from monitoring import metrics as m
from router.classify import UNCLASSIFIED, Label
from router.split import Arm
from router.state import AliasState, VersionRecord


class RequestSampler:
    def __init__(self, sampler: Sampler, sink: SampleSink, redact: Callable[[str], str],
                 single_when_no_candidate: bool) -> None:
        self.sampler = sampler
        self.sink = sink
        self.redact = redact
        self.single = single_when_no_candidate

    def wants_capture(self, alias: AliasState) -> bool:
        return bool(alias.candidate) or self.single

    def consider(self, *, request_id: str, alias: AliasState, version: VersionRecord, arm: str, endpoint: str,
                 body: dict[str, object], opt_out: bool, label: Label, answer_bytes: list[bytes],
                 stream: bool) -> None:
        if arm not in (Arm.STABLE, Arm.CANDIDATE) or label.category == UNCLASSIFIED or not self.wants_capture(alias):
            return
        if endpoint == RESPONSES and body.get("previous_response_id"):
            return  # the conversation is stored on the serving backend: the other version cannot see it
        if not self.sampler.decide(request_id, label.category, opted_out=opt_out):
            return
        # an answer that is only tool calls is sampled too: the judge sees the calls
        answer = answers.from_sse(answer_bytes, endpoint) if stream else answers.from_body(b"".join(answer_bytes),
                                                                                           endpoint)
        if answer is None:
            return
        messages = body.get("messages")
        params = generation_params(dict(body))
        if isinstance(params.get("instructions"), str):
            params["instructions"] = self.redact(params["instructions"])
        meta = body.get("metadata")
        reference = meta.get("reference") if isinstance(meta, dict) else None
        sample = Sample(
            request_id=request_id, alias=alias.name, rollout_id=alias.rollout_id, category=label.category,
            endpoint=endpoint, served_version=version.name, served_arm=arm, stable=alias.stable,
            candidate=alias.candidate,
            messages=[self._redacted(msg) for msg in messages if isinstance(msg, dict)]
            if isinstance(messages, list) else None,
            prompt=self.redact(prompt) if isinstance(prompt := body.get("prompt"), str) else prompt,
            input=self._redacted_input(body.get("input")), answer=answer, params=params,
            reference=reference if isinstance(reference, str) else None, ts=time.time(),
        )
        self.sink.push(sample.model_dump_json().encode())
        m.SAMPLES.labels(alias.name, label.category).inc()

    def _redacted(self, msg: dict[str, object]) -> dict[str, object]:
        content = msg.get("content")
        return {**msg, "content": self.redact(content)} if isinstance(content, str) else msg

    def _redacted_input(self, inp: object) -> object:
        """A Responses input with its text redacted: a string, or items' contents (text parts included) and
        tool outputs."""
        if isinstance(inp, str):
            return self.redact(inp)
        return [self._redacted_item(item) if isinstance(item, dict) else item for item in inp] \
            if isinstance(inp, list) else inp

    def _redacted_item(self, item: dict[str, object]) -> dict[str, object]:
        content, output = item.get("content"), item.get("output")
        if isinstance(content, list):
            item = {**item, "content": [{**p, "text": self.redact(p["text"])}
                                        if isinstance(p, dict) and isinstance(p.get("text"), str) else p
                                        for p in content]}
        if isinstance(output, str):
            item = {**item, "output": self.redact(output)}
        return self._redacted(item)
