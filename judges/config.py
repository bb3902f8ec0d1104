"""Configuration of sampling, the judge model and the judge worker."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from judges.sampling import SamplingConfig


class JudgeConfig(BaseModel):
    """Any OpenAI-compatible endpoint: a vLLM serving a judge model, or a hosted API."""

    model_config = ConfigDict(extra="forbid")
    base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible base URL")
    model: str = "judge"
    api_key_env: str | None = None
    temperature: float = 0.0
    max_tokens: int = Field(512, gt=0)
    timeout_s: float = Field(60.0, gt=0)
    max_concurrency: int = Field(8, ge=1)
    prompts: dict[str, str] = Field(default_factory=dict, description="per-category system prompt overrides")


class WorkerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    consumer: str | None = Field(None, description="consumer name (default: hostname-pid)")
    concurrency: int = Field(16, ge=1, description="messages processed at once")
    max_attempts: int = Field(5, ge=1, description="deliveries before a message goes to the dead letters")
    retry_backoff_s: float = Field(0.5, gt=0, description="first in-process retry delay (doubles)")
    attempts_in_process: int = Field(6, ge=1, description="tries before a failing sample is left for a later "
                                                          "claim: 6 with the default backoff span about 15 s, "
                                                          "so a backend restart delays its samples by seconds")
    claim_idle_s: float = Field(60.0, gt=0, description="pending this long under a live worker: claimed for a retry")
    dead_after_s: float = Field(10.0, gt=0, description="a worker without a heartbeat this long is gone: its "
                                                        "pending samples are claimed at once")
    pair_ttl_days: float = Field(30.0, gt=0)
    generation_timeout_s: float = Field(120.0, gt=0)
    stop_grace_s: float = Field(10.0, ge=0, description="on a stop, how long samples in hand may finish; the "
                                                        "rest stay pending and another worker claims them")
    metrics_port: int | None = Field(9108, description="Prometheus port of the worker (None: off); taken by "
                                                       "another worker on the host: the next free one, logged")


class JudgingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    single_when_no_candidate: bool = Field(
        False, description="with no candidate, sample and rate stable's answers 1-10 (stores prompts with no rollout)")
    stream_maxlen: int = Field(100_000, gt=0)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
