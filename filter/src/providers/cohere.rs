//! Cohere Chat v2 (`/v2/chat`) wire format.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::json::{cap_slot, collect_content, collect_messages, object_open, Message};
use super::{count, ParseError, ParsedRequest, ReportedUsage, StreamEvent, TokenCap};
use crate::model::{Role, TextSlot};

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(borrow, default)]
    messages: Vec<Message<'a>>,
    /// Strings, or objects whose `data` holds the text fields.
    #[serde(borrow, default)]
    documents: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    max_tokens: Option<&'a RawValue>,
}

pub fn parse_request(body: &str) -> Result<ParsedRequest, ParseError> {
    let req: Request = serde_json::from_str(body)?;
    if req.messages.is_empty() {
        return Err(ParseError::UnknownShape("Cohere Chat"));
    }
    let mut texts = Vec::new();
    collect_messages(body, &req.messages, &mut texts)?;
    for raw in &req.documents {
        collect_document(body, raw, &mut texts)?;
    }
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

fn collect_document(body: &str, raw: &RawValue, out: &mut Vec<TextSlot>) -> Result<(), ParseError> {
    #[derive(Deserialize)]
    struct Doc<'a> {
        #[serde(borrow, default)]
        data: Option<std::collections::BTreeMap<String, &'a RawValue>>,
    }
    if raw.get().starts_with('"') {
        return collect_content(body, raw, Role::Document, out);
    }
    if raw.get().starts_with('{') {
        let doc: Doc = serde_json::from_str(raw.get())?;
        for value in doc.data.unwrap_or_default().values() {
            collect_content(body, value, Role::Document, out)?;
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow, default)]
    message: Option<Message<'a>>,
}

pub fn parse_answer(body: &str) -> Result<Vec<TextSlot>, ParseError> {
    let answer: Answer = serde_json::from_str(body)?;
    let mut texts = Vec::new();
    if let Some(content) = answer.message.and_then(|m| m.content) {
        collect_content(body, content, Role::Assistant, &mut texts)?;
    }
    Ok(texts)
}

/// `usage`: `tokens` (what the model processed) when present, else `billed_units`.
#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    billed_units: Option<Tokens>,
    #[serde(default)]
    tokens: Option<Tokens>,
}

#[derive(Deserialize)]
struct Tokens {
    #[serde(default)]
    input_tokens: Option<f64>,
    #[serde(default)]
    output_tokens: Option<f64>,
}

impl Usage {
    fn report(&self) -> ReportedUsage {
        let pick = |f: fn(&Tokens) -> Option<f64>| {
            count(self.tokens.as_ref().and_then(f))
                .or(count(self.billed_units.as_ref().and_then(f)))
        };
        ReportedUsage {
            input: pick(|t| t.input_tokens),
            output: pick(|t| t.output_tokens),
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
    delta: Option<EventDelta<'a>>,
}

#[derive(Deserialize)]
struct EventDelta<'a> {
    #[serde(borrow, default)]
    message: Option<DeltaMessage<'a>>,
    /// `message-end` carries the usage of the whole answer.
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct DeltaMessage<'a> {
    #[serde(borrow, default)]
    content: Option<DeltaContent<'a>>,
}

#[derive(Deserialize)]
struct DeltaContent<'a> {
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
}

/// `content-delta` events carry `delta.message.content.text`.
pub fn stream_event(data: &str) -> Result<StreamEvent, ParseError> {
    let event: Event = serde_json::from_str(data)?;
    let mut out = StreamEvent::default();
    if let Some(usage) = event.delta.as_ref().and_then(|d| d.usage.as_ref()) {
        out.usage = usage.report();
    }
    match event.kind.as_deref() {
        Some("content-delta") => {
            let text = event
                .delta
                .and_then(|d| d.message)
                .and_then(|m| m.content)
                .and_then(|c| c.text);
            if let Some(text) = text {
                out.deltas
                    .extend(super::json::string_slot(data, text, Role::Assistant)?);
            }
        }
        Some("content-end" | "message-end") => out.ends_text = true,
        _ => {}
    }
    Ok(out)
}

/// Cohere's error shape: `{"message": "..."}`.
pub fn error_body(message: &str) -> String {
    serde_json::json!({ "message": message }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_documents_and_answer() {
        let body = r#"{"model":"command-r","messages":[{"role":"system","content":"sys"},
            {"role":"user","content":[{"type":"text","text":"q"}]}],
            "documents":["plain doc",{"id":"1","data":{"title":"T","snippet":"S"}}]}"#;
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
                (Role::User, "q".into()),
                (Role::Document, "plain doc".into()),
                (Role::Document, "S".into()),
                (Role::Document, "T".into())
            ]
        );
        let answer =
            r#"{"id":"x","message":{"role":"assistant","content":[{"type":"text","text":"hey"}]}}"#;
        assert_eq!(parse_answer(answer).unwrap()[0].text, "hey");
    }
}
