//! OpenAI wire formats: Chat Completions (also served on Azure OpenAI's deployment paths),
//! Responses, legacy Completions and Embeddings. Streams follow what the official `openai`
//! Python SDK parses: `data:` chunks ending in `[DONE]` for Chat/Completions, typed
//! `event:` + `data:` events from `response.created` to `response.completed` for Responses.

use base64::Engine as _;
use serde_json::{json, Value};

use super::{last_user_text, token_count, Answer, Call};
use crate::stream::SseEvent;

/// Default embedding length when the request has no `dimensions`.
pub const DEFAULT_DIMENSIONS: usize = 8;
const MAX_DIMENSIONS: u64 = 4096;

/// `POST /v1/chat/completions`; `fallback_model` names the model when the body has none
/// (Azure puts the deployment in the path instead).
pub fn chat(call: &Call, fallback_model: &str) -> Result<Answer, String> {
    let messages = call.body.get("messages");
    if !matches!(messages, Some(Value::Array(_))) {
        return Err("'messages' must be an array".into());
    }
    let user = last_user_text(messages, "content", false);
    let reply = call.reply(&user);
    let model = call.model(fallback_model);
    let id = format!("chatcmpl-fake-{}", call.id);
    let usage = usage(&user, &reply);
    if !call.wants_stream() {
        return Ok(Answer::Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": call.created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": reply, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": usage
        })));
    }
    let include_usage = call
        .body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    let chunk = |choices: Value| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": call.created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": choices
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let choice = |delta: Value, finish: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
    let mut events = vec![SseEvent::data(&chunk(choice(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )))];
    for d in call.deltas(&reply) {
        events.push(SseEvent::data(&chunk(choice(
            json!({"content": d}),
            Value::Null,
        ))));
    }
    events.push(SseEvent::data(&chunk(choice(json!({}), json!("stop")))));
    if include_usage {
        let mut last = chunk(json!([]));
        last["usage"] = usage;
        events.push(SseEvent::data(&last));
    }
    events.push(SseEvent::raw("[DONE]"));
    Ok(Answer::Sse(events))
}

/// `POST /v1/completions` (legacy): the reply echoes the last prompt string.
pub fn completions(call: &Call, fallback_model: &str) -> Result<Answer, String> {
    let prompt = match call.body.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .rev()
            .find_map(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        Some(_) => String::new(),
        None => return Err("'prompt' is required".into()),
    };
    let reply = call.reply(&prompt);
    let model = call.model(fallback_model);
    let id = format!("cmpl-fake-{}", call.id);
    let doc = |choices: Value| {
        json!({
            "id": id,
            "object": "text_completion",
            "created": call.created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": choices
        })
    };
    let choice = |text: &str, finish: Value| json!([{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}]);
    if !call.wants_stream() {
        let mut d = doc(choice(&reply, json!("stop")));
        d["usage"] = usage(&prompt, &reply);
        return Ok(Answer::Json(d));
    }
    let mut events: Vec<SseEvent> = call
        .deltas(&reply)
        .iter()
        .map(|d| SseEvent::data(&doc(choice(d, Value::Null))))
        .collect();
    events.push(SseEvent::data(&doc(choice("", json!("stop")))));
    events.push(SseEvent::raw("[DONE]"));
    Ok(Answer::Sse(events))
}

/// `POST /v1/responses`.
pub fn responses(call: &Call, fallback_model: &str) -> Result<Answer, String> {
    let user = match call.body.get("input") {
        Some(Value::String(s)) => s.clone(),
        input @ Some(Value::Array(_)) => last_user_text(input, "content", false),
        _ => return Err("'input' must be a string or an array".into()),
    };
    let reply = call.reply(&user);
    let model = call.model(fallback_model);
    let resp_id = format!("resp_fake_{}", call.id);
    let msg_id = format!("msg_fake_{}", call.id);
    let text_part = |text: &str| json!({"type": "output_text", "text": text, "annotations": []});
    let message = |status: &str, content: Value| {
        json!({
            "id": msg_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content
        })
    };
    let response = |status: &str, output: Value, usage: Value| {
        json!({
            "id": resp_id,
            "object": "response",
            "created_at": call.created,
            "status": status,
            "error": null,
            "incomplete_details": null,
            "instructions": call.body.get("instructions").cloned().unwrap_or(Value::Null),
            "model": model,
            "output": output,
            "parallel_tool_calls": true,
            "tool_choice": "auto",
            "tools": [],
            "temperature": 1.0,
            "top_p": 1.0,
            "text": {"format": {"type": "text"}},
            "metadata": {},
            "usage": usage
        })
    };
    let (input_tokens, output_tokens) = (token_count(&user), token_count(&reply));
    let usage = json!({
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens
    });
    let done_message = message("completed", json!([text_part(&reply)]));
    let completed = response("completed", json!([done_message]), usage);
    if !call.wants_stream() {
        return Ok(Answer::Json(completed));
    }

    let mut events = Vec::new();
    let mut push = |name: &'static str, mut data: Value| {
        data["type"] = json!(name);
        data["sequence_number"] = json!(events.len());
        events.push(SseEvent::named(name, &data));
    };
    let started = response("in_progress", json!([]), Value::Null);
    push("response.created", json!({"response": started}));
    push("response.in_progress", json!({"response": started}));
    push(
        "response.output_item.added",
        json!({"output_index": 0, "item": message("in_progress", json!([]))}),
    );
    let at = json!({"item_id": msg_id, "output_index": 0, "content_index": 0});
    let with = |extra: Value| {
        let mut v = at.clone();
        if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
            v.extend(extra);
        }
        v
    };
    push(
        "response.content_part.added",
        with(json!({"part": text_part("")})),
    );
    for d in call.deltas(&reply) {
        push(
            "response.output_text.delta",
            with(json!({"delta": d, "logprobs": []})),
        );
    }
    push(
        "response.output_text.done",
        with(json!({"text": reply, "logprobs": []})),
    );
    push(
        "response.content_part.done",
        with(json!({"part": text_part(&reply)})),
    );
    push(
        "response.output_item.done",
        json!({"output_index": 0, "item": done_message}),
    );
    push("response.completed", json!({"response": completed}));
    Ok(Answer::Sse(events))
}

