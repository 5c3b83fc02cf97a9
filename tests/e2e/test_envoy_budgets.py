"""Access and cost policy through the real Envoy: token usage in audit events and stats, model and
provider allow-lists refusing with 403 in the provider's format, and request and token budgets
shared by Envoy's worker threads answering 429 with `retry-after`, raised by the official SDKs."""

import concurrent.futures
import time
from urllib.parse import urlparse

import anthropic
import openai
import pytest
import requests

from envoy_harness import Envoy, shipped_plugin_config

# Windows long enough that a test never straddles two of them (see `away_from_window_end`).
WINDOW_S = 3600
QUESTION = "What is the capital of France and why is it famous"  # 10 words


def plugin_config(**extra):
    """The shipped settings without the judge (not under test here), plus `extra`."""
    config = shipped_plugin_config()
    config.pop("judge", None)
    config.update(extra)
    return config


def oai(proxy, workload=None, **kw):
    headers = {"x-workload": workload} if workload else {}
    return openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-test", max_retries=0,
                         default_headers=headers, **kw)


def claude(proxy, workload=None):
    headers = {"x-workload": workload} if workload else {}
    return anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-test", max_retries=0,
                               default_headers=headers)


def away_from_window_end(window_s=WINDOW_S, margin_s=60):
    """Waits out the last seconds of a budget window, so counts cannot reset mid-test."""
    left = window_s - time.time() % window_s
    if left < margin_s:
        time.sleep(left + 1)


def words(text):
    """The fake provider's token count: whitespace-separated words."""
    return len(text.split())


