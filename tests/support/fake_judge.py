"""A judge with scripted verdicts, speaking the OpenAI chat format over real HTTP.

Modes: `prefer:<text>` picks the assistant whose answer contains <text> (tie if neither or both);
`prefer_known` picks the assistant whose answer is one of `known` (e.g. stable's deterministic answers);
`always_a` (pure position bias); `tie`; `garbage` (no verdict token); `rating:<n>`.
`fail_first` makes the first N calls answer 500; `delay_s` makes every answer slow.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

_ANSWER = re.compile(r"\[The Start of Assistant (A|B)'s Answer\]\n(.*?)\n\[The End of Assistant", re.S)


@dataclass
class FakeJudge:
    mode: str = "prefer:candidate"
    fail_first: int = 0
    delay_s: float = 0.0  # before each answer (a slow judge)
    known: set[str] = field(default_factory=set)
    calls: list[list[dict[str, Any]]] = field(default_factory=list)

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    def verdict(self, user: str) -> str:
        if self.mode == "always_a":
            return "Assistant A is clearly better. [[A]]"
        if self.mode == "tie":
            return "Both are equally good. [[C]]"
        if self.mode == "garbage":
            return "I think both have merits and flaws, hard to say."
        if self.mode.startswith("rating:"):
            return f"Decent answer. Rating: [[{self.mode.split(':', 1)[1]}]]"
        answers = dict(_ANSWER.findall(user))
        if self.mode == "prefer_known":
            a, b = answers.get("A", "").strip() in self.known, answers.get("B", "").strip() in self.known
        else:
            needle = self.mode.split(":", 1)[1]
            a, b = needle in answers.get("A", ""), needle in answers.get("B", "")
        return "A is better. [[A]]" if a and not b else "B is better. [[B]]" if b and not a else "Tie. [[C]]"

    async def chat(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.calls.append(body["messages"])
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if len(self.calls) <= self.fail_first:
            return JSONResponse({"error": {"message": "scripted failure", "type": "server_error"}}, 500)
        text = self.verdict(body["messages"][-1]["content"])
        return JSONResponse({"id": "judge", "object": "chat.completion", "model": body["model"],
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                          "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})


def main() -> None:
    """`python -m tests.support.fake_judge --port P --mode tie`: the judge as its own process."""
    import argparse

    import uvicorn

    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", default=FakeJudge.mode)
    a = ap.parse_args()
    uvicorn.run(FakeJudge(a.mode).app, host="127.0.0.1", port=a.port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