/// `POST /v1/embeddings`: one deterministic unit vector per input, derived from its text.
/// Honours `dimensions` and `encoding_format` (`float` or `base64` little-endian f32, which
/// the Python SDK asks for by default).
pub fn embeddings(call: &Call, fallback_model: &str) -> Result<Answer, String> {
    let inputs = embedding_inputs(call.body.get("input"))?;
    let dims = match call.body.get("dimensions") {
        None | Some(Value::Null) => DEFAULT_DIMENSIONS,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_DIMENSIONS).contains(&n) => n as usize,
            _ => {
                return Err(format!(
                    "'dimensions' must be an integer 1..={MAX_DIMENSIONS}"
                ))
            }
        },
    };
    let base64 = match call.body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(format!("unsupported encoding_format {other:?}")),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let v = embedding(text, dims);
            let encoded = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": encoded})
        })
        .collect();
    let tokens: u64 = inputs.iter().map(|t| token_count(t)).sum();
    Ok(Answer::Json(json!({
        "object": "list",
        "data": data,
        "model": call.model(fallback_model),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    })))
}

/// The texts to embed: a string, an array of strings, one token array, or an array of
/// token arrays (token arrays are embedded by their JSON text).
fn embedding_inputs(input: Option<&Value>) -> Result<Vec<String>, String> {
    match input {
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) if items.is_empty() => Err("'input' must not be empty".into()),
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => {
            Ok(vec![Value::Array(items.clone()).to_string()])
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                Value::Array(_) => Ok(item.to_string()),
                _ => Err("'input' items must be strings or token arrays".to_owned()),
            })
            .collect(),
        _ => Err("'input' must be a string or an array".into()),
    }
}

/// A unit vector seeded by the FNV-1a hash of `text` and stretched with splitmix64.
pub fn embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            // Top 24 bits give an exactly representable f32 in [0, 1); map to [-1, 1).
            ((z >> 40) as f32 / (1u32 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

fn usage(prompt: &str, reply: &str) -> Value {
    let (p, c) = (token_count(prompt), token_count(reply));
    json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::controls::Controls;
    use crate::providers::sse_json;

    fn call(body: Value, delta_chars: usize) -> Call {
        let controls = Controls {
            delta_chars,
            ..Controls::default()
        };
        Call::for_test(body, controls, None)
    }

    #[test]
    fn chat_stream_sequence() {
        let body = json!({"model": "m", "stream": true,
                          "stream_options": {"include_usage": true},
                          "messages": [{"role": "user", "content": "héllo"}]});
        let events = sse_json(&chat(&call(body, 4), "x").unwrap());
        let n = events.len();
        assert_eq!(events[0].1["choices"][0]["delta"]["role"], "assistant");
        let text: String = events[1..n - 3]
            .iter()
            .map(|(_, d)| d["choices"][0]["delta"]["content"].as_str().unwrap())
            .collect();
        assert_eq!(text, "You said: héllo");
        assert_eq!(n - 4, "You said: héllo".chars().count().div_ceil(4));
        assert_eq!(events[n - 3].1["choices"][0]["finish_reason"], "stop");
        assert_eq!(events[n - 2].1["choices"], json!([]));
        assert_eq!(events[n - 2].1["usage"]["completion_tokens"], 3);
        assert_eq!(events[n - 1].1, "[DONE]");
    }

    #[test]
    fn responses_stream_is_numbered_and_complete() {
        let body = json!({"model": "m", "stream": true, "input": "hi"});
        let events = sse_json(&responses(&call(body, 2), "x").unwrap());
        for (i, (name, data)) in events.iter().enumerate() {
            assert_eq!(data["sequence_number"], i);
            assert_eq!(Some(data["type"].as_str().unwrap()), *name);
        }
        assert_eq!(events[0].0, Some("response.created"));
        let last = &events[events.len() - 1];
        assert_eq!(last.0, Some("response.completed"));
        assert_eq!(
            last.1["response"]["output"][0]["content"][0]["text"],
            "You said: hi"
        );
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding("hello", 8);
        assert_eq!(a, embedding("hello", 8));
        assert_ne!(a, embedding("hello!", 8));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(embedding("x", 1536).len(), 1536);
    }

    #[test]
    fn embedding_input_shapes() {
        let ok = [
            (json!("a"), vec!["a"]),
            (json!(["a", "b"]), vec!["a", "b"]),
            (json!([1, 2]), vec!["[1,2]"]),
            (json!([[1], [2, 3]]), vec!["[1]", "[2,3]"]),
        ];
        for (input, want) in ok {
            assert_eq!(embedding_inputs(Some(&input)).unwrap(), want);
        }
        for bad in [json!([]), json!(3), json!([{}]), Value::Null] {
            assert!(embedding_inputs(Some(&bad)).is_err(), "{bad}");
        }
    }
}
