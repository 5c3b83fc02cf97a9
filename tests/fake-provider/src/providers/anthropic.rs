//! Anthropic Messages (`POST /v1/messages`): a `message` object, or the SSE sequence
//! `message_start`, `content_block_start`, `ping`, `content_block_delta` (`text_delta`)…,
//! `content_block_stop`, `message_delta`, `message_stop`, each as `event: X` + `data:`.

use serde_json::{json, Value};

use super::{last_user_text, token_count, Answer, Call};
use crate::stream::SseEvent;

pub fn messages(call: &Call) -> Result<Answer, String> {
    let messages = call.body.get("messages");
    if !matches!(messages, Some(Value::Array(_))) {
        return Err("messages: Field required (must be an array)".into());
    }
    let user = last_user_text(messages, "content", false);
    let reply = call.reply(&user);
    let model = call.model("claude-fake");
    let id = format!("msg_fake_{}", call.id);
    let (input_tokens, output_tokens) = (token_count(&user), token_count(&reply));
    if !call.wants_stream() {
        return Ok(Answer::Json(json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": reply}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}
        })));
    }
    let mut events = vec![
        SseEvent::named(
            "message_start",
            &json!({
                "type": "message_start",
                "message": {
                    "id": id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": {"input_tokens": input_tokens, "output_tokens": 1}
                }
            }),
        ),
        SseEvent::named(
            "content_block_start",
            &json!({
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""}
            }),
        ),
        SseEvent::named("ping", &json!({"type": "ping"})),
    ];
    for d in call.deltas(&reply) {
        events.push(SseEvent::named(
            "content_block_delta",
            &json!({
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": d}
            }),
        ));
    }
    events.push(SseEvent::named(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(SseEvent::named(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": output_tokens}
        }),
    ));
    events.push(SseEvent::named(
        "message_stop",
        &json!({"type": "message_stop"}),
    ));
    Ok(Answer::Sse(events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controls::Controls;
    use crate::providers::sse_json;

    #[test]
    fn stream_event_order_and_stored_reply() {
        let body = json!({"model": "m", "stream": true, "max_tokens": 5,
                          "messages": [{"role": "user", "content": "ignored"}]});
        let call = Call::for_test(body, Controls::default(), Some("canned verdict"));
        let events = sse_json(&messages(&call).unwrap());
        let names: Vec<_> = events.iter().map(|(n, _)| n.unwrap()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let text: String = events
            .iter()
            .filter_map(|(_, d)| d["delta"]["text"].as_str())
            .collect();
        assert_eq!(text, "canned verdict");
        assert!(events.iter().all(|(n, d)| d["type"] == n.unwrap()));
    }

    #[test]
    fn missing_messages_is_an_error() {
        let call = Call::for_test(json!({"model": "m"}), Controls::default(), None);
        assert!(messages(&call).is_err());
    }
}
