"""Everything a gateway process holds while it runs, built in the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from redis.exceptions import RedisError

from gateway.auth import Authenticator
from gateway.bootstrap import apply_declared, declared_state
from gateway.classification import build_classifier
from gateway.config import Settings
from gateway.feedback import RequestLog
from gateway.processes.embedded_redis import EmbeddedRedis
from gateway.proxy.sampling import RequestSampler
from gateway.proxy.upstream import Backends
from judges.queue import JudgeQueue
from judges.redaction import Redactor
from judges.sampling import Sampler
from judges.sink import SampleSink
from monitoring import metrics as m
from monitoring.controller import Controller
from monitoring.guards import GuardCounters
from monitoring.notify import Notifier
from monitoring.rollout_metrics import AnalysisMirror
from monitoring.rollouts import Rollouts
from router.classify import RequestClassifier
from router.live_state import LiveState
from router.state import RoutingSnapshot
from router.store import StateStore, connect


def _export_state(snap: RoutingSnapshot) -> None:
    m.STATE_REVISION.set(snap.revision)
    for a in snap.aliases.values():
        m.CANDIDATE_WEIGHT.labels(a.name).set(a.effective_weight_bp() / 10_000)


def build_sampler(settings: Settings, store: StateStore) -> RequestSampler | None:
    j = settings.judging
    if not j.enabled:
        return None
    sink = SampleSink(JudgeQueue(store.redis, settings.key_prefix, j.stream_maxlen), buffer_size=j.sampling.buffer_size,
                      max_per_second=j.sampling.max_per_second, max_per_day=j.sampling.max_per_day,
                      spill_dir=settings.data_dir / "judging")
    sink.start()
    return RequestSampler(Sampler(j.sampling), sink, Redactor.from_config(j.sampling), j.single_when_no_candidate)


def build_controller(settings: Settings, store: StateStore, categories: list[str],
                     notifier: Notifier) -> Controller | None:
    c = settings.controller
    if not c.enabled:
        return None
    queue = JudgeQueue(store.redis, settings.key_prefix, settings.judging.stream_maxlen)
    return Controller(c, store, queue, categories, notifier)


@dataclass
class GatewayContext:
    settings: Settings
    store: StateStore
    state: LiveState
    backends: Backends
    auth: Authenticator
    classifier: RequestClassifier
    sampler: RequestSampler | None
    rollouts: Rollouts
    analyses: AnalysisMirror
    controller: Controller | None = None
    guards: GuardCounters | None = None
    requests: RequestLog | None = None  # what answered each request, for feedback (None: feedback off)
    embedded: EmbeddedRedis | None = None
    _controller_task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, settings: Settings) -> GatewayContext:
        embedded = None
        url = settings.redis_url
        if not url:  # run in-process without `cliffguard serve`: own the embedded Redis here
            embedded = EmbeddedRedis(settings.data_dir / "redis")
            url = embedded.url
        store = StateStore(connect(url), settings.key_prefix)
        declared = declared_state(settings)
        # Redis down at startup: LiveState serves the declared state until it returns
        with contextlib.suppress(RedisError, OSError):
            await apply_declared(store, declared)
        state = LiveState(store, settings.state_refresh_s, on_change=_export_state,
                          on_redis_status=lambda ok: m.REDIS_UP.set(1 if ok else 0))
        await state.start(seed=declared)
        classifier = await build_classifier(settings.classifier)
        notifier = Notifier(settings.controller.webhooks)
        analyses = AnalysisMirror(store)
        analyses.start()
        ctx = cls(settings, store, state, Backends(settings.timeouts, settings.limits),
                  Authenticator(settings.auth), classifier, build_sampler(settings, store),
                  Rollouts(store, notifier), analyses,
                  build_controller(settings, store, list(classifier.taxonomy.names), notifier), embedded=embedded)
        ctx.guards = GuardCounters(store.redis, settings.key_prefix)
        ctx.guards.start()
        if settings.feedback.enabled:
            ctx.requests = RequestLog(store.redis, settings.key_prefix, settings.feedback)
            ctx.requests.start()
        if ctx.controller is not None:  # every replica runs it; only the elected leader acts
            ctx._controller_task = asyncio.create_task(ctx.controller.run(), name="cliffguard-controller")
        return ctx

    async def stop(self) -> None:
        if self.controller and self._controller_task:
            self.controller.stop()
            await asyncio.gather(self._controller_task, return_exceptions=True)
        if self.guards:
            await self.guards.stop()
        if self.requests:
            await self.requests.stop()
        await self.analyses.stop()
        if self.sampler:
            await self.sampler.sink.stop()
        if self.classifier.service:
            self.classifier.service.stop()
        await self.state.stop()
        await self.backends.aclose()
        await self.store.redis.aclose()
        if self.embedded:
            self.embedded.close()
