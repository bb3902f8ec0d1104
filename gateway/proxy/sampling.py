"""After an answer is complete: decide whether the judges get it and, if so, push the sample."""

from __future__ import annotations

import time

from gateway.proxy.request import RESPONSES
from judges import answers
from judges.records import SAMPLE_IDENTIFIERS, Sample, generation_params
from judges.redaction import Redactor
from judges.sampling import LocalBudget, Sampler
from judges.sink import SampleSink
from monitoring import metrics as m
from router.classify import UNCLASSIFIED, Label
from router.split import Arm
from router.state import AliasState, VersionRecord

CLIENT_ID_MAX = 128  # a client's X-Request-Id is stored for correlation; it may not bloat the sample


class RequestSampler:
    def __init__(self, sampler: Sampler, sink: SampleSink, redactor: Redactor, single_when_no_candidate: bool) -> None:
        self.sampler = sampler
        self.budget = LocalBudget(sampler.cfg.max_per_second, sampler.cfg.max_per_day)
        self.sink = sink
        self.redactor = redactor
        self.single = single_when_no_candidate

    def wants_capture(self, alias: AliasState) -> bool:
        return bool(alias.candidate) or self.single

    def consider(self, *, request_id: str, alias: AliasState, version: VersionRecord, arm: str, endpoint: str,
                 body: dict[str, object], opt_out: bool, label: Label, answer_bytes: list[bytes],
                 stream: bool, client_request_id: str | None = None) -> None:
        """`request_id` is the gateway's own (random): a client cannot choose to be sampled, nor make two
        requests one."""
        if arm not in (Arm.STABLE, Arm.CANDIDATE) or label.category == UNCLASSIFIED or not self.wants_capture(alias):
            return
        if endpoint == RESPONSES and body.get("previous_response_id"):
            return  # the conversation is stored on the serving backend: the other version cannot see it
        if _carries_media(body):
            return  # the judge reads text; images, audio and files would be stored for 30 days unjudgeable
        if not self.sampler.decide(request_id, label.category, opted_out=opt_out):
            return
        # an answer that is only tool calls is sampled too: the judge sees the calls
        answer = answers.from_sse(answer_bytes, endpoint) if stream else answers.from_body(b"".join(answer_bytes),
                                                                                           endpoint)
        if answer is None:
            return
        now = time.time()
        if not self.budget.take(now):
            m.SAMPLES_OVER_BUDGET.inc()
            return
        messages = body.get("messages")
        meta = body.get("metadata")
        reference = meta.get("reference") if isinstance(meta, dict) else None
        sample = Sample(
            request_id=request_id, alias=alias.name, rollout_id=alias.rollout_id, category=label.category,
            endpoint=endpoint, served_version=version.name, served_arm=arm, stable=alias.stable,
            candidate=alias.candidate,
            messages=[msg for msg in messages if isinstance(msg, dict)] if isinstance(messages, list) else None,
            prompt=body.get("prompt"), input=body.get("input"), answer=answer, params=generation_params(dict(body)),
            reference=reference if isinstance(reference, str) else None,
            client_request_id=client_request_id[:CLIENT_ID_MAX] if client_request_id else None, ts=now,
        )
        self.sink.push(now, self.redactor.record(sample, SAMPLE_IDENTIFIERS).model_dump_json().encode())
        m.child(m.SAMPLES, alias.name, label.category).inc()


_TEXT_PARTS = frozenset({"text", "input_text", "output_text", "refusal"})


def _carries_media(body: dict[str, object]) -> bool:
    """Whether a chat or Responses request holds a non-text content part (image, audio, file)."""
    turns = body.get("messages")
    if not isinstance(turns, list):
        turns = body.get("input")
    for turn in turns if isinstance(turns, list) else []:
        content = turn.get("content") if isinstance(turn, dict) else None
        if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") not in _TEXT_PARTS
                                             for p in content):
            return True
    return False
