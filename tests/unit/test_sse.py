import orjson

from gateway.proxy.model_name import ModelRewrite
from gateway.proxy.sse import RESPONSES_STREAM, StreamScanner


def ev(obj) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


ROLE = ev({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
TOK = ev({"choices": [{"index": 0, "delta": {"content": "hi"}}]})
USAGE = ev({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}})
DONE = b"data: [DONE]\n\n"


def test_forwards_bytes_unchanged_and_strips_injected_usage():
    s = StreamScanner(strip_usage=True)
    out = b"".join(s.feed(c)[0] for c in (ROLE, TOK, USAGE, DONE))
    assert out == ROLE + TOK + DONE
    assert s.usage == {"prompt_tokens": 3, "completion_tokens": 1}
    assert s.done


def test_keeps_usage_when_client_asked_for_it():
    s = StreamScanner(strip_usage=False)
    out = b"".join(s.feed(c)[0] for c in (TOK, USAGE, DONE))
    assert out == TOK + USAGE + DONE and s.usage["completion_tokens"] == 1


def test_first_content_detected_after_role_chunk_even_across_split_reads():
    s = StreamScanner(strip_usage=True)
    assert s.feed(ROLE) == (ROLE, False)
    blob = TOK + DONE
    out1, first1 = s.feed(blob[:10])
    assert (out1, first1) == (b"", False)  # incomplete event waits
    out2, first2 = s.feed(blob[10:])
    assert out2 == blob and first2


def test_crlf_boundaries_and_unterminated_tail():
    s = StreamScanner(strip_usage=True)
    out, first = s.feed(b'data: {"choices":[{"text":"x"}]}\r\n\r\ndata: {"partial')
    assert out == b'data: {"choices":[{"text":"x"}]}\r\n\r\n' and first
    assert s.flush() == b'data: {"partial' and not s.done


def test_usage_event_in_the_middle_of_a_batch_with_crlf():
    usage_crlf = USAGE.replace(b"\n\n", b"\r\n\r\n")
    s = StreamScanner(strip_usage=True)
    out, _ = s.feed(TOK + usage_crlf + TOK + DONE)
    assert out == TOK + TOK + DONE and s.usage["prompt_tokens"] == 3


def test_content_mentioning_usage_is_not_mistaken_for_it():
    tricky = ev({"choices": [{"index": 0, "delta": {"content": 'the "usage":{ key'}}]})
    s = StreamScanner(strip_usage=True)
    out, _ = s.feed(tricky + USAGE + DONE)
    assert out == tricky + DONE and s.usage["completion_tokens"] == 1


# -- the Responses API's stream (event shapes as vLLM 0.32 writes them) ------------------------------------

def rev(obj) -> bytes:
    return b"event: " + obj["type"].encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def response_obj(status, output, usage=None, **extra):
    return {"id": "resp_1", "created_at": 1, "instructions": None, "metadata": extra.pop("metadata", None),
            "model": "ft", "object": "response", "output": output, "status": status, "usage": usage, **extra}


MSG = {"id": "msg_1", "content": [{"annotations": [], "text": "hi there", "type": "output_text"}], "role": "assistant",
       "status": "completed", "type": "message"}
R_USAGE = {"input_tokens": 15, "output_tokens": 2, "total_tokens": 17,
           "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
R_EVENTS = [
    rev({"response": response_obj("in_progress", []), "sequence_number": 0, "type": "response.created"}),
    rev({"response": response_obj("in_progress", []), "sequence_number": 1, "type": "response.in_progress"}),
    rev({"item": {**MSG, "content": [], "status": "in_progress"}, "output_index": 0, "sequence_number": 2,
         "type": "response.output_item.added"}),
    rev({"content_index": 0, "item_id": "msg_1", "output_index": 0, "part": {"text": "", "type": "output_text"},
         "sequence_number": 3, "type": "response.content_part.added"}),
    rev({"content_index": 0, "delta": "hi", "item_id": "msg_1", "output_index": 0, "sequence_number": 4,
         "type": "response.output_text.delta"}),
    rev({"content_index": 0, "delta": " there", "item_id": "msg_1", "output_index": 0, "sequence_number": 5,
         "type": "response.output_text.delta"}),
    rev({"item": MSG, "output_index": 0, "sequence_number": 6, "type": "response.output_item.done"}),
    rev({"response": response_obj("completed", [MSG], R_USAGE), "sequence_number": 7,
         "type": "response.completed"}),
]


def test_responses_stream_first_content_usage_and_end_without_done_marker():
    s = StreamScanner(strip_usage=False, fmt=RESPONSES_STREAM)
    firsts = [s.feed(e)[1] for e in R_EVENTS]
    assert firsts == [False, False, False, False, True, False, False, False]  # the first *.delta event
    assert s.done  # response.completed ends the stream (there is no [DONE])
    assert s.usage["prompt_tokens"] == 15 and s.usage["completion_tokens"] == 2  # input/output tokens, renamed


def test_responses_stream_is_forwarded_whole_and_incomplete_until_its_terminal_event():
    s = StreamScanner(strip_usage=False, fmt=RESPONSES_STREAM)
    out = b"".join(s.feed(e)[0] for e in R_EVENTS[:-1])
    assert out == b"".join(R_EVENTS[:-1]) and not s.done
    incomplete = rev({"response": response_obj("incomplete", [MSG], R_USAGE), "sequence_number": 7,
                      "type": "response.incomplete"})
    assert s.feed(incomplete)[0] == incomplete and s.done


def test_responses_stream_failure_ends_with_a_responses_error_event():
    s = StreamScanner(strip_usage=False, fmt=RESPONSES_STREAM)
    for e in R_EVENTS[:5]:
        s.feed(e)
    tail = s.error_tail("Backend stream failed: boom")
    assert tail.startswith(b"event: error\ndata: ") and tail.endswith(b"\n\n") and b"[DONE]" not in tail
    event = orjson.loads(tail.split(b"data: ", 1)[1])
    assert event == {"type": "error", "code": "upstream_failed", "message": "Backend stream failed: boom",
                     "param": None, "sequence_number": 5}
    chat = StreamScanner(strip_usage=True).error_tail("x")
    assert chat.endswith(b"data: [DONE]\n\n") and orjson.loads(chat.split(b"\n")[0][6:])["error"]["message"] == "x"


def test_stream_model_is_the_alias_in_every_chat_chunk_and_responses_event():
    chat_chunks = [ev({"id": "c", "model": "ft", "choices": [{"index": 0, "delta": {"content": f"w{i}"}}]})
                   for i in range(3)]
    s = StreamScanner(strip_usage=True, rewrite=ModelRewrite("ft", "bot"))
    out = s.feed(b"".join(chat_chunks) + USAGE + DONE)[0]
    assert out == b"".join(chat_chunks).replace(b'"model":"ft"', b'"model":"bot"') + DONE
    r = StreamScanner(strip_usage=False, fmt=RESPONSES_STREAM, rewrite=ModelRewrite("ft", "bot"))
    out = b"".join(r.feed(e)[0] for e in R_EVENTS)
    assert out.count(b'"model":"bot"') == 3 and b'"model":"ft"' not in out  # created, in_progress, completed
