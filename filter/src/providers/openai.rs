//! OpenAI wire formats (also Azure OpenAI, Mistral and OpenAI-compatible servers): Chat
//! Completions, Responses, legacy Completions and Embeddings.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::json::{cap_slot, collect_content, collect_messages, object_open, string_slot, Message};
use super::{count, Api, ParseError, ParsedRequest, ReportedUsage, StreamEvent, TokenCap};
use crate::model::{Role, TextSlot};

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    /// Chat Completions.
    #[serde(borrow, default)]
    messages: Vec<Message<'a>>,
    /// Responses: system-level instructions.
    #[serde(borrow, default)]
    instructions: Option<&'a RawValue>,
    /// Responses and Embeddings.
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    /// Legacy Completions.
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_completion_tokens: Option<&'a RawValue>,
    /// Responses.
    #[serde(borrow, default)]
    max_output_tokens: Option<&'a RawValue>,
    /// Tool definitions: their descriptions are instructions the model reads.
    #[serde(borrow, default)]
    tools: Vec<Tool<'a>>,
    /// Predicted output (Chat Completions): text the model is shown.
    #[serde(borrow, default)]
    prediction: Option<Prediction<'a>>,
    /// Legacy Completions: text after the insertion point.
    #[serde(borrow, default)]
    suffix: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Tool<'a> {
    /// Responses API tools carry their description at the top level.
    #[serde(borrow, default)]
    description: Option<&'a RawValue>,
    #[serde(borrow, default)]
    function: Option<ToolFunction<'a>>,
}

#[derive(Deserialize)]
struct ToolFunction<'a> {
    #[serde(borrow, default)]
    description: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Prediction<'a> {
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

pub fn parse_request(api: Api, body: &str) -> Result<ParsedRequest, ParseError> {
    let req: Request = serde_json::from_str(body)?;
    if req.messages.is_empty() && req.input.is_none() && req.prompt.is_none() {
        return Err(ParseError::UnknownShape("OpenAI"));
    }
    let mut texts = Vec::new();
    collect_messages(body, &req.messages, &mut texts)?;
    if let Some(instructions) = req.instructions {
        texts.extend(string_slot(body, instructions, Role::System)?);
    }
    let input_role = if api == Api::Embeddings {
        Role::Document
    } else {
        Role::User
    };
    for raw in [req.input, req.prompt].into_iter().flatten() {
        collect_content(body, raw, input_role, &mut texts)?;
    }
    if let Some(suffix) = req.suffix {
        texts.extend(string_slot(body, suffix, Role::User)?);
    }
    if let Some(content) = req.prediction.and_then(|p| p.content) {
        collect_content(body, content, Role::User, &mut texts)?;
    }
    // Tool descriptions are the application's, and instructions to the model: a poisoned one
    // is an injection, so they are read as system text.
    for tool in &req.tools {
        let inner = tool.function.as_ref().and_then(|f| f.description);
        for description in [tool.description, inner].into_iter().flatten() {
            texts.extend(string_slot(body, description, Role::System)?);
        }
    }
    let stated = [
        req.max_completion_tokens,
        req.max_tokens,
        req.max_output_tokens,
    ]
    .into_iter()
    .flatten()
    .find_map(|raw| cap_slot(body, raw));
    let field = match api {
        Api::Responses => "\"max_output_tokens\":",
        _ => "\"max_tokens\":",
    };
    let max_tokens = TokenCap {
        stated,
        insert: (api != Api::Embeddings)
            .then(|| object_open(body, None))
            .flatten()
            .map(|at| (at, field, ",")),
    };
    Ok(ParsedRequest {
        texts,
        model: req.model,
        stream: req.stream.unwrap_or(false),
        max_tokens,
    })
}

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow, default)]
    choices: Vec<Choice<'a>>,
    /// Responses API output items.
    #[serde(borrow, default)]
    output: Vec<OutputItem<'a>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    message: Option<Message<'a>>,
    /// Legacy Completions.
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct OutputItem<'a> {
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

pub fn parse_answer(api: Api, body: &str) -> Result<Vec<TextSlot>, ParseError> {
    if api == Api::Embeddings {
        return Ok(Vec::new());
    }
    let answer: Answer = serde_json::from_str(body)?;
    let mut texts = Vec::new();
    for choice in &answer.choices {
        if let Some(content) = choice.message.as_ref().and_then(|m| m.content) {
            collect_content(body, content, Role::Assistant, &mut texts)?;
        }
        if let Some(text) = choice.text {
            texts.extend(string_slot(body, text, Role::Assistant)?);
        }
    }
    for item in &answer.output {
        if let Some(content) = item.content {
            collect_content(body, content, Role::Assistant, &mut texts)?;
        }
    }
    Ok(texts)
}

