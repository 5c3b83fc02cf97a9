"""The fake provider driven directly (no Envoy): the official openai and anthropic SDKs must
parse its answers, streamed and not, and its controls and recording must work, because
every other end-to-end test relies on them."""

from __future__ import annotations

import base64
import json
import math
import socket
from urllib.parse import urlsplit

import anthropic
import openai
import pytest
import requests


PROMPT = "Héllo, wörld: 日本語 ✓"
ECHO = f"You said: {PROMPT}"


def openai_client(fake, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{fake.url}/v1", api_key="sk-test", max_retries=0, **kw)


def anthropic_client(fake) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=fake.url, api_key="sk-ant-test", max_retries=0)


def sse_events(raw: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) pairs of an SSE body."""
    events = []
    for block in raw.decode("utf-8").split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data.append(line[len("data: "):])
        events.append((name, "\n".join(data)))
    return events


def raw_http(fake, path: str, body: dict, headers: dict[str, str]) -> tuple[bytes, list[int]]:
    """POSTs over a plain socket and decodes the chunked body by hand, returning the body
    and the size of each HTTP chunk (one chunk per write the server made)."""
    host, port = urlsplit(fake.url).hostname, urlsplit(fake.url).port
    payload = json.dumps(body).encode()
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
            f"Content-Length: {len(payload)}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    header_blob, rest = data.split(b"\r\n\r\n", 1)
    assert b" 200 " in header_blob.split(b"\r\n")[0], header_blob
    assert b"transfer-encoding: chunked" in header_blob.lower()
    out, sizes = b"", []
    while True:
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out, sizes
        out += rest[:size]
        sizes.append(size)
        assert rest[size:size + 2] == b"\r\n"
        rest = rest[size + 2:]


# --- OpenAI -------------------------------------------------------------------------------

def test_health(fake):
    r = requests.get(f"{fake.url}/_fake/health", timeout=10)
    assert r.status_code == 200


def test_openai_chat(fake):
    c = openai_client(fake).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "be brief"},
                  {"role": "user", "content": "first"},
                  {"role": "assistant", "content": "ok"},
                  {"role": "user", "content": PROMPT}],
    )
    assert c.object == "chat.completion"
    assert c.id.startswith("chatcmpl-")
    assert c.model == "gpt-4o-mini"
    assert c.choices[0].message.role == "assistant"
    assert c.choices[0].message.content == ECHO
    assert c.choices[0].finish_reason == "stop"
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens > 0


def test_openai_chat_content_parts(fake):
    c = openai_client(fake).chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": [{"type": "text", "text": "a"},
                                               {"type": "text", "text": "b"}]}],
    )
    assert c.choices[0].message.content == "You said: a\nb"


def test_openai_chat_stream(fake):
    stream = openai_client(fake).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-fake-delta-chars": "3"},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == ECHO
    content_chunks = [ch for ch in chunks if ch.choices and ch.choices[0].delta.content]
    assert len(content_chunks) == math.ceil(len(ECHO) / 3)
    finals = [ch.choices[0].finish_reason for ch in chunks if ch.choices]
    assert finals[-1] == "stop" and set(finals[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_openai_chat_stream_done_marker(fake):
    r = requests.post(f"{fake.url}/v1/chat/completions",
                      json={"model": "m", "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.content)
    assert events[-1] == (None, "[DONE]")
    assert all(json.loads(d)["object"] == "chat.completion.chunk" for _, d in events[:-1])
    # Without include_usage there is no usage chunk.
    assert all(json.loads(d)["choices"] for _, d in events[:-1])


def test_openai_responses(fake):
    r = openai_client(fake).responses.create(model="gpt-4.1", input=PROMPT)
    assert r.object == "response" and r.status == "completed"
    assert r.output[0].content[0].type == "output_text"
    assert r.output_text == ECHO


def test_openai_responses_message_input(fake):
    r = openai_client(fake).responses.create(
        model="gpt-4.1",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "x"}]},
               {"role": "assistant", "content": "y"},
               {"role": "user", "content": [{"type": "input_text", "text": PROMPT}]}],
    )
    assert r.output_text == ECHO


def test_openai_responses_stream(fake):
    client = openai_client(fake)
    events = list(client.responses.create(model="gpt-4.1", input=PROMPT, stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "response.output_item.added" in types and "response.content_part.added" in types
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == ECHO
    assert events[-1].response.output_text == ECHO

    # The SDK's accumulating helper checks event order and identities.
    with client.responses.stream(model="gpt-4.1", input=PROMPT) as stream:
        final = stream.get_final_response()
    assert final.output_text == ECHO


def test_openai_legacy_completions(fake):
    client = openai_client(fake)
    c = client.completions.create(model="gpt-3.5-turbo-instruct", prompt=PROMPT)
    assert c.object == "text_completion" and c.choices[0].text == ECHO
    stream = client.completions.create(model="m", prompt=["a", PROMPT], stream=True)
    chunks = list(stream)
    assert "".join(ch.choices[0].text for ch in chunks) == ECHO
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_openai_embeddings(fake):
    client = openai_client(fake)
    # The SDK asks for base64 by default and decodes it; ask for floats too and compare.
    b64 = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    flt = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"],
                                   encoding_format="float")
    assert [d.index for d in b64.data] == [0, 1]
    for a, b in zip(b64.data, flt.data):
        assert len(a.embedding) == 8
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
        assert math.fsum(x * x for x in b.embedding) == pytest.approx(1.0, abs=1e-5)
    assert flt.data[0].embedding != flt.data[1].embedding
    again = client.embeddings.create(model="m", input="alpha", encoding_format="float")
    assert again.data[0].embedding == flt.data[0].embedding
    wide = client.embeddings.create(model="m", input="alpha", dimensions=64)
    assert len(wide.data[0].embedding) == 64
    assert fake.requests()[0]["json"]["encoding_format"] == "base64"


def test_azure_openai(fake):
    client = openai.AzureOpenAI(azure_endpoint=fake.url, api_key="azure-key",
                                api_version="2024-10-21", max_retries=0)
    c = client.chat.completions.create(model="my-deployment",
                                       messages=[{"role": "user", "content": PROMPT}])
    assert c.choices[0].message.content == ECHO
    chunks = list(client.chat.completions.create(
        model="my-deployment", messages=[{"role": "user", "content": "hi"}], stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) \
        == "You said: hi"
    req = fake.requests()[0]
    assert req["path"] == "/openai/deployments/my-deployment/chat/completions"
    assert req["query"] == "api-version=2024-10-21"
    assert req["headers"]["api-key"] == "azure-key"


# --- Anthropic ----------------------------------------------------------------------------

def test_anthropic_messages(fake):
    m = anthropic_client(fake).messages.create(
        model="claude-test-model", max_tokens=100, system="be brief",
        messages=[{"role": "user", "content": "first"},
                  {"role": "assistant", "content": "ok"},
                  {"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
    )
    assert m.type == "message" and m.role == "assistant" and m.model == "claude-test-model"
    assert m.content[0].type == "text" and m.content[0].text == ECHO
    assert m.stop_reason == "end_turn" and m.usage.output_tokens > 0


def test_anthropic_stream(fake):
    client = anthropic_client(fake)
    with client.messages.stream(model="claude-test-model", max_tokens=100,
                                messages=[{"role": "user", "content": PROMPT}],
                                extra_headers={"x-fake-delta-chars": "1"}) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == ECHO and len(pieces) == len(ECHO)
    assert final.content[0].text == ECHO and final.stop_reason == "end_turn"

    raw = list(client.messages.create(model="m", max_tokens=10, stream=True,
                                      messages=[{"role": "user", "content": "hi"}]))
    types = [e.type for e in raw]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(types[2:-3]) == {"content_block_delta"}


def test_anthropic_wire_events(fake):
    r = requests.post(f"{fake.url}/v1/messages", timeout=30,
                      json={"model": "m", "max_tokens": 5, "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]})
    events = sse_events(r.content)
    names = [n for n, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert all(json.loads(d)["type"] == n for n, d in events)


# --- Gemini and Cohere (raw HTTP) ---------------------------------------------------------

GEMINI_BODY = {"contents": [{"role": "user", "parts": [{"text": "old"}]},
                            {"role": "model", "parts": [{"text": "reply"}]},
                            {"role": "user", "parts": [{"text": PROMPT}]}]}


def gemini_text(chunk: dict) -> str:
    return "".join(p["text"] for p in chunk["candidates"][0]["content"]["parts"])


def test_gemini_generate(fake):
    r = requests.post(f"{fake.url}/v1beta/models/gemini-2.0-flash:generateContent?key=k",
                      json=GEMINI_BODY, timeout=30)
    assert r.status_code == 200
    body = r.json()
    assert gemini_text(body) == ECHO
    assert body["candidates"][0]["finishReason"] == "STOP"
    assert body["usageMetadata"]["totalTokenCount"] > 0


def test_gemini_stream_sse(fake):
    r = requests.post(f"{fake.url}/v1beta/models/gemini-2.0-flash:streamGenerateContent"
                      "?alt=sse", json=GEMINI_BODY, timeout=30)
    assert r.headers["content-type"].startswith("text/event-stream")
    chunks = [json.loads(d) for _, d in sse_events(r.content)]
    assert len(chunks) == math.ceil(len(ECHO) / 4)
    assert "".join(gemini_text(c) for c in chunks) == ECHO
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert "finishReason" not in chunks[0]["candidates"][0]


def test_gemini_stream_json_array(fake):
    r = requests.post(f"{fake.url}/v1beta/models/gemini-pro:streamGenerateContent",
                      json=GEMINI_BODY, timeout=30)
    chunks = r.json()
    assert isinstance(chunks, list) and len(chunks) > 1
    assert "".join(gemini_text(c) for c in chunks) == ECHO


def test_gemini_unknown_method(fake):
    r = requests.post(f"{fake.url}/v1beta/models/gemini-pro:countTokens", json={}, timeout=30)
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"


def test_cohere_chat(fake):
    body = {"model": "command-r", "messages": [{"role": "user", "content": PROMPT}]}
    r = requests.post(f"{fake.url}/v2/chat", json=body, timeout=30)
    doc = r.json()
    assert doc["message"]["content"][0]["text"] == ECHO and doc["finish_reason"] == "COMPLETE"

    r = requests.post(f"{fake.url}/v2/chat", json={**body, "stream": True}, timeout=30)
    events = sse_events(r.content)
    names = [n for n, _ in events]
    assert names[:2] == ["message-start", "content-start"]
    assert names[-2:] == ["content-end", "message-end"]
    text = "".join(json.loads(d)["delta"]["message"]["content"]["text"]
                   for n, d in events if n == "content-delta")
    assert text == ECHO


# --- Reply overrides ----------------------------------------------------------------------

def test_reply_header_and_stored_reply(fake):
    client = openai_client(fake)
    msgs = [{"role": "user", "content": "hi"}]

    def ask(**kw):
        return client.chat.completions.create(model="m", messages=msgs, **kw) \
            .choices[0].message.content

    assert ask() == "You said: hi"
    verdict = '{"verdict": "block",\n "reason": "injection ✓"}'
    fake.set_reply(verdict)
    assert ask() == verdict
    # The stored reply applies to every provider shape.
    m = anthropic_client(fake).messages.create(model="m", max_tokens=5, messages=msgs)
    assert m.content[0].text == verdict
    g = requests.post(f"{fake.url}/v1beta/models/g:generateContent", json=GEMINI_BODY,
                      timeout=30).json()
    assert gemini_text(g) == verdict
    # A per-request header beats the stored reply.
    assert ask(extra_headers={"x-fake-reply": "from header"}) == "from header"
    b64 = base64.b64encode("two\nlines".encode()).decode()
    assert ask(extra_headers={"x-fake-reply-b64": b64}) == "two\nlines"
    fake.clear_reply()
    assert ask() == "You said: hi"


def test_reply_header_encodings(fake):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    url = f"{fake.url}/v1/chat/completions"
    # requests sends a str header as Latin-1; UTF-8 bytes pass through as UTF-8.
    for value in ("café", "日本 ✓".encode("utf-8")):
        r = requests.post(url, json=body, headers={"x-fake-reply": value}, timeout=30)
        want = value if isinstance(value, str) else value.decode("utf-8")
        assert r.json()["choices"][0]["message"]["content"] == want


# --- Streaming controls -------------------------------------------------------------------

def test_chunk_bytes_one_byte_per_write(fake):
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
    whole, sizes = raw_http(fake, "/v1/messages", body, {"x-fake-chunk-bytes": "1"})
    assert set(sizes) == {1}
    events = sse_events(whole)
    text = "".join(json.loads(d)["delta"]["text"] for n, d in events
                   if n == "content_block_delta")
    assert text == ECHO


def test_chunk_bytes_reslices_across_events(fake):
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
    whole, sizes = raw_http(fake, "/v1/chat/completions", body,
                            {"x-fake-chunk-bytes": "7", "x-fake-delta-chars": "2"})
    assert sizes[:-1] == [7] * (len(sizes) - 1) and 1 <= sizes[-1] <= 7
    # Without re-slicing, each SSE event is its own write.
    plain, plain_sizes = raw_http(fake, "/v1/chat/completions", body,
                                  {"x-fake-delta-chars": "2"})
    assert len(plain_sizes) == len(sse_events(plain)) == len(sse_events(whole))


def test_sdks_parse_streams_cut_into_single_bytes(fake):
    headers = {"x-fake-chunk-bytes": "1", "x-fake-delta-chars": "5"}
    chunks = openai_client(fake).chat.completions.create(
        model="m", messages=[{"role": "user", "content": PROMPT}], stream=True,
        extra_headers=headers)
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == ECHO
    with anthropic_client(fake).messages.stream(
            model="m", max_tokens=5, messages=[{"role": "user", "content": PROMPT}],
            extra_headers=headers) as stream:
        assert "".join(stream.text_stream) == ECHO
    # A non-streamed body is re-sliced too and still parses.
    c = openai_client(fake).chat.completions.create(
        model="m", messages=[{"role": "user", "content": PROMPT}], extra_headers=headers)
    assert c.choices[0].message.content == ECHO


def test_delays_still_answer(fake):
    chunks = openai_client(fake).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True,
        extra_headers={"x-fake-delay-ms": "20", "x-fake-write-delay-ms": "2"})
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) \
        == "You said: hi"


# --- Errors -------------------------------------------------------------------------------

def test_forced_status_openai(fake):
    with pytest.raises(openai.RateLimitError) as err:
        openai_client(fake).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-fake-status": "429"})
    assert err.value.status_code == 429
    assert err.value.body["type"] == "rate_limit_error"


def test_forced_status_anthropic(fake):
    with pytest.raises(anthropic.APIStatusError) as err:
        anthropic_client(fake).messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-fake-status": "529"})
    assert err.value.status_code == 529
    assert err.value.body["error"]["type"] == "overloaded_error"
    # A forced status wins over streaming: the error is plain JSON.
    with pytest.raises(anthropic.InternalServerError):
        anthropic_client(fake).messages.create(
            model="m", max_tokens=5, stream=True, messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-fake-status": "500"})


@pytest.mark.parametrize("path,check", [
    ("/v1/chat/completions", lambda b: b["error"]["type"] == "invalid_request_error"),
    ("/v1/responses", lambda b: b["error"]["type"] == "invalid_request_error"),
    ("/v1/embeddings", lambda b: b["error"]["type"] == "invalid_request_error"),
    ("/openai/deployments/d/chat/completions?api-version=1",
     lambda b: b["error"]["type"] == "invalid_request_error"),
    ("/v1/messages", lambda b: b["type"] == "error"
     and b["error"]["type"] == "invalid_request_error"),
    ("/v1beta/models/g:generateContent", lambda b: b["error"]["status"] == "INVALID_ARGUMENT"),
    ("/v2/chat", lambda b: "message" in b),
])
def test_malformed_json_is_400_in_provider_format(fake, path, check):
    for body in (b'{"model": "m", "messages": [', b"\xff\xfe", b"[1, 2]", b""):
        r = requests.post(f"{fake.url}{path}", data=body, timeout=30,
                          headers={"content-type": "application/json"})
        assert r.status_code == 400, (path, body, r.text)
        assert check(r.json()), r.text
    r = requests.post(f"{fake.url}{path}", json={"model": "m"}, timeout=30)
    assert r.status_code == 400 and check(r.json()), r.text


PROVIDER_PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/responses",
                  "/v1/embeddings", "/openai/deployments/d/chat/completions", "/v1/messages",
                  "/v1beta/models/g:generateContent", "/v1beta/models/g:streamGenerateContent",
                  "/v2/chat"]
ODD_BODIES = [
    {"messages": [1, None, "x", {"role": 5}, {"role": "user"}, {"role": "user", "content": {}}]},
    {"messages": [{"role": "user", "content": [None, 3, {"text": 7}, {"type": "text"}]}]},
    {"contents": [None, {"parts": "x"}, {"role": "user", "parts": [{"text": None}]}]},
    {"input": [None, [], [[1], "a"], {"role": "user", "content": None}], "prompt": [None]},
    {"input": "x", "dimensions": -1, "stream": "yes", "encoding_format": 5},
    {"input": "x", "dimensions": 10**30, "stream_options": []},
    {"messages": [], "contents": [], "input": [], "prompt": "", "stream": True},
]


@pytest.mark.parametrize("path", PROVIDER_PATHS)
def test_odd_inputs_answer_200_or_400(fake, path):
    for body in ODD_BODIES:
        r = requests.post(f"{fake.url}{path}", json=body, timeout=30)
        assert r.status_code in (200, 400), (path, body, r.status_code, r.text)
        if r.status_code == 400:
            assert r.json()
    for raw in (b"\x00" * 10, b"{" * 5000, b'"' + "é".encode() * 1000, b"null", b"1e999999"):
        r = requests.post(f"{fake.url}{path}", data=raw, timeout=30)
        assert r.status_code == 400, (path, raw[:20], r.text)
    assert requests.get(f"{fake.url}/_fake/health", timeout=10).status_code == 200


def test_bad_control_header_is_400(fake):
    r = requests.post(f"{fake.url}/v1/chat/completions", timeout=30,
                      headers={"x-fake-delta-chars": "0"},
                      json={"model": "m", "messages": []})
    assert r.status_code == 400 and "x-fake-delta-chars" in r.json()["error"]["message"]


def test_unknown_route_is_404(fake):
    r = requests.post(f"{fake.url}/v1/nope", json={}, timeout=30)
    assert r.status_code == 404


# --- Recording ----------------------------------------------------------------------------

def test_recording(fake):
    requests.post(f"{fake.url}/v1/chat/completions?trace=1", timeout=30,
                  headers={"authorization": "Bearer sk-secret", "x-extra": "1"},
                  json={"model": "m", "messages": [{"role": "user", "content": PROMPT}]})
    requests.post(f"{fake.url}/v1/embeddings", data=b"\x00\xffbinary", timeout=30)
    requests.get(f"{fake.url}/_fake/health", timeout=30)
    got = fake.requests()
    assert [r["path"] for r in got] == ["/v1/chat/completions", "/v1/embeddings"]
    first, second = got
    assert first["method"] == "POST" and first["query"] == "trace=1"
    assert first["headers"]["authorization"] == "Bearer sk-secret"
    assert first["headers"]["x-extra"] == "1"
    assert first["body_base64"] is False
    assert json.loads(first["body"])["messages"][0]["content"] == PROMPT
    assert first["json"]["messages"][0]["content"] == PROMPT
    assert second["body_base64"] is True
    assert base64.b64decode(second["body"]) == b"\x00\xffbinary"
    assert second["json"] is None
    assert second["seq"] > first["seq"]
    fake.clear()
    assert fake.requests() == []


def test_recording_keeps_last_200(fake):
    s = requests.Session()
    for i in range(205):
        s.post(f"{fake.url}/v1/embeddings", json={"input": str(i)}, timeout=30)
    got = fake.requests()
    assert len(got) == 200
    assert got[0]["json"]["input"] == "5" and got[-1]["json"]["input"] == "204"


# --- Process ------------------------------------------------------------------------------

def test_second_instance_port_zero_and_sigterm(fake_provider_factory):
    other = fake_provider_factory("127.0.0.1:0")
    assert other.addr.startswith("127.0.0.1:") and not other.addr.endswith(":0")
    assert requests.get(f"{other.url}/_fake/health", timeout=10).status_code == 200
    assert other.process.stop() == 0
