//! What every provider endpoint shares: applying the test controls, parsing the JSON body,
//! picking the reply text, answering errors in the provider's own format, and rendering
//! the planned answer (one JSON document, SSE events or a streamed JSON array).

pub mod anthropic;
pub mod cohere;
pub mod gemini;
pub mod openai;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;

use crate::controls::{select_reply, Controls};
use crate::recorder::Recorder;
use crate::stream::{self, split_chars, SseEvent, WritePlan};

/// State shared by all handlers.
#[derive(Debug, Default)]
pub struct AppState {
    pub recorder: Recorder,
    /// Reply set with `PUT /_fake/reply`, kept until `DELETE /_fake/reply`.
    pub stored_reply: RwLock<Option<String>>,
    next_id: AtomicU64,
}

impl AppState {
    pub fn stored_reply(&self) -> Option<String> {
        self.stored_reply
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_stored_reply(&self, reply: Option<String>) {
        *self.stored_reply.write().unwrap_or_else(|e| e.into_inner()) = reply;
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Whose error format and conventions to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    OpenAi,
    Anthropic,
    Gemini,
    Cohere,
}

impl Provider {
    /// The provider's error document for `status`.
    pub fn error_body(self, status: StatusCode, message: &str) -> Value {
        let code = status.as_u16();
        match self {
            Provider::OpenAi => {
                let kind = match code {
                    400 | 404 | 413 | 422 => "invalid_request_error",
                    401 => "authentication_error",
                    403 => "permission_error",
                    429 => "rate_limit_error",
                    _ => "server_error",
                };
                serde_json::json!({
                    "error": {"message": message, "type": kind, "param": null, "code": null}
                })
            }
            Provider::Anthropic => {
                let kind = match code {
                    400 | 422 => "invalid_request_error",
                    401 => "authentication_error",
                    403 => "permission_error",
                    404 => "not_found_error",
                    413 => "request_too_large",
                    429 => "rate_limit_error",
                    529 => "overloaded_error",
                    _ => "api_error",
                };
                serde_json::json!({
                    "type": "error",
                    "error": {"type": kind, "message": message}
                })
            }
            Provider::Gemini => {
                let grpc_status = match code {
                    400 | 413 | 422 => "INVALID_ARGUMENT",
                    401 => "UNAUTHENTICATED",
                    403 => "PERMISSION_DENIED",
                    404 => "NOT_FOUND",
                    429 => "RESOURCE_EXHAUSTED",
                    503 => "UNAVAILABLE",
                    504 => "DEADLINE_EXCEEDED",
                    _ => "INTERNAL",
                };
                serde_json::json!({
                    "error": {"code": code, "message": message, "status": grpc_status}
                })
            }
            Provider::Cohere => serde_json::json!({"message": message}),
        }
    }

    /// An error response in this provider's format.
    pub fn error(self, status: StatusCode, message: &str, plan: WritePlan) -> Response {
        let body = Bytes::from(self.error_body(status, message).to_string());
        stream::respond(status, "application/json", vec![body], plan)
    }
}

/// What a provider endpoint decided to send back.
#[derive(Debug)]
pub enum Answer {
    Json(Value),
    Sse(Vec<SseEvent>),
    /// Gemini's streamed JSON array (`streamGenerateContent` without `alt=sse`).
    JsonArray(Vec<Value>),
}

/// One call to a provider endpoint, as the wire-format code sees it.
#[derive(Debug)]
pub struct Call {
    /// The request body, guaranteed to be a JSON object.
    pub body: Value,
    pub controls: Controls,
    stored_reply: Option<String>,
    /// A number unique within this process, for ids such as `chatcmpl-fake-7`.
    pub id: u64,
    /// Unix seconds.
    pub created: u64,
}

impl Call {
    /// The reply text for a request whose last user message is `user_text`.
    pub fn reply(&self, user_text: &str) -> String {
        select_reply(
            self.controls.reply.as_deref(),
            self.stored_reply.as_deref(),
            user_text,
        )
    }

    /// The reply cut into stream deltas of `x-fake-delta-chars` characters.
    pub fn deltas(&self, reply: &str) -> Vec<String> {
        split_chars(reply, self.controls.delta_chars)
    }

    /// `"stream": true` in the body.
    pub fn wants_stream(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool) == Some(true)
    }

    /// The `model` field, or `fallback` when absent.
    pub fn model(&self, fallback: &str) -> String {
        self.body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(fallback)
            .to_owned()
    }
}

#[cfg(test)]
impl Call {
    /// A call as `handle` would build it, for the wire-format unit tests.
    pub fn for_test(body: Value, controls: Controls, stored_reply: Option<&str>) -> Self {
        Self {
            body,
            controls,
            stored_reply: stored_reply.map(str::to_owned),
            id: 1,
            created: 0,
        }
    }
}

/// The `data` of each SSE event parsed as JSON (`[DONE]` becomes the string "[DONE]"),
/// with the event names, for the wire-format unit tests.
#[cfg(test)]
pub fn sse_json(answer: &Answer) -> Vec<(Option<&'static str>, Value)> {
    let Answer::Sse(events) = answer else {
        panic!("expected SSE, got {answer:?}");
    };
    events
        .iter()
        .map(|e| {
            let data =
                serde_json::from_str(&e.data).unwrap_or_else(|_| Value::from(e.data.clone()));
            (e.event, data)
        })
        .collect()
}

/// Runs one provider call: controls, delay, forced status, JSON parsing, then `build`.
/// `build` returns an error message for a request it cannot answer (sent as a 400).
pub async fn handle(
    state: &AppState,
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
    build: impl FnOnce(&Call) -> Result<Answer, String>,
) -> Response {
    let controls = match Controls::from_headers(headers) {
        Ok(c) => c,
        Err(e) => {
            return provider.error(
                StatusCode::BAD_REQUEST,
                &e.to_string(),
                WritePlan::default(),
            )
        }
    };
    let plan = controls.write_plan();
    if let Some(delay) = controls.delay {
        tokio::time::sleep(delay).await;
    }
    if let Some(code) = controls.status {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = format!("fake provider: status {code} forced by x-fake-status");
        return provider.error(status, &message, plan);
    }
    let body: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return provider.error(
                StatusCode::BAD_REQUEST,
                "request body must be a JSON object",
                plan,
            )
        }
        Err(e) => {
            let message = format!("request body is not valid JSON: {e}");
            return provider.error(StatusCode::BAD_REQUEST, &message, plan);
        }
    };
    let call = Call {
        body,
        controls,
        stored_reply: state.stored_reply(),
        id: state.next_id(),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    match build(&call) {
        Ok(answer) => render(answer, plan),
        Err(message) => provider.error(StatusCode::BAD_REQUEST, &message, plan),
    }
}