@pytest.mark.parametrize("inspect_answers", [True, False], ids=["inspected", "observed"])
def test_audit_events_carry_token_usage_streamed_and_not(fake_provider, inspect_answers):
    config = plugin_config()
    if not inspect_answers:
        # Nothing checks answers: they pass untouched and are only read for their usage.
        for name in ("output_script", "output_exfiltration", "output_refusal", "pii", "secrets"):
            config["detectors"][name] = {"action": "off"}
    proxy = Envoy(urlparse(fake_provider.url).port, plugin_config=config).start()
    try:
        client = oai(proxy)
        messages = [{"role": "user", "content": QUESTION}]
        whole = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
        reported = whole.parse().usage
        streamed = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=messages, stream=True)
        streamed_text = "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
        with_usage = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=messages, stream=True, stream_options={"include_usage": True})
        last = [c for c in with_usage.parse()][-1]
        with claude(proxy).messages.with_streaming_response.create(
                model="claude-3-5-haiku", max_tokens=64, messages=messages, stream=True) as raw:
            anthropic_id = raw.headers["x-request-id"]
            events = list(raw.parse())
        events_by_id = {e["http"]["request"]["id"]: e for e in proxy.audit_events(expect=4)}
        stats = proxy.stats()
        prometheus = proxy.prometheus()
    finally:
        proxy.stop()

    def usage(response_or_id):
        rid = response_or_id if isinstance(response_or_id, str) else response_or_id.headers["x-request-id"]
        event = events_by_id[rid]
        return (event["gen_ai"]["usage"]["input_tokens"], event["gen_ai"]["usage"]["output_tokens"],
                event["sluice"]["usage"]["estimated"])

    # Non-streamed: the provider's own counts.
    assert usage(whole) == (reported.prompt_tokens, reported.completion_tokens, False)
    assert reported.prompt_tokens == words(QUESTION)
    # Streamed without a usage chunk: estimated at 4 bytes per token, rounded up.
    assert streamed_text == f"You said: {QUESTION}"
    assert usage(streamed) == (-(-len(QUESTION) // 4), -(-len(streamed_text) // 4), True)
    # Streamed with the final usage chunk.
    assert usage(with_usage) == (last.usage.prompt_tokens, last.usage.completion_tokens, False)
    # Anthropic: input from message_start, output from message_delta.
    start = next(e for e in events if e.type == "message_start")
    delta = next(e for e in events if e.type == "message_delta")
    assert usage(anthropic_id) == (start.message.usage.input_tokens, delta.usage.output_tokens, False)
    assert delta.usage.output_tokens == words(f"You said: {QUESTION}")

    all_usages = [usage(whole), usage(streamed), usage(with_usage), usage(anthropic_id)]
    assert stats["wasmcustom.sluice_tokens_input_total"] == sum(u[0] for u in all_usages)
    assert stats["wasmcustom.sluice_tokens_output_total"] == sum(u[1] for u in all_usages)
    assert stats["wasmcustom.sluice_model_tokens_openai_gpt_4o_mini_output_total"] == sum(u[1] for u in all_usages[:3])
    assert stats["wasmcustom.sluice_provider_anthropic_tokens_input_total"] == all_usages[3][0]
    assert stats["wasmcustom.sluice_tokens_estimated_total"] == sum(usage(streamed)[:2])
    assert stats["wasmcustom.sluice_model_requests_openai_gpt_4o_mini_total"] == 3
    assert stats["wasmcustom.sluice_model_requests_anthropic_claude_3_5_haiku_total"] == 1

    # The shipped stats_tags make provider, model and direction labels for Prometheus.
    def sample(name, **labels):
        return prometheus.get((name, tuple(sorted(labels.items()))))
    assert sample("sluice_model_requests_total", provider="openai", model="gpt_4o_mini") == 3
    assert sample("sluice_model_requests_total", provider="anthropic", model="claude_3_5_haiku") == 1
    assert sample("sluice_model_tokens_total", provider="openai", model="gpt_4o_mini",
                  direction="output") == sum(u[1] for u in all_usages[:3])
    assert sample("sluice_provider_tokens_total", provider="anthropic", direction="input") == all_usages[3][0]
    assert sample("sluice_tokens_total", direction="input") == sum(u[0] for u in all_usages)
    assert sample("sluice_provider_requests_total", provider="openai") == 3
    assert sample("sluice_requests_total") == 4
    assert sample("sluice_action_total", action="allow") == 4


def test_allow_lists_refuse_in_the_providers_format_before_the_provider(fake):
    config = plugin_config(
        identity={"header": "x-workload"},
        allow={"providers": ["openai", "anthropic"], "models": ["gpt-4o-mini", "claude-3-5-*"]},
        workloads=[{"identity": "batch-*", "allow": {"models": ["gpt-4o-mini"]}}],
    )
    proxy = Envoy(urlparse(fake.url).port, plugin_config=config).start()
    try:
        messages = [{"role": "user", "content": QUESTION}]
        ok = oai(proxy, "web").chat.completions.create(model="gpt-4o-mini", messages=messages)
        ok_claude = claude(proxy, "web").messages.create(model="claude-3-5-haiku", max_tokens=32, messages=messages)
        fake.clear()
        with pytest.raises(openai.PermissionDeniedError) as wrong_model:
            oai(proxy, "web").chat.completions.create(model="gpt-4o", messages=messages)
        with pytest.raises(anthropic.PermissionDeniedError) as wrong_workload:
            claude(proxy, "batch-nightly").messages.create(
                model="claude-3-5-haiku", max_tokens=32, messages=messages)
        gemini = requests.post(f"{proxy.url}/v1beta/models/gemini-2.0-flash:generateContent",
                               headers={"x-workload": "web"},
                               json={"contents": [{"role": "user", "parts": [{"text": QUESTION}]}]})
        reached = fake.requests()
        events = proxy.audit_events(expect=5)
        stats = proxy.stats()
        detections = {labels: v for (name, labels), v in proxy.prometheus().items()
                      if name == "sluice_detection_total"}
    finally:
        proxy.stop()

    assert ok.choices[0].message.content and ok_claude.content[0].text
    assert reached == [], "a refused request reached the provider"
    err = wrong_model.value
    assert err.status_code == 403 and err.code == "model_not_allowed"
    assert "model `gpt-4o` is not allowed" in err.message
    assert wrong_workload.value.status_code == 403
    assert wrong_workload.value.body["error"]["type"] == "permission_error"
    assert "claude-3-5-haiku" in wrong_workload.value.body["error"]["message"]
    assert gemini.status_code == 403
    assert gemini.json()["error"]["status"] == "PERMISSION_DENIED"
    assert "provider `gemini` is not allowed" in gemini.json()["error"]["message"]

    refused = [e for e in events if e["event"]["action"] == "block"]
    assert sorted(e["sluice"]["detections"][0] for e in refused) == [
        "model_not_allowed", "model_not_allowed", "provider_not_allowed"]
    assert all(e["event"]["outcome"] == "failure" and "usage" not in e["gen_ai"] for e in refused)
    assert stats["wasmcustom.sluice_detection_model_not_allowed_total"] == 2
    assert stats["wasmcustom.sluice_detection_provider_not_allowed_total"] == 1
    assert stats["wasmcustom.sluice_action_block_total"] == 3
    # On Prometheus, one family labelled by detection.
    assert detections[(("detection", "model_not_allowed"),)] == 2
    assert detections[(("detection", "provider_not_allowed"),)] == 1


def test_request_budget_is_shared_by_workers_and_answers_429(fake_provider):
    limit, attempts = 8, 24
    config = plugin_config(
        identity={"header": "x-workload"},
        budget={"window_s": WINDOW_S, "requests": limit},
        workloads=[{"identity": "unlimited", "budget": {"window_s": WINDOW_S, "requests": 1000000}}],
    )
    proxy = Envoy(urlparse(fake_provider.url).port, plugin_config=config).start(concurrency=2)
    try:
        away_from_window_end()
        messages = [{"role": "user", "content": QUESTION}]
        # The first request creates the caller's counter; the rest race for it from 8 connections.
        oai(proxy, "checkout").chat.completions.create(model="gpt-4o-mini", messages=messages)

        def one(_):
            client = oai(proxy, "checkout")  # its own connection pool
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=messages)
                return "ok", None
            except openai.RateLimitError as e:
                return "limited", e
            finally:
                client.close()

        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(one, range(attempts - 1)))
        other = oai(proxy, "unlimited").chat.completions.create(model="gpt-4o-mini", messages=messages)
        workers = {k: v for k, v in proxy.stats(prefix="listener.").items()
                   if k.endswith("downstream_cx_total") and ".worker_" in k}
        stats = proxy.stats()
        events = proxy.audit_events(expect=attempts + 1)
    finally:
        proxy.stop()

    oks = [r for r, _ in results if r == "ok"]
    limited = [e for r, e in results if r == "limited"]
    assert len(oks) + 1 == limit, f"{len(oks) + 1} admitted with a budget of {limit}"
    assert len(limited) == attempts - limit
    assert other.choices, "another identity has its own budget"
    assert len([w for w, n in workers.items() if n > 0]) == 2, f"both workers took connections: {workers}"
    for e in limited:
        retry_after = int(e.response.headers["retry-after"])
        assert 0 < retry_after <= WINDOW_S
        assert e.code == "request_budget" and e.body["type"] == "rate_limit_error"
        assert f"budget of {limit} requests per {WINDOW_S} s" in e.message
    assert stats["wasmcustom.sluice_detection_request_budget_total"] == attempts - limit
    assert stats.get("wasmcustom.sluice_budget_errors_total", 0) == 0
    refused = [e for e in events if "request_budget" in e["sluice"]["detections"]]
    assert len(refused) == attempts - limit
    assert all(e["event"]["action"] == "block" for e in refused)