/// `usage` in Chat Completions, Completions and Embeddings (`prompt_tokens`,
/// `completion_tokens`) and in Responses (`input_tokens`, `output_tokens`).
#[derive(Deserialize, Default)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<f64>,
    #[serde(default)]
    completion_tokens: Option<f64>,
    #[serde(default)]
    input_tokens: Option<f64>,
    #[serde(default)]
    output_tokens: Option<f64>,
}

impl Usage {
    fn report(&self) -> ReportedUsage {
        ReportedUsage {
            input: count(self.prompt_tokens.or(self.input_tokens)),
            output: count(self.completion_tokens.or(self.output_tokens)),
        }
    }
}

/// The usage an answer reports. Embeddings produce no output tokens.
pub fn answer_usage(api: Api, body: &str) -> Result<ReportedUsage, ParseError> {
    let usage: Option<Usage> = super::json::top_level_usage(body)?;
    let mut usage = usage.map(|u| u.report()).unwrap_or_default();
    if api == Api::Embeddings && usage.input.is_some() {
        usage.output = usage.output.or(Some(0));
    }
    Ok(usage)
}

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(borrow, default)]
    choices: Vec<ChunkChoice<'a>>,
    /// Responses API `response.output_text.delta`.
    #[serde(borrow, default)]
    delta: Option<&'a RawValue>,
    /// The last Chat Completions chunk when the request set `stream_options.include_usage`.
    #[serde(default)]
    usage: Option<Usage>,
    /// Responses API `response.completed` carries the whole response, usage included.
    #[serde(default)]
    response: Option<super::json::WithUsage<Usage>>,
}

#[derive(Deserialize)]
struct ChunkChoice<'a> {
    #[serde(borrow, default)]
    delta: Option<Message<'a>>,
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
    #[serde(default)]
    finish_reason: Option<String>,
}

/// Chat Completions and legacy Completions chunks, and Responses API typed events.
pub fn stream_event(data: &str) -> Result<StreamEvent, ParseError> {
    let chunk: Chunk = serde_json::from_str(data)?;
    let mut event = StreamEvent::default();
    if let Some(usage) = chunk
        .usage
        .as_ref()
        .or(chunk.response.as_ref().and_then(|r| r.usage.as_ref()))
    {
        event.usage = usage.report();
    }
    for choice in &chunk.choices {
        if let Some(content) = choice.delta.as_ref().and_then(|d| d.content) {
            event
                .deltas
                .extend(string_slot(data, content, Role::Assistant)?);
        }
        if let Some(text) = choice.text {
            event
                .deltas
                .extend(string_slot(data, text, Role::Assistant)?);
        }
        event.ends_text |= choice.finish_reason.is_some();
    }
    match chunk.kind.as_deref() {
        Some("response.output_text.delta") => {
            if let Some(delta) = chunk.delta {
                event
                    .deltas
                    .extend(string_slot(data, delta, Role::Assistant)?);
            }
        }
        Some(kind) if kind.ends_with(".done") || kind == "response.completed" => {
            event.ends_text = true;
        }
        _ => {}
    }
    Ok(event)
}

