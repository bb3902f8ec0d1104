"""User feedback: `POST /v1/feedback` on an answer, by the gateway's own request id (the `X-Request-Id`
every answer carries), joined to the alias, arm, version and category that answered it; and the implicit
regenerate signal (the same conversation resent).

Off the hot path: the proxy only appends a tuple per answered request to `RequestLog` (after the client has
its last byte). A background task writes the batch every 250 ms with one Lua script: `P:req:<id>` (what
answered it, kept `feedback.window_s`) and `P:conv:<digest>` (the conversation's last request, kept
`regenerate_window_s`; SET ... GET returns the earlier one when the same conversation was resent, and that
earlier answer is counted as regenerated). Feedback is recorded once per request id by one Lua script that
also adds the counts: per version in the rollout's guard hash (the `negative_feedback` guard compares the
candidate's negative share with stable's there, monitoring/guards.py) and per arm and category in
`P:feedback:<alias>:<rollout id>`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, Field, StrictInt, ValidationError
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from gateway.auth import Authenticator
from gateway.config import FeedbackConfig
from gateway.errors import GatewayError, bad_request, unauthorized
from judges.redaction import Redactor
from monitoring import guards
from monitoring import metrics as m
from monitoring.flushing import PeriodicFlush

log = logging.getLogger("cliffguard.feedback")
FLUSH_S = 0.25


@dataclass(frozen=True, slots=True)
class Answered:
    """What answered one request: the join key of its feedback."""

    alias: str
    rollout_id: str
    version: str
    arm: str
    category: str

    def dumps(self) -> bytes:
        return orjson.dumps([self.alias, self.rollout_id, self.version, self.arm, self.category])

    @classmethod
    def loads(cls, raw: bytes) -> Answered:
        return cls(*orjson.loads(raw))


def sentiment(score: str | int) -> str:
    if score in ("up", 4, 5):
        return "positive"
    return "negative" if score in ("down", 1, 2) else "neutral"


def feedback_key(prefix: str, alias: str, rollout_id: str) -> str:
    return f"{prefix}:feedback:{alias}:{rollout_id}"


def conversation_digest(alias: str, body: Mapping[str, Any]) -> str | None:
    """The conversation a request sends (its turns and its user), or None when it has none to compare."""
    turns = body.get("messages") or body.get("input") or body.get("prompt")
    if not turns:
        return None
    raw = orjson.dumps([alias, body.get("user"), turns], option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


# what answered each request, and each conversation's last request; returns the earlier holders of the
# conversations sent again (regenerates). ARGV: ttl, regenerate window, prefix, then (id, payload, digest or "").
# One script per batch: packing two commands per request in a pipeline cost ~50 us of the gateway's CPU each.
_LOG = """
local ttl, window, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local earlier = {}
for i = 4, #ARGV, 3 do
  redis.call('SET', prefix .. ':req:' .. ARGV[i], ARGV[i + 1], 'EX', ttl)
  if ARGV[i + 2] ~= '' and window > 0 then
    local prev = redis.call('SET', prefix .. ':conv:' .. ARGV[i + 2], ARGV[i + 1], 'EX', window, 'GET')
    if prev then earlier[#earlier + 1] = prev end
  end
end
return earlier
"""
_SCRIPT_BATCH = 1000


class RequestLog(PeriodicFlush):
    def __init__(self, redis: Any, prefix: str, cfg: FeedbackConfig) -> None:
        self.redis = redis
        self.prefix = prefix
        self.cfg = cfg
        self._pending: list[tuple[str, Answered, Mapping[str, Any] | None]] = []
        self._recent: dict[str, Answered] = {}  # the last batch: feedback may arrive before it is written
        self.flush_s = FLUSH_S
        self._log = redis.register_script(_LOG)

    def record(self, request_id: str, answered: Answered, body: Mapping[str, Any] | None) -> None:
        """On the request path (after the last byte): one append; the body is only referenced."""
        self._pending.append((request_id, answered, body))

    def find_local(self, request_id: str) -> Answered | None:
        found: Answered | None = next((a for rid, a, _ in reversed(self._pending) if rid == request_id), None)
        return found or self._recent.get(request_id)

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        window = int(self.cfg.regenerate_window_s)
        earlier: list[bytes] = []
        try:
            for i in range(0, len(batch), _SCRIPT_BATCH):  # one script call per slice: a few ms of Redis at most
                args: list[Any] = [int(self.cfg.window_s), window, self.prefix]
                for rid, a, body in batch[i:i + _SCRIPT_BATCH]:
                    digest = conversation_digest(a.alias, body) if window and body is not None else None
                    args += [rid, a.dumps(), digest or ""]
                earlier += await self._log(args=args)
        except (RedisError, OSError):
            self._pending[:0] = batch  # kept for the next try, in order (a slice written twice is harmless)
            raise
        self._recent = {rid: a for rid, a, _ in batch}
        if earlier:
            await self._count_regenerated([Answered.loads(r) for r in earlier])

    async def _count_regenerated(self, answers: list[Answered]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for a in answers:
            m.child(m.REGENERATIONS, a.alias, a.arm, a.version, a.category).inc()
            if a.rollout_id:
                gk, fk = guards.key(self.prefix, a.alias, a.rollout_id), feedback_key(self.prefix, a.alias,
                                                                                     a.rollout_id)
                pipe.hincrby(gk, f"{a.version}:regenerated", 1)
                pipe.hincrby(fk, f"{a.arm}:{a.category}:regenerated", 1)
                pipe.expire(fk, guards.TTL_S)
        await pipe.execute()


# once per request id: the feedback, and its counts. KEYS: feedback marker, guard hash, feedback hash.
# ARGV: ttl, payload, version, arm:category, negative (0/1), score. Returns {1} or {0, stored payload}.
_RECORD = """
local prev = redis.call('GET', KEYS[1])
if prev then return {0, prev} end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[1])
if KEYS[2] ~= '' then
  redis.call('HINCRBY', KEYS[2], ARGV[3] .. ':feedback', 1)
  redis.call('HINCRBY', KEYS[2], ARGV[3] .. ':negative', tonumber(ARGV[5]))
  redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':feedback', 1)
  redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':negative', tonumber(ARGV[5]))
  redis.call('HINCRBY', KEYS[3], ARGV[4] .. ':score_sum', tonumber(ARGV[6]))
  redis.call('EXPIRE', KEYS[3], 604800)
