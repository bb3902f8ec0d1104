"""A small client of the admin API, used by the CLI (URL and token from flags or environment)."""

from __future__ import annotations

import os
from typing import Any

import httpx

URL_ENV = "CLIFFGUARD_URL"
TOKEN_ENV = "CLIFFGUARD_TOKEN"


class AdminError(Exception):
    pass


class AdminClient:
    def __init__(self, url: str | None = None, token: str | None = None, timeout_s: float = 10.0) -> None:
        self.url = (url or os.environ.get(URL_ENV) or "http://127.0.0.1:8080").rstrip("/")
        token = token or os.environ.get(TOKEN_ENV)
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s, trust_env=False)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             params: dict[str, Any] | None = None) -> Any:
        try:
            r = self._http.request(method, path, json=body, params=params)
        except httpx.HTTPError as e:
            raise AdminError(f"cannot reach the gateway at {self.url}: {e}") from None
        if r.status_code >= 400:
            try:
                msg = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                msg = r.text[:300]
            raise AdminError(f"{r.status_code}: {msg}")
        return r.json()

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", "/admin/state")
        return result

    def revision(self, alias: str) -> int | None:
        """The alias's revision as live now: the state an operator's action is decided on."""
        a = next((a for a in self.state()["aliases"] if a["name"] == alias), None)
        return None if a is None else int(a["revision"])

    def alias_op(self, alias: str, op: str, **body: Any) -> dict[str, Any]:
        """An operation carrying the revision it was decided on: refused (409) if the alias changed since."""
        body = {"expected_revision": self.revision(alias), **body}
        result: dict[str, Any] = self.call("POST", f"/admin/aliases/{alias}/{op}",
                                           {k: v for k, v in body.items() if v is not None})
        return result

    def set_split(self, alias: str, candidate: str | None, weight_pct: float, reason: str | None) -> dict[str, Any]:
        result: dict[str, Any] = self.call("PUT", f"/admin/aliases/{alias}/split",
                                           {"candidate": candidate, "weight_pct": weight_pct, "reason": reason,
                                            "expected_revision": self.revision(alias)})
        return result
