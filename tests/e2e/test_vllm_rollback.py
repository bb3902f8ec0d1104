"""End to end with real vLLM CPU servers: the candidate (a perturbed copy) loses on one category to a
scripted judge; the controller rolls it back and both gateway replicas send traffic to stable within 1 s."""

from __future__ import annotations

import openai
import pytest

from tests.support.fake_judge import FakeJudge
from tests.support.rollout import rollback_scenario
from tests.support.servers import ThreadServer

pytestmark = pytest.mark.e2e
PROMPTS = ["If Tom is older than Ann and Ann is older than Bo, who is youngest?",
           "A farmer has 17 sheep and all but 9 run away. How many are left?",
           "Which is heavier, a kilo of feathers or a kilo of iron?",
           "If it rains, the ground is wet. The ground is wet. Did it rain?"]
PARAMS = {"max_tokens": 12, "temperature": 0}


async def test_vllm_candidate_regressing_on_reasoning_is_rolled_back(vllm_pair, gateway_factory, redis_srv,
                                                                     key_prefix):
    base, perturbed = vllm_pair
    direct = openai.OpenAI(base_url=f"{base.url}/v1", api_key="x", max_retries=0, timeout=60)
    # stable's answers are deterministic at temperature 0: the judge prefers exactly those
    known = {direct.chat.completions.create(model="base", messages=[{"role": "user", "content": p}], **PARAMS)
             .choices[0].message.content.strip() for p in PROMPTS}
    versions = [{"name": "v1", "base_url": f"{base.url}/v1", "model": "base"},
                {"name": "v2", "base_url": f"{perturbed.url}/v1", "model": "perturbed"}]
    with ThreadServer(FakeJudge("prefer_known", known=known).app) as judge:
        took, event = await rollback_scenario(gateway_factory, versions, judge.url, redis_srv.url, key_prefix,
                                              PROMPTS, "reasoning", PARAMS, timeout_s=180)
    assert took < 1.0, f"took {took:.2f}s"
    assert event["category"] == "reasoning" and event["after"]["candidate"] is None
