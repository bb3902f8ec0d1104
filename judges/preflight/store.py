"""Preflight state in Redis (prefix `P`):

- `P:preflight:baseline:<stable version>:<suite hash>`: hash item id -> the stable version's answer. Kept per
  version, so two candidates are compared against the same baseline answers.
- `P:preflight:run:<run id>`: hash item id -> the scored item. A run id is derived from what the run
  compares (suite hash, alias, stable, candidate, judge model), so running the same preflight again resumes
  it: items already scored are not sent again.
- `P:preflight:result:<run id>`: the finished result (JSON); `P:preflight:runs:<candidate>`: its run ids by
  time. The verdict is also stamped on the candidate's registry record (router/state.py: PreflightStamp).
"""

from __future__ import annotations

import hashlib
from typing import Any

from judges.answers import Answer
from judges.preflight.records import ItemResult, PreflightResult
from router.state import PreflightStamp, RoutingSnapshot, VersionRecord
from router.store import StateStore

TTL_S = 90 * 86400


def run_id(suite_hash: str, alias: str, stable: str, candidate: str, judge_model: str) -> str:
    digest = hashlib.blake2b("\x00".join((suite_hash, alias, stable, candidate, judge_model)).encode(),
                             digest_size=8).hexdigest()
    return f"pf-{digest}"


class PreflightStore:
    def __init__(self, state: StateStore) -> None:
        self.state = state
        self.r: Any = state.redis
        self.prefix = state.prefix

    def _baseline(self, stable: str, suite_hash: str) -> str:
        return f"{self.prefix}:preflight:baseline:{stable}:{suite_hash}"

    def _run(self, rid: str) -> str:
        return f"{self.prefix}:preflight:run:{rid}"

    def _result(self, rid: str) -> str:
        return f"{self.prefix}:preflight:result:{rid}"

    def _runs(self, candidate: str) -> str:
        return f"{self.prefix}:preflight:runs:{candidate}"

    async def baseline(self, stable: str, suite_hash: str) -> dict[str, Answer]:
        raw = await self.r.hgetall(self._baseline(stable, suite_hash))
        return {k.decode(): Answer.model_validate_json(v) for k, v in raw.items()}

    async def save_baseline(self, stable: str, suite_hash: str, item_id: str, answer: Answer) -> None:
        key = self._baseline(stable, suite_hash)
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(key, item_id, answer.model_dump_json())
        pipe.expire(key, TTL_S)
        await pipe.execute()

    async def scored(self, rid: str) -> dict[str, ItemResult]:
        raw = await self.r.hgetall(self._run(rid))
        return {k.decode(): ItemResult.model_validate_json(v) for k, v in raw.items()}

    async def save_item(self, rid: str, item: ItemResult) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(self._run(rid), item.id, item.model_dump_json())
        pipe.expire(self._run(rid), TTL_S)
        await pipe.execute()

    async def forget_run(self, rid: str) -> None:
        await self.r.delete(self._run(rid))

    async def save_result(self, result: PreflightResult, actor: str) -> None:
        """The result, and its stamp on the candidate's registry record (one event in the log)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.set(self._result(result.run_id), result.model_dump_json(), ex=TTL_S)
        pipe.zadd(self._runs(result.candidate), {result.run_id: result.finished_at})
        pipe.expire(self._runs(result.candidate), TTL_S)
        await pipe.execute()
        stamp = PreflightStamp(run_id=result.run_id, suite_id=result.suite_id, suite_hash=result.suite_hash,
                               baseline=result.stable, passed=result.verdict.passed, failed=result.verdict.failed,
                               items=len(result.items), at=result.finished_at)

        def mutate(snap: RoutingSnapshot) -> tuple[list[VersionRecord], list[str], dict[str, Any] | None]:
            v = snap.versions.get(result.candidate)
            if v is None:  # pruned meanwhile: the result stays under its run id
                return [], [], None
            event = {"type": "preflight_recorded", "actor": actor, "alias": result.alias,
                     "version": result.candidate, "preflight": stamp.model_dump()}
            return [v.model_copy(update={"preflight": stamp})], [], event

        await self.state.update_versions(mutate)

    async def result(self, rid: str) -> PreflightResult | None:
        raw = await self.r.get(self._result(rid))
        return PreflightResult.model_validate_json(raw) if raw else None

    async def latest(self, candidate: str) -> PreflightResult | None:
        ids = await self.r.zrevrange(self._runs(candidate), 0, 0)
        return await self.result(ids[0].decode()) if ids else None