/// `{"error": {"message", "type", "param", "code"}}`, the shape OpenAI SDKs turn into
/// `APIStatusError` subclasses.
pub fn error_body(status: u16, code: &str, message: &str) -> String {
    let kind = match status {
        400 | 413 => "invalid_request_error",
        429 => "rate_limit_error",
        _ => "policy_violation",
    };
    serde_json::json!({
        "error": { "message": message, "type": kind, "param": null, "code": code }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(api: Api, body: &str) -> Vec<(Role, String)> {
        crate::providers::role_texts(parse_request(api, body).unwrap())
    }

    #[test]
    fn chat_string_and_part_contents() {
        let body = r#"{"model":"gpt-4o","messages":[
            {"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"x"}}]},
            {"role":"assistant","content":null,"tool_calls":[]},
            {"role":"tool","tool_call_id":"1","content":"sunny"}],"stream":true}"#;
        assert_eq!(
            texts(Api::ChatCompletions, body),
            vec![
                (Role::System, "be brief".into()),
                (Role::User, "hi".into()),
                (Role::Tool, "sunny".into())
            ]
        );
        let parsed = parse_request(Api::ChatCompletions, body).unwrap();
        assert!(parsed.stream);
        assert_eq!(parsed.model.as_deref(), Some("gpt-4o"));
    }

    #[test]
    fn responses_embeddings_completions() {
        let body = r#"{"instructions":"sys","input":[{"role":"user","content":[{"type":"input_text","text":"q"}]},
            {"type":"function_call_output","call_id":"c","output":"result"}]}"#;
        assert_eq!(
            texts(Api::Responses, body),
            vec![
                (Role::System, "sys".into()),
                (Role::User, "q".into()),
                (Role::Tool, "result".into())
            ]
        );
        assert_eq!(
            texts(Api::Embeddings, r#"{"input":["a","b"]}"#),
            vec![(Role::Document, "a".into()), (Role::Document, "b".into())]
        );
        assert_eq!(
            texts(Api::Completions, r#"{"prompt":"p"}"#),
            vec![(Role::User, "p".into())]
        );
    }

    #[test]
    fn answers() {
        let chat = r#"{"choices":[{"message":{"role":"assistant","content":"hello"}}]}"#;
        let got = parse_answer(Api::ChatCompletions, chat).unwrap();
        assert_eq!(got[0].text, "hello");
        assert_eq!(&chat[got[0].literal.clone()], "\"hello\"");
        let resp =
            r#"{"output":[{"type":"message","content":[{"type":"output_text","text":"yo"}]}]}"#;
        assert_eq!(parse_answer(Api::Responses, resp).unwrap()[0].text, "yo");
    }

    #[test]
    fn stream_events() {
        let chunk =
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#;
        let e = stream_event(chunk).unwrap();
        assert_eq!(e.deltas[0].text, "Hel");
        assert!(!e.ends_text);
        let last = r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;
        assert!(stream_event(last).unwrap().ends_text);
        let resp = r#"{"type":"response.output_text.delta","item_id":"i","delta":"lo"}"#;
        assert_eq!(stream_event(resp).unwrap().deltas[0].text, "lo");
        let done = r#"{"type":"response.output_text.done","text":"Hello"}"#;
        let e = stream_event(done).unwrap();
        assert!(e.ends_text && e.deltas.is_empty());
    }

    #[test]
    fn tool_call_arguments_and_unknown_shapes() {
        let body = r#"{"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"1","type":"function",
            "function":{"name":"send","arguments":"{\"to\":\"a@b.io\"}"}}]}]}"#;
        assert_eq!(
            texts(Api::ChatCompletions, body),
            vec![(Role::Assistant, r#"{"to":"a@b.io"}"#.into())]
        );
        for unknown in [
            r#"{"model":"m"}"#,
            r#"{"messages":[]}"#,
            r#"{"foo":{"bar":1}}"#,
        ] {
            assert!(matches!(
                parse_request(Api::ChatCompletions, unknown),
                Err(ParseError::UnknownShape(_))
            ));
        }
    }

    #[test]
    fn every_field_the_model_reads_is_a_text() {
        let body = r#"{"model":"m","messages":[
            {"role":"user","name":"alice","content":"hi"},
            {"role":"assistant","content":null,"refusal":"I cannot","function_call":{"name":"f","arguments":"{\"q\":\"legacy\"}"}}],
            "tools":[{"type":"function","function":{"name":"lookup","description":"Looks things up"}},
                     {"type":"function","name":"r","description":"Responses-style tool"}],
            "prediction":{"type":"content","content":"predicted text"},
            "suffix":"after the cursor"}"#;
        let got = texts(Api::ChatCompletions, body);
        crate::providers::assert_has_texts(
            &got,
            &[
                (Role::User, "alice"),
                (Role::Assistant, "I cannot"),
                (Role::Assistant, "{\"q\":\"legacy\"}"),
                (Role::System, "Looks things up"),
                (Role::System, "Responses-style tool"),
                (Role::User, "predicted text"),
                (Role::User, "after the cursor"),
            ],
        );
    }

    #[test]
    fn responses_tool_calls_and_outputs_are_texts() {
        let body = r#"{"model":"m","input":[
            {"type":"function_call","call_id":"c","name":"f","arguments":"{\"to\":\"a@b.io\"}"},
            {"type":"function_call_output","call_id":"c","output":[{"type":"input_text","text":"result text"}]},
            {"type":"custom_tool_call","call_id":"d","name":"g","input":"raw input"}]}"#;
        let got = texts(Api::Responses, body);
        crate::providers::assert_has_texts(
            &got,
            &[
                (Role::Assistant, "{\"to\":\"a@b.io\"}"),
                (Role::Tool, "result text"),
                (Role::Assistant, "raw input"),
            ],
        );
    }

    #[test]
    fn malformed_is_an_error_not_a_panic() {
        for body in [
            "",
            "{",
            "[1,2]",
            "{\"messages\":3}",
            "{\"messages\":[{\"content\":[{\"text\":5}]}]}",
        ] {
            let _ = parse_request(Api::ChatCompletions, body);
        }
        assert!(parse_request(Api::ChatCompletions, "{").is_err());
    }
}
