"""Answers of the Responses API, as the judges see them (shapes as vLLM 0.32 and openai.types.responses write
them)."""

import orjson

from judges import answers
from judges.answers import Answer, ToolCall

TEXT = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
        "content": [{"type": "output_text", "text": "Paris", "annotations": []},
                    {"type": "output_text", "text": " is the capital.", "annotations": []}]}
CALL = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "get_weather",
        "arguments": '{"city": "Paris"}', "status": "completed"}
REASONING = {"id": "rs_1", "type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "hm"}]}


def sse(*events):
    return [b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events]


def test_body_text_and_calls_without_reasoning():
    body = orjson.dumps({"object": "response", "model": "bot", "output": [REASONING, TEXT, CALL]})
    assert answers.from_body(body, "responses") == Answer(
        text="Paris is the capital.", tool_calls=[ToolCall(name="get_weather", arguments='{"city": "Paris"}')])
    refusal = {**TEXT, "content": [{"type": "refusal", "refusal": "I cannot help with that."}]}
    assert answers.from_body(orjson.dumps({"output": [refusal]}), "responses").text == "I cannot help with that."
    assert answers.from_body(orjson.dumps({"output": []}), "responses") == Answer(text="")  # said nothing
    assert answers.from_body(b'{"error": {"message": "x"}}', "responses") is None


def test_stream_answer_is_the_terminal_events_output():
    events = sse({"type": "response.created", "sequence_number": 0, "response": {"output": [], "model": "bot"}},
                 {"type": "response.output_text.delta", "sequence_number": 1, "delta": "Par", "output_index": 0},
                 {"type": "response.output_item.done", "sequence_number": 2, "output_index": 0, "item": TEXT},
                 {"type": "response.output_item.done", "sequence_number": 3, "output_index": 1, "item": CALL},
                 {"type": "response.completed", "sequence_number": 4, "response": {"output": [TEXT, CALL]}})
    full = Answer(text="Paris is the capital.", tool_calls=[ToolCall(name="get_weather",
                                                                   arguments='{"city": "Paris"}')])
    assert answers.from_sse(events, "responses") == full
    # no terminal event seen: the finished items, in output order
    assert answers.from_sse([events[3], events[2]], "responses") == full
    assert answers.from_sse(events[:2], "responses") is None
