"""The generated admin token of `cliffguard serve`: created once (0600), reused, never over a configured one."""

from __future__ import annotations

import json
import stat

from gateway.config import Settings
from gateway.processes.admin_token import ADMIN_TOKENS_ENV, ensure_admin_token, load_or_create


def test_created_once_with_owner_only_permissions_then_reused(tmp_path):
    path = tmp_path / "data" / "admin-token"
    token, created = load_or_create(path)
    assert created and len(token) >= 40 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create(path) == (token, False)


def test_a_loose_or_empty_file_is_repaired(tmp_path):
    path = tmp_path / "admin-token"
    path.write_text("")
    token, created = load_or_create(path)
    assert created and token
    path.chmod(0o644)
    assert load_or_create(path) == (token, False) and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_configured_admin_token_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("OPS_TOKEN", "s3cret")
    said: list[str] = []
    s = Settings(data_dir=tmp_path, auth={"admin_tokens": [{"name": "ops", "token_env": "OPS_TOKEN", "role": "admin"}]})
    assert ensure_admin_token(s, said.append) == {} and said == []
    assert not (tmp_path / "admin-token").exists()


def test_without_one_the_generated_token_joins_the_configured_ones_and_is_said_once(tmp_path, monkeypatch):
    monkeypatch.delenv("OPS_TOKEN", raising=False)
    s = Settings(data_dir=tmp_path, auth={"admin_tokens": [
        {"name": "ops", "token_env": "OPS_TOKEN", "role": "admin"}, {"name": "view", "token": "ro", "role": "read"}]})
    said: list[str] = []
    env = ensure_admin_token(s, said.append)
    token = (tmp_path / "admin-token").read_text().strip()
    listed = json.loads(env[ADMIN_TOKENS_ENV])
    assert {"name": "view", "token": "ro", "role": "read"} in listed
    assert {"name": "generated-admin", "token": token, "role": "admin"} in listed
    assert any("$OPS_TOKEN is not set" in line for line in said) and sum(token in line for line in said) == 1
    said.clear()
    assert ensure_admin_token(s, said.append) == env and not any(token in line for line in said)
    monkeypatch.setenv(ADMIN_TOKENS_ENV, env[ADMIN_TOKENS_ENV])  # what a worker loads
    assert [t.resolve() for t in Settings().auth.admin_tokens if t.role == "admin"] == [None, token]