fn render(answer: Answer, plan: WritePlan) -> Response {
    match answer {
        Answer::Json(v) => stream::respond(
            StatusCode::OK,
            "application/json",
            vec![Bytes::from(v.to_string())],
            plan,
        ),
        Answer::Sse(events) => stream::respond(
            StatusCode::OK,
            "text/event-stream; charset=utf-8",
            events.iter().map(SseEvent::encode).collect(),
            plan,
        ),
        Answer::JsonArray(items) => stream::respond(
            StatusCode::OK,
            "application/json; charset=UTF-8",
            stream::json_array_pieces(&items),
            plan,
        ),
    }
}

/// Text of a message's content: a string, or the `text` of each part in an array of parts
/// (strings or objects), joined by newlines. Anything else (images, tool calls) has no text.
pub fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| match p {
                Value::String(s) => Some(s.as_str()),
                other => other.get("text").and_then(Value::as_str),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Text of the last item in `items` whose `role` is `user`, reading its `content_field`.
/// When `missing_role_is_user`, items without a role count as user turns (Gemini,
/// Responses input items).
pub fn last_user_text(
    items: Option<&Value>,
    content_field: &str,
    missing_role_is_user: bool,
) -> String {
    let Some(Value::Array(items)) = items else {
        return String::new();
    };
    items
        .iter()
        .rev()
        .find(|m| match m.get("role").and_then(Value::as_str) {
            Some(role) => role == "user",
            None => missing_role_is_user && m.is_object(),
        })
        .map(|m| content_text(m.get(content_field)))
        .unwrap_or_default()
}

/// A rough, deterministic token count for usage fields: whitespace-separated words.
pub fn token_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_text_shapes() {
        let table = [
            (json!("hi"), "hi"),
            (
                json!([{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}]),
                "a\nb",
            ),
            (json!(["x", "y"]), "x\ny"),
            (json!(null), ""),
            (json!(42), ""),
        ];
        for (content, want) in table {
            assert_eq!(content_text(Some(&content)), want, "{content}");
        }
    }

    #[test]
    fn last_user_message_wins() {
        let msgs = json!([
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "answer"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
            {"role": "assistant", "content": "prefill"}
        ]);
        assert_eq!(last_user_text(Some(&msgs), "content", false), "second");
        assert_eq!(last_user_text(Some(&json!("nope")), "content", false), "");
        assert_eq!(last_user_text(None, "content", false), "");
        let gemini = json!([{"parts": [{"text": "no role"}]}]);
        assert_eq!(last_user_text(Some(&gemini), "parts", true), "no role");
        assert_eq!(last_user_text(Some(&gemini), "parts", false), "");
    }

    #[test]
    fn error_bodies_follow_each_provider() {
        let s = StatusCode::TOO_MANY_REQUESTS;
        assert_eq!(
            Provider::OpenAi.error_body(s, "m")["error"]["type"],
            "rate_limit_error"
        );
        assert_eq!(Provider::Anthropic.error_body(s, "m")["type"], "error");
        assert_eq!(
            Provider::Anthropic.error_body(s, "m")["error"]["type"],
            "rate_limit_error"
        );
        assert_eq!(
            Provider::Gemini.error_body(s, "m")["error"]["status"],
            "RESOURCE_EXHAUSTED"
        );
        assert_eq!(Provider::Gemini.error_body(s, "m")["error"]["code"], 429);
        assert_eq!(Provider::Cohere.error_body(s, "m")["message"], "m");
    }
}
