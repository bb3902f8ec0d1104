"""The gateway's configuration: one YAML file, every field overridable by environment variables.

Precedence (highest first): environment (`CLIFFGUARD_<FIELD>`, nested with `__`, lists/objects as
JSON), then the YAML file, then defaults. Example: `CLIFFGUARD_LISTEN__PORT=9000`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from judges.config import JudgingConfig
from monitoring.policy import ControllerConfig
from router.classify.taxonomy import TaxonomyConfig

ENV_PREFIX = "CLIFFGUARD_"
CONFIG_ENV = "CLIFFGUARD_CONFIG"


class ConfigError(Exception):
    """A configuration problem, worded for the operator (names the bad field)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Listen(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)


class VersionConfig(_Strict):
    """A model version: a backend (OpenAI-compatible base URL) and the model or LoRA adapter it serves."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")
    base_url: str = Field(description="OpenAI-compatible base URL, e.g. http://vllm:8000/v1")
    model: str = Field(min_length=1, description="served model name or LoRA adapter name on that backend")
    api_key_env: str | None = Field(None, description="environment variable holding the backend's API key")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        u = urlsplit(v)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return v.rstrip("/")


class AliasConfig(_Strict):
    """A public model name: which version is stable and, during a rollout, the candidate and its share."""

    name: str = Field(min_length=1, max_length=128)
    stable: str
    candidate: str | None = None
    weight_pct: float = Field(0.0, ge=0.0, le=100.0, description="candidate share of traffic, percent")

    @model_validator(mode="after")
    def _candidate_differs(self) -> AliasConfig:
        if self.candidate is not None and self.candidate == self.stable:
            raise ValueError("candidate must differ from stable")
        return self


class ApiKey(_Strict):
    """A client key for the OpenAI endpoints. Give `key` or `key_env` (the env var that holds it)."""

    name: str
    key: str | None = None
    key_env: str | None = None

    def resolve(self) -> str | None:
        return self.key if self.key is not None else os.environ.get(self.key_env or "")


class AdminToken(_Strict):
    """An operator token for the admin API: `read` sees, `admin` also acts. Give `token` or `token_env`."""

    name: str
    token: str | None = None
    token_env: str | None = None
    role: Literal["admin", "read"] = "read"

    def resolve(self) -> str | None:
        return self.token if self.token is not None else os.environ.get(self.token_env or "")


class Auth(_Strict):
    api_keys: list[ApiKey] = Field(default_factory=list)
    admin_tokens: list[AdminToken] = Field(default_factory=list)


class Timeouts(_Strict):
    """Timeouts in seconds. Backend: `read` is the longest wait for any byte (headers or the next chunk),
    like nginx's proxy_read_timeout: a non-streamed answer must arrive within it. Client: `request_body` is
    how long a client may take to send its request body (then 408, and the connection is closed)."""

    connect: float = Field(5.0, gt=0)
    read: float = Field(300.0, gt=0)
    write: float = Field(30.0, gt=0)
    pool: float = Field(5.0, gt=0)
    request_body: float = Field(30.0, gt=0)


class Limits(_Strict):
    # images travel inline (base64 data URLs): OpenAI accepts up to 50 MB of them per request
    max_body_bytes: int = Field(64 * 1024 * 1024, gt=0)
    max_connections_per_backend: int = Field(512, gt=0)


class Routing(_Strict):
    """Stickiness: the first key found decides the arm. `header:<name>`, `user` (OpenAI field) or
    `conversation` (hash of the first user message)."""

    sticky_keys: list[str] = Field(default_factory=lambda: ["header:x-session-id", "user", "conversation"])

    @field_validator("sticky_keys")
    @classmethod
    def _known_keys(cls, keys: list[str]) -> list[str]:
        for k in keys:
            if not (k in ("user", "conversation") or (k.startswith("header:") and len(k) > 7)):
                raise ValueError(f"unknown sticky key {k!r} (use header:<name>, user or conversation)")
        return [k.lower() for k in keys]


class ClassifierConfig(_Strict):
    """The capability classifier (see docs/architecture.md, "Classification")."""

    enabled: bool = Field(True, description="false: only explicit categories and rules; the rest is `other`")
    encoder: Literal["static", "contextual"] = Field(
        "static", description="static: distilled token vectors (fast, default); contextual: the full transformer")
    model_path: str | None = Field(None, description="sentence-embedding model dir; default all-MiniLM-L6-v2")
    artifact: Path | None = Field(None, description="head from `cliffguard classifier fit`; default: fit on "
                                                    "the taxonomy's examples at startup (cached)")
    cache_dir: Path | None = Field(None, description="where the distilled table and the default head are "
                                                     "cached; default ~/.cache/cliffguard")
    min_confidence: float = Field(0.2, ge=0, le=1, description="below it the category is `other`")
    max_tokens: int = Field(128, ge=8, le=512)
    threads: int = Field(1, ge=1, le=16, description="torch threads of the process that runs the model "
                                                    "(contextual encoder)")
    batch_size: int = Field(32, ge=1, le=512)
    batch_wait_ms: float = Field(2.0, ge=0, le=100, description="how long a batch may gather: when the model's "
                                 "thread wakes from idle (one worker), or from each batch's first request (the "
                                 "classifier process of several workers); a full batch never waits")
    queue_size: int = Field(512, ge=1, description="requests waiting for the model per worker; past it a request "
                                                   "is labelled `unclassified` at once")
    cache_size: int = Field(20_000, ge=0)
    pin_wait_ms: float = Field(100.0, ge=0, description="how long routing may wait for the category when "
                                                        "the alias pins categories to stable")
    taxonomy: TaxonomyConfig = Field(default_factory=TaxonomyConfig)


class FeedbackConfig(_Strict):
    """User feedback (`POST /v1/feedback`) and the implicit regenerate signal."""

    # off by default: remembering every answer costs Redis memory (about 430 bytes per request for window_s,
    # bench/feedback_log.py) and CPU (bench/cpu_per_request.py --feedback)
    enabled: bool = Field(False, description="remember each answered request (alias, arm, version, category) so "
                                             "feedback on it can be joined; off: /v1/feedback answers 404")
    window_s: float = Field(86400.0, gt=0, description="how long after its answer a request takes feedback")
    regenerate_window_s: float = Field(600.0, ge=0, description="the same conversation resent within this is a "
                                                                "regenerate of the earlier answer (0: not counted)")
    comment_max_chars: int = Field(2000, ge=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    listen: Listen = Field(default_factory=Listen)
    workers: int = Field(1, ge=1, le=64)
    data_dir: Path = Path(".cliffguard")
    redis_url: str | None = Field(None, description="redis:// or unix:// URL; unset: embedded Redis")
    key_prefix: str = Field("cliffguard", min_length=1)
    state_refresh_s: float = Field(0.2, gt=0, le=1.0, description="how often replicas poll for changes")
    auth: Auth = Field(default_factory=Auth)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    limits: Limits = Field(default_factory=Limits)
    routing: Routing = Field(default_factory=Routing)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    judging: JudgingConfig = Field(default_factory=JudgingConfig)
    controller: ControllerConfig = Field(default_factory=ControllerConfig)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    versions: list[VersionConfig] = Field(default_factory=list)
    aliases: list[AliasConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> Settings:
        names = [v.name for v in self.versions]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate version names: {sorted(dupes)}")
        alias_names = [a.name for a in self.aliases]
        if len(set(alias_names)) != len(alias_names):
            raise ValueError("duplicate alias names")
        known = set(names)
        for a in self.aliases:
            for field in ("stable", "candidate"):
                ref = getattr(a, field)
                if ref is not None and ref not in known:
                    raise ValueError(f"alias {a.name!r}: {field} version {ref!r} is not declared in versions")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # env beats the file (passed as init kwargs)
        return (env_settings, init_settings)


def _format_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def load_settings(path: str | Path | None = None) -> Settings:
    """Load the YAML file (if any) and apply environment overrides; raise ConfigError naming bad fields."""
    path = path or os.environ.get(CONFIG_ENV)
    data: dict[str, Any] = {}
    source = "environment"
    if path:
        p = Path(path)
        source = str(p)
        try:
            loaded = yaml.safe_load(p.read_text())
        except FileNotFoundError as e:
            raise ConfigError(f"config file not found: {p}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must be a mapping at the top level")
        data = loaded or {}
    try:
        return Settings(**data)
    except ValidationError as e:
        raise ConfigError(_format_error(e, source)) from None
