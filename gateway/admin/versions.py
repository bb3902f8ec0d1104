"""Admin API: the version registry (register, list, show, retire). Retired and unused versions are kept
`controller.retention_days` (default 30) and can be made stable again until the leader prunes them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from pydantic import BaseModel, Field
from redis.exceptions import WatchError
from starlette.requests import Request

from gateway.admin.api import RequiredReason, parse
from gateway.auth import Identity
from gateway.config import VersionConfig
from gateway.context import GatewayContext
from gateway.errors import GatewayError
from gateway.proxy.upstream import UPSTREAM_ERRORS, Backends
from router.registry import DAY, in_use
from router.state import VersionRecord
from router.store import EVENTS_MAXLEN, StateStore, event_fields


class Register(VersionConfig):
    check: bool = Field(True, description="verify the backend answers and serves the model")
    lora_path: str | None = Field(None, description="load this LoRA adapter at runtime (vLLM "
                                                    "/v1/load_lora_adapter) under `model` before checking")
    reason: str | None = None


def _view(v: VersionRecord, used: set[str], retention_days: float) -> dict[str, Any]:
    prune_at = v.retired_at + retention_days * DAY if v.retired_at else None
    return {**v.model_dump(), "in_use": v.name in used, "prune_after": prune_at}


def handlers(ctx: GatewayContext) -> list[tuple[str, str, Any, bool, str, type[BaseModel] | None]]:
    retention = ctx.settings.controller.retention_days

    def find(name: str) -> VersionRecord:
        v = ctx.state.snapshot.versions.get(name)
        if v is None:
            raise GatewayError(404, f"Unknown version {name!r} (never registered, or pruned after its retention).",
                               "invalid_request_error", "version", "unknown_version")
        return v

    async def list_versions(request: Request, ident: Identity) -> Any:
        snap = ctx.state.snapshot
        used = in_use(snap)
        return {"retention_days": retention,
                "versions": [_view(v, used, retention) for v in sorted(snap.versions.values(), key=lambda v: v.name)]}

    async def show(request: Request, ident: Identity) -> Any:
        return _view(find(request.path_params["name"]), in_use(ctx.state.snapshot), retention)

    async def register(request: Request, ident: Identity) -> Any:
        body = parse(Register, await request.body())
        record = VersionRecord(name=body.name, base_url=body.base_url, model=body.model,
                               api_key_env=body.api_key_env, metadata=body.metadata)
        existing = ctx.state.snapshot.versions.get(body.name)
        if existing is not None:  # refused early, before any backend call; `_insert` decides atomically
            _same_backend(existing, record)
        if body.lora_path:
            await _load_lora(ctx.backends, record, body.lora_path)
        if body.check:
            ok, detail = await ctx.backends.probe(record)
            if not ok:
                raise GatewayError(422, f"Backend check failed for {body.name!r}: {detail}",
                                   "invalid_request_error", "base_url", "backend_check_failed")
        await _insert(ctx.store, record, {"type": "version_registered", "actor": ident.name,
                                          "version": record.model_dump(), "reason": body.reason})
        await ctx.state.refresh()
        return record

    async def retire(request: Request, ident: Identity) -> Any:
        body = parse(RequiredReason, await request.body())
        v = find(request.path_params["name"])
        users = [a.name for a in ctx.state.snapshot.aliases.values() if v.name in (a.stable, a.candidate)]
        if users:
            raise GatewayError(409, f"{v.name!r} is in use by {', '.join(users)}; roll out or roll back first.",
                               "invalid_request_error", "name", "conflict")
        if v.retired_at is not None:
            raise GatewayError(409, f"{v.name!r} is already retired ({v.retired_reason}).",
                               "invalid_request_error", "name", "conflict")
        retired = v.model_copy(update={"retired_at": time.time(), "retired_reason": f"retired by {ident.name}: "
                                                                                   f"{body.reason}"})
        await ctx.store.write(versions=[retired], event={"type": "version_retired", "actor": ident.name,
                                                          "version": v.name, "reason": body.reason})
        await ctx.state.refresh()
        return _view(retired, set(), retention)

    return [
        ("GET", "/admin/versions", list_versions, False, "Every registered version, with retention", None),
        ("GET", "/admin/versions/{name}", show, False, "One version", None),
        ("POST", "/admin/versions", register, True, "Register a version (its backend is checked)", Register),
        ("POST", "/admin/versions/{name}/retire", retire, True, "Retire a version (reason required)",
         RequiredReason),
    ]


def _same_backend(existing: VersionRecord, record: VersionRecord) -> None:
    if (existing.base_url, existing.model) != (record.base_url, record.model):
        raise GatewayError(409, f"Version {record.name!r} exists with another backend or model; versions are "
                           "immutable: register a new name.", "invalid_request_error", "name", "conflict")


async def _insert(store: StateStore, record: VersionRecord, event: dict[str, Any]) -> None:
    """Write the version unless another backend or model holds its name, as one transaction: of two
    concurrent registrations of a name with different fields, exactly one succeeds."""
    async with store.redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(store.k_versions)
                raw = await pipe.hget(store.k_versions, record.name)
                if raw is not None:
                    _same_backend(VersionRecord.model_validate_json(raw), record)
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.hset(store.k_versions, record.name, record.model_dump_json())
                pipe.incr(store.k_rev)
                pipe.xadd(store.k_events, event_fields(event), maxlen=EVENTS_MAXLEN, approximate=True)
                await pipe.execute()
                return
            except WatchError:
                continue


async def _load_lora(backends: Backends, v: VersionRecord, path: str) -> None:
    """vLLM with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True: load the adapter under the version's model name,
    with the version's backend key (a vLLM started with --api-key refuses the call without it)."""
    root = v.base_url.removesuffix("/v1")
    try:
        async with asyncio.timeout(60):
            async with await backends.call("POST", v, f"{root}/v1/load_lora_adapter",
                                           orjson.dumps({"lora_name": v.model, "lora_path": path})) as r:
                text = (await r.read()).decode("utf-8", "replace")
        if r.status != 200 and "already" not in text.lower():
            raise GatewayError(422, f"Loading LoRA adapter {path!r} failed: {r.status} {text[:300]}",
                               "invalid_request_error", "lora_path", "lora_load_failed")
    except UPSTREAM_ERRORS as e:
        raise GatewayError(422, f"Loading LoRA adapter failed: {type(e).__name__}: {e}", "invalid_request_error",
                           "lora_path", "lora_load_failed") from None
