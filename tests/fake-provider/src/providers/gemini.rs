//! Google Gemini `models/{model}:generateContent` and `:streamGenerateContent`. Streaming
//! answers are SSE `data:` chunks with `?alt=sse`, else one JSON array written element by
//! element. The last chunk carries `finishReason: "STOP"` and `usageMetadata`.

use serde_json::{json, Value};

use super::{last_user_text, token_count, Answer, Call};
use crate::stream::SseEvent;

/// Which Gemini method the path named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Generate,
    /// `alt_sse`: the request asked for `?alt=sse`.
    StreamGenerate {
        alt_sse: bool,
    },
}

/// Splits the last path segment `MODEL:METHOD`; `None` for an unknown method.
pub fn parse_model_method(segment: &str, alt_sse: bool) -> Option<(&str, Method)> {
    let (model, method) = segment.rsplit_once(':')?;
    match method {
        "generateContent" => Some((model, Method::Generate)),
        "streamGenerateContent" => Some((model, Method::StreamGenerate { alt_sse })),
        _ => None,
    }
}

pub fn generate(call: &Call, model: &str, method: Method) -> Result<Answer, String> {
    let contents = call.body.get("contents");
    if !matches!(contents, Some(Value::Array(_))) {
        return Err("* GenerateContentRequest.contents: contents is not specified".into());
    }
    let user = last_user_text(contents, "parts", true);
    let reply = call.reply(&user);
    let (prompt_tokens, reply_tokens) = (token_count(&user), token_count(&reply));
    let usage = json!({
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": reply_tokens,
        "totalTokenCount": prompt_tokens + reply_tokens
    });
    let response_id = format!("fake-{}", call.id);
    let chunk = |text: &str, last: bool| {
        let mut candidate = json!({
            "content": {"parts": [{"text": text}], "role": "model"},
            "index": 0
        });
        let mut c = json!({"candidates": [], "modelVersion": model, "responseId": response_id});
        if last {
            candidate["finishReason"] = json!("STOP");
            c["usageMetadata"] = usage.clone();
        }
        c["candidates"] = json!([candidate]);
        c
    };
    let alt_sse = match method {
        Method::Generate => return Ok(Answer::Json(chunk(&reply, true))),
        Method::StreamGenerate { alt_sse } => alt_sse,
    };
    let mut deltas = call.deltas(&reply);
    // The text rides on every chunk, the finish reason on the last one.
    let last = deltas.pop().unwrap_or_default();
    let mut chunks: Vec<Value> = deltas.iter().map(|d| chunk(d, false)).collect();
    chunks.push(chunk(&last, true));
    if alt_sse {
        Ok(Answer::Sse(chunks.iter().map(SseEvent::data).collect()))
    } else {
        Ok(Answer::JsonArray(chunks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_and_method_from_segment() {
        assert_eq!(
            parse_model_method("gemini-2.0-flash:generateContent", false),
            Some(("gemini-2.0-flash", Method::Generate))
        );
        assert_eq!(
            parse_model_method("m:streamGenerateContent", true),
            Some(("m", Method::StreamGenerate { alt_sse: true }))
        );
        assert_eq!(parse_model_method("m:countTokens", false), None);
        assert_eq!(parse_model_method("no-method", false), None);
    }
}
