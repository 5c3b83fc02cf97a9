//! Cohere Chat v2 (`POST /v2/chat`): a chat response with `message.content[]`, or SSE
//! events `message-start`, `content-start`, `content-delta`…, `content-end`, `message-end`.

use serde_json::{json, Value};

use super::{last_user_text, token_count, Answer, Call};
use crate::stream::SseEvent;

pub fn chat(call: &Call) -> Result<Answer, String> {
    let messages = call.body.get("messages");
    if !matches!(messages, Some(Value::Array(_))) {
        return Err("invalid request: messages must be an array".into());
    }
    let user = last_user_text(messages, "content", false);
    let reply = call.reply(&user);
    let id = format!("fake-{}", call.id);
    let (input_tokens, output_tokens) = (token_count(&user), token_count(&reply));
    let usage = json!({
        "billed_units": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        "tokens": {"input_tokens": input_tokens, "output_tokens": output_tokens}
    });
    if !call.wants_stream() {
        return Ok(Answer::Json(json!({
            "id": id,
            "finish_reason": "COMPLETE",
            "message": {"role": "assistant", "content": [{"type": "text", "text": reply}]},
            "usage": usage
        })));
    }
    let mut events = vec![
        SseEvent::named(
            "message-start",
            &json!({
                "id": id,
                "type": "message-start",
                "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "",
                                      "tool_calls": [], "citations": []}}
            }),
        ),
        SseEvent::named(
            "content-start",
            &json!({
                "type": "content-start",
                "index": 0,
                "delta": {"message": {"content": {"type": "text", "text": ""}}}
            }),
        ),
    ];
    for d in call.deltas(&reply) {
        events.push(SseEvent::named(
            "content-delta",
            &json!({
                "type": "content-delta",
                "index": 0,
                "delta": {"message": {"content": {"text": d}}}
            }),
        ));
    }
    events.push(SseEvent::named(
        "content-end",
        &json!({"type": "content-end", "index": 0}),
    ));
    events.push(SseEvent::named(
        "message-end",
        &json!({
            "type": "message-end",
            "delta": {"finish_reason": "COMPLETE", "usage": usage}
        }),
    ));
    Ok(Answer::Sse(events))
}