end
return {1}
"""


class FeedbackBody(BaseModel):
    request_id: str = Field(min_length=1, max_length=64, description="the X-Request-Id header of the answer")
    score: Literal["up", "down"] | StrictInt = Field(description="\"up\" or \"down\", or 1 to 5")
    comment: str | None = Field(None, max_length=20_000)


# a 1-5 score as a number (thumbs: up 5, down 1) for the score sum
_SCORE = {"up": 5, "down": 1}


class FeedbackEndpoint:
    def __init__(self, redis: Any, prefix: str, cfg: FeedbackConfig, auth: Authenticator, log_: RequestLog | None,
                 redactor: Redactor) -> None:
        self.redis = redis
        self.prefix = prefix
        self.cfg = cfg
        self.auth = auth
        self.requests = log_
        self.redactor = redactor
        self._record = redis.register_script(_RECORD)

    async def handle(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except GatewayError as e:
            return Response(e.body(), status_code=e.status, media_type="application/json")
        except (RedisError, OSError) as e:
            err = GatewayError(503, f"Redis is unreachable ({type(e).__name__}); the feedback was not recorded.",
                               "server_error", None, "redis_unavailable")
            return Response(err.body(), status_code=503, media_type="application/json")

    async def _handle(self, request: Request) -> Response:
        if self.auth.client(request.headers.get("authorization")) is None:  # the proxy's own check
            raise unauthorized()
        body = _parse(await request.body(), self.cfg.comment_max_chars)
        answered = await self._find(body.request_id)
        if answered is None:
            raise GatewayError(404, f"Unknown request id {body.request_id!r}: not an answer of this gateway, or "
                               f"older than {self.cfg.window_s:g} s.", "invalid_request_error", "request_id",
                               "unknown_request_id")
        kind = sentiment(body.score)
        payload = orjson.dumps({"score": body.score, "sentiment": kind,
                                "comment": self.redactor.text(body.comment) if body.comment else None})
        live = bool(answered.rollout_id) and answered.arm in ("stable", "candidate")
        keys = [f"{self.prefix}:fb:{body.request_id}",
                guards.key(self.prefix, answered.alias, answered.rollout_id) if live else "",
                feedback_key(self.prefix, answered.alias, answered.rollout_id) if live else ""]
        score = _SCORE.get(body.score, body.score) if isinstance(body.score, str) else body.score
        res = await self._record(keys=keys, args=[int(self.cfg.window_s), payload, answered.version,
                                                  f"{answered.arm}:{answered.category}", int(kind == "negative"),
                                                  score])
        duplicate = int(res[0]) == 0
        if duplicate and orjson.loads(res[1])["score"] != body.score:
            raise GatewayError(409, f"Feedback on request {body.request_id!r} was already recorded with another "
                               "score; it is recorded once.", "invalid_request_error", "score", "conflict")
        if not duplicate:
            m.child(m.FEEDBACK, answered.alias, answered.arm, answered.version, answered.category, kind).inc()
        return Response(orjson.dumps({
            "object": "feedback", "request_id": body.request_id, "recorded": not duplicate, "duplicate": duplicate,
            "score": body.score, "sentiment": kind, "alias": answered.alias, "arm": answered.arm,
            "version": answered.version, "category": answered.category}), media_type="application/json")

    async def _find(self, request_id: str) -> Answered | None:
        """A request is logged just after its client has the last byte, and written within FLUSH_S: feedback
        sent at once may come first, so an id not found yet is looked for again for a moment."""
        if self.requests is None:
            return None
        deadline = time.monotonic() + 4 * FLUSH_S
        while True:
            local = self.requests.find_local(request_id)
            if local is not None:
                return local
            raw = await self.redis.get(f"{self.prefix}:req:{request_id}")
            if raw:
                return Answered.loads(raw)
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(FLUSH_S / 5)


def _parse(raw: bytes, comment_max: int) -> FeedbackBody:
    try:
        body = FeedbackBody.model_validate_json(raw or b"{}")
    except ValidationError as e:
        first = e.errors()[0]
        param = str(first["loc"][0]) if first["loc"] else None
        if param == "score":
            raise bad_request("Invalid 'score': use \"up\" or \"down\", or an integer from 1 to 5.", "score",
                              "invalid_score") from None
        raise bad_request(f"{'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}", param,
                          "invalid_value") from None
    if isinstance(body.score, int) and not 1 <= body.score <= 5:
        raise bad_request(f"Invalid 'score': {body.score} is not from 1 to 5 (or \"up\"/\"down\").", "score",
                          "invalid_score")
    if body.comment is not None and len(body.comment) > comment_max:
        raise bad_request(f"'comment' is longer than {comment_max} characters.", "comment", "comment_too_long")
    return body


async def feedback_counts(redis: Any, prefix: str, alias: str, rollout_id: str) -> dict[str, dict[str, int]]:
    """`<arm>:<category>` -> {feedback, negative, score_sum, regenerated} for one rollout."""
    raw = await redis.hgetall(feedback_key(prefix, alias, rollout_id))
    out: dict[str, dict[str, int]] = {}
    for k, v in raw.items():
        key, _, f = k.decode().rpartition(":")
        out.setdefault(key, {})[f] = int(v)
    return out
