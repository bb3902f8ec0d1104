"""An admin token for a gateway started without one, so the console's buttons and the CLI work from the
first start. It is generated once, stored under the data dir (mode 0600) and printed once, at that
first start; later starts reuse the file and only say where it is. A configured admin token (in the
file or through its `token_env`) always wins, and then nothing is generated.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from gateway.config import ENV_PREFIX, Settings

TOKEN_FILE = "admin-token"
GENERATED_NAME = "generated-admin"
ADMIN_TOKENS_ENV = f"{ENV_PREFIX}AUTH__ADMIN_TOKENS"


def load_or_create(path: Path) -> tuple[str, bool]:
    """The token stored at `path`, or a new one written there (0600); True when it was just created."""
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if token:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)  # a copied or restored file: readable by the owner only
        return token, False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # an empty file from an interrupted write
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, True


def ensure_admin_token(settings: Settings, say: Callable[[str], None]) -> dict[str, str]:
    """Warn about admin tokens whose variable is unset; when no admin token is left, provide the generated
    one. Returns the environment the workers need for it (empty when one is configured)."""
    tokens = settings.auth.admin_tokens
    for t in tokens:
        if not t.resolve():
            why = f"${t.token_env} is not set" if t.token_env else "its token is empty"
            say(f"note: token {t.name!r} ({t.role}) is not in use: {why}")
    if any(t.role == "admin" and t.resolve() for t in tokens):
        return {}
    path = (settings.data_dir / TOKEN_FILE).resolve()
    token, created = load_or_create(path)
    if created:
        say(f"No admin token is configured, so one was generated and saved in {path} (readable by you only).\n"
            f"  It is shown this once; later starts reuse it. Admin token: {token}")
    else:
        say(f"No admin token is configured: using the one generated at the first start ({path}).")
    listed = [t.model_dump(exclude_none=True) for t in tokens]
    return {ADMIN_TOKENS_ENV: json.dumps([*listed, {"name": GENERATED_NAME, "token": token, "role": "admin"}])}
