import orjson

from gateway.proxy.sse import StreamScanner


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