def test_token_budget_is_charged_from_usage_and_checked_before_the_next_request(fake_provider):
    question_tokens, answer_tokens = words(QUESTION), words(f"You said: {QUESTION}")
    per_request = question_tokens + answer_tokens  # 22 with the fake provider's counts
    config = plugin_config(
        identity={"header": "x-workload"},
        budget={"window_s": WINDOW_S, "tokens": per_request + 1},
    )
    proxy = Envoy(urlparse(fake_provider.url).port, plugin_config=config).start(concurrency=2)
    try:
        away_from_window_end()
        client = claude(proxy, "reporting")
        messages = [{"role": "user", "content": QUESTION}]
        first = client.messages.create(model="claude-3-5-haiku", max_tokens=64, messages=messages)
        # Under the limit after one answer: admitted, and its answer takes the caller over.
        with client.messages.stream(model="claude-3-5-haiku", max_tokens=64, messages=messages) as s:
            second = s.get_final_message()
        with pytest.raises(anthropic.RateLimitError) as spent:
            client.messages.create(model="claude-3-5-haiku", max_tokens=64, messages=messages)
        fresh = claude(proxy, "someone-else").messages.create(
            model="claude-3-5-haiku", max_tokens=64, messages=messages)
        events = proxy.audit_events(expect=4)
    finally:
        proxy.stop()

    assert (first.usage.input_tokens, first.usage.output_tokens) == (question_tokens, answer_tokens)
    assert second.usage.output_tokens == answer_tokens
    err = spent.value
    assert err.status_code == 429 and err.body["error"]["type"] == "rate_limit_error"
    assert 0 < int(err.response.headers["retry-after"]) <= WINDOW_S
    assert f"budget of {per_request + 1} tokens" in err.body["error"]["message"]
    assert fresh.content[0].text
    spent_events = [e for e in events if e["sluice"]["detections"] == ["token_budget"]]
    assert len(spent_events) == 1 and spent_events[0]["event"]["action"] == "block"
    charged = [e["gen_ai"]["usage"] for e in events if "usage" in e["gen_ai"]]
    assert {"input_tokens": question_tokens, "output_tokens": answer_tokens} in charged
