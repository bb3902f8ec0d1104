"""Bearer-token checks for clients (gateway API keys) and operators (admin tokens).

Tokens are compared in constant time. A client's Authorization header is only ever read here; it is
never forwarded to a backend.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Literal

from gateway.config import Auth

Role = Literal["client", "read", "admin"]


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


ANONYMOUS = Identity("anonymous", "client")


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class Authenticator:
    def __init__(self, cfg: Auth) -> None:
        self._tokens: list[tuple[bytes, Identity]] = []
        for k in cfg.api_keys:
            if secret := k.resolve():
                self._tokens.append((secret.encode(), Identity(k.name, "client")))
        for t in cfg.admin_tokens:
            if secret := t.resolve():
                self._tokens.append((secret.encode(), Identity(t.name, t.role)))
        self.clients_need_key = any(i.role == "client" for _, i in self._tokens)
        self.admin_enabled = any(i.role != "client" for _, i in self._tokens)

    def identify(self, authorization: str | None) -> Identity | None:
        token = bearer(authorization)
        if token is None:
            return None
        raw = token.encode()
        found: Identity | None = None
        for secret, ident in self._tokens:  # no early exit: timing does not reveal which token matched
            if hmac.compare_digest(raw, secret):
                found = ident
        return found

    def client(self, authorization: str | None) -> Identity | None:
        """The caller of an OpenAI endpoint, or None when a key is required and missing or wrong. A client key
        or an admin token (which may force a version) qualifies; a read-only token only reads the admin API."""
        ident = self.identify(authorization)
        if ident is not None and ident.role != "read":
            return ident
        return None if self.clients_need_key else ANONYMOUS
