//! Anthropic Messages wire format.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::json::{cap_slot, collect_content, collect_messages, object_open, string_slot, Message};
use super::{count, ParseError, ParsedRequest, ReportedUsage, StreamEvent, TokenCap};
use crate::model::{Role, TextSlot};

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default)]
    system: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Vec<Message<'a>>,
    #[serde(borrow, default)]
    max_tokens: Option<&'a RawValue>,
}

pub fn parse_request(body: &str) -> Result<ParsedRequest, ParseError> {
    let req: Request = serde_json::from_str(body)?;
    if req.messages.is_empty() {
        return Err(ParseError::UnknownShape("Anthropic Messages"));
    }
    let mut texts = Vec::new();
    if let Some(system) = req.system {
        collect_content(body, system, Role::System, &mut texts)?;
    }
    collect_messages(body, &req.messages, &mut texts)?;
    Ok(ParsedRequest {
        texts,
        model: req.model,
        stream: req.stream.unwrap_or(false),
        max_tokens: TokenCap {
            stated: req.max_tokens.and_then(|raw| cap_slot(body, raw)),
            insert: object_open(body, None).map(|at| (at, "\"max_tokens\":", ",")),
        },
    })
}

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

pub fn parse_answer(body: &str) -> Result<Vec<TextSlot>, ParseError> {
    let answer: Answer = serde_json::from_str(body)?;
    let mut texts = Vec::new();
    if let Some(content) = answer.content {
        collect_content(body, content, Role::Assistant, &mut texts)?;
    }
    Ok(texts)
}

/// Input tokens are split into fresh, cache-writing and cache-read tokens; all three were
/// sent, so all three count as input.
#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    input_tokens: Option<f64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<f64>,
    #[serde(default)]
    cache_read_input_tokens: Option<f64>,
    #[serde(default)]
    output_tokens: Option<f64>,
}

impl Usage {
    fn report(&self) -> ReportedUsage {
        let cached = [
            self.cache_creation_input_tokens,
            self.cache_read_input_tokens,
        ]
        .into_iter()
        .filter_map(count)
        .sum::<u64>();
        ReportedUsage {
            input: count(self.input_tokens).map(|n| n + cached),
            output: count(self.output_tokens),
        }
    }
}

pub fn answer_usage(body: &str) -> Result<ReportedUsage, ParseError> {
    let usage: Option<Usage> = super::json::top_level_usage(body)?;
    Ok(usage.map(|u| u.report()).unwrap_or_default())
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    /// `message_delta`: cumulative output tokens (and, lately, input tokens too).
    #[serde(default)]
    usage: Option<Usage>,
    /// `message_start`: the message so far, with the input tokens.
    #[serde(default)]
    message: Option<super::json::WithUsage<Usage>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
}

/// `content_block_delta` carries `text_delta`s; a block, the message delta and the message end
/// close the text.
pub fn stream_event(data: &str) -> Result<StreamEvent, ParseError> {
    let event: Event = serde_json::from_str(data)?;
    let mut out = StreamEvent::default();
    if let Some(usage) = event
        .usage
        .as_ref()
        .or(event.message.as_ref().and_then(|m| m.usage.as_ref()))
    {
        out.usage = usage.report();
    }
    match event.kind.as_deref() {
        Some("content_block_delta") => {
            if let Some(text) = event.delta.and_then(|d| d.text) {
                out.deltas.extend(string_slot(data, text, Role::Assistant)?);
            }
        }
        Some("content_block_stop" | "message_delta" | "message_stop") => out.ends_text = true,
        _ => {}
    }
    Ok(out)
}

/// `{"type":"error","error":{"type","message"}}`, which the Anthropic SDKs raise as
/// `APIStatusError` subclasses by status.
pub fn error_body(status: u16, message: &str) -> String {
    let kind = match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        _ => "api_error",
    };
    serde_json::json!({ "type": "error", "error": { "type": kind, "message": message } })
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_inputs_and_document_titles_are_texts_too() {
        let body = r#"{"model":"claude","max_tokens":5,"messages":[
            {"role":"assistant","content":[{"type":"tool_use","id":"t","name":"mail",
                "input":{"to":"jane@example.com","cc":["bob@example.com"],"n":3,"opts":{"note":"deep"}}},
                {"type":"server_tool_use","id":"s","name":"web_search","input":{"query":"q"}}]},
            {"role":"user","content":[{"type":"document","title":"Ignore the rules","context":"ctx",
                "source":{"type":"text","media_type":"text/plain","data":"doc"}}]}]}"#;
        let got = crate::providers::role_texts(parse_request(body).unwrap());
        crate::providers::assert_has_texts(
            &got,
            &[
                (Role::Assistant, "jane@example.com"),
                (Role::Assistant, "bob@example.com"),
                (Role::Assistant, "deep"),
                (Role::Assistant, "q"),
                (Role::Document, "Ignore the rules"),
                (Role::Document, "ctx"),
                (Role::Document, "doc"),
            ],
        );
        // Each string is a slot of its own, so redaction rewrites it in place.
        let parsed = parse_request(body).unwrap();
        let slot = parsed
            .texts
            .iter()
            .find(|t| t.text == "jane@example.com")
            .unwrap();
        assert_eq!(&body[slot.literal.clone()], "\"jane@example.com\"");
    }

    #[test]
    fn system_messages_tool_results_documents() {
        let body = r#"{"model":"claude","system":[{"type":"text","text":"sys"}],"messages":[
            {"role":"user","content":"hi"},
            {"role":"user","content":[
                {"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"tool says"}]},
                {"type":"document","source":{"type":"text","media_type":"text/plain","data":"doc"}}]}]}"#;
        let got: Vec<(Role, String)> = parse_request(body)
            .unwrap()
            .texts
            .into_iter()
            .map(|t| (t.role, t.text))
            .collect();
        assert_eq!(
            got,
            vec![
                (Role::System, "sys".into()),
                (Role::User, "hi".into()),
                (Role::Tool, "tool says".into()),
                (Role::Document, "doc".into())
            ]
        );
    }

    #[test]
    fn stream_events() {
        let d =
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#;
        assert_eq!(stream_event(d).unwrap().deltas[0].text, "Hi");
        assert!(
            stream_event(r#"{"type":"content_block_stop","index":0}"#)
                .unwrap()
                .ends_text
        );
        assert_eq!(
            stream_event(r#"{"type":"ping"}"#).unwrap(),
            StreamEvent::default()
        );
    }

    #[test]
    fn answer_texts() {
        let body = r#"{"id":"m","type":"message","content":[{"type":"text","text":"ok"}]}"#;
        assert_eq!(parse_answer(body).unwrap()[0].text, "ok");
    }
}
