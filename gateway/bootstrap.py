"""From configuration to shared state: what the YAML declares is written to Redis at startup.

Versions declared in the file are authoritative for their backend fields (an edited base URL takes
effect on restart). Aliases are seeded only when absent: once a rollout is live, its state in Redis
(changed by the CLI, the API or the controller) wins over the file.
"""

from __future__ import annotations

import os

from gateway.config import AliasConfig, Settings, VersionConfig
from router.state import AliasState, RoutingSnapshot, VersionRecord
from router.store import StateStore


def version_record(v: VersionConfig) -> VersionRecord:
    return VersionRecord(name=v.name, base_url=v.base_url, model=v.model, api_key_env=v.api_key_env,
                         metadata=v.metadata)


def alias_state(a: AliasConfig) -> AliasState:
    return AliasState(name=a.name, stable=a.stable, candidate=a.candidate,
                      weight_bp=round(a.weight_pct * 100), rollout_id=a.candidate or "")


def declared_state(settings: Settings) -> RoutingSnapshot:
    return RoutingSnapshot(
        revision=0,
        versions={v.name: version_record(v) for v in settings.versions},
        aliases={a.name: alias_state(a) for a in settings.aliases},
    )


_BACKEND_FIELDS = ("base_url", "model", "api_key_env", "metadata")


async def apply_declared(store: StateStore, declared: RoutingSnapshot) -> int | None:
    """Write declared versions that are new or changed and aliases that are absent. Returns the new
    revision, or None when Redis already agreed."""
    current = await store.load()
    versions = []
    for v in declared.versions.values():
        old = current.versions.get(v.name)
        if old is None:
            versions.append(v)
        elif any(getattr(old, f) != getattr(v, f) for f in _BACKEND_FIELDS):
            versions.append(old.model_copy(update={f: getattr(v, f) for f in _BACKEND_FIELDS}))
    aliases = [a for a in declared.aliases.values() if a.name not in current.aliases]
    if not versions and not aliases:
        return None
    event = {"type": "config_applied", "actor": f"config:{os.getpid()}",
             "versions": [v.name for v in versions], "aliases": [a.name for a in aliases]}
    return await store.write(versions=versions, aliases=aliases, event=event)
