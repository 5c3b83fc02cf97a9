//! JSON helpers shared by the codecs. Texts are located as borrowed `RawValue`s, whose position
//! in the body gives the byte range to rewrite: the rest of the body stays byte for byte.

use serde_json::value::RawValue;

use crate::model::{Role, TextSlot};
use crate::providers::ParseError;

/// Turns a raw JSON value borrowed from `body` into a text slot if it is a string.
pub fn string_slot(body: &str, raw: &RawValue, role: Role) -> Result<Option<TextSlot>, ParseError> {
    let literal = raw.get();
    if !literal.starts_with('"') {
        return Ok(None);
    }
    let text: String = serde_json::from_str(literal)?;
    let start = offset_in(body, literal);
    Ok(Some(TextSlot {
        role,
        literal: start..start + literal.len(),
        text,
    }))
}

/// A stated token cap: an unsigned integer literal borrowed from `body`.
pub fn cap_slot(body: &str, raw: &RawValue) -> Option<(u64, std::ops::Range<usize>)> {
    let literal = raw.get();
    let value: u64 = literal.parse().ok()?;
    let start = offset_in(body, literal);
    Some((value, start..start + literal.len()))
}

/// The offset just after the opening brace of the object `raw` (borrowed from `body`), or of
/// the body's top-level object when `raw` is `None`.
pub fn object_open(body: &str, raw: Option<&RawValue>) -> Option<usize> {
    let (text, base) = match raw {
        Some(raw) => (raw.get(), offset_in(body, raw.get())),
        None => (body, 0),
    };
    let trimmed = text.trim_start();
    trimmed
        .starts_with('{')
        .then(|| base + (text.len() - trimmed.len()) + 1)
}

/// Byte offset of `part` within `whole`; `part` must be borrowed from `whole`.
fn offset_in(whole: &str, part: &str) -> usize {
    (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize)
}

/// Applies replacements of JSON string literals to a body. Each slot's `text` is written back,
/// JSON-escaped, over its `literal` range; slots must not overlap.
pub fn rewrite(body: &str, slots: &[&TextSlot]) -> String {
    let mut sorted: Vec<&&TextSlot> = slots.iter().collect();
    sorted.sort_by_key(|s| s.literal.start);
    let mut out = String::with_capacity(body.len() + 64);
    let mut at = 0;
    for slot in sorted {
        let (start, end) = (slot.literal.start, slot.literal.end);
        if start < at || end > body.len() {
            continue;
        }
        out.push_str(body.get(at..start).unwrap_or_default());
        out.push_str(&quote(&slot.text));
        at = end;
    }
    out.push_str(body.get(at..).unwrap_or_default());
    out
}

/// JSON string literal for `text`.
pub fn quote(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// An object with a `usage` member in the provider's own type (an answer, or the message or
/// response inside a stream event).
#[derive(serde::Deserialize)]
pub struct WithUsage<U> {
    #[serde(default = "Option::default")]
    pub usage: Option<U>,
}

/// A body's top-level `usage` object, read as the provider's own type; `None` when absent.
pub fn top_level_usage<'a, U: serde::Deserialize<'a>>(
    body: &'a str,
) -> Result<Option<U>, ParseError> {
    let answer: WithUsage<U> = serde_json::from_str(body)?;
    Ok(answer.usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_keeps_every_other_byte() {
        let body = r#"{"z":1,  "content": "hi \u00e9 there", "n": 2.50}"#;
        let raw: serde_json::Map<String, serde_json::Value> = serde_json::from_str(body).unwrap();
        assert_eq!(raw.len(), 3);
        #[derive(serde::Deserialize)]
        struct B<'a> {
            #[serde(borrow)]
            content: &'a RawValue,
        }
        let b: B = serde_json::from_str(body).unwrap();
        let mut slot = string_slot(body, b.content, Role::User).unwrap().unwrap();
        assert_eq!(slot.text, "hi é there");
        slot.text = "hi \"<EMAIL_1>\"".into();
        let out = rewrite(body, &[&slot]);
        assert_eq!(out, r#"{"z":1,  "content": "hi \"<EMAIL_1>\"", "n": 2.50}"#);
    }
}

/// A chat message as OpenAI (and the servers copying it), Anthropic and Cohere write it.
#[derive(serde::Deserialize)]
pub struct Message<'a> {
    #[serde(default)]
    pub role: Option<String>,
    #[serde(borrow, default)]
    pub content: Option<&'a RawValue>,
    /// Earlier tool calls replayed in the conversation: their arguments can carry data too.
    #[serde(borrow, default)]
    tool_calls: Vec<ToolCall<'a>>,
    /// The legacy single function call of a replayed assistant turn.
    #[serde(borrow, default)]
    function_call: Option<Function<'a>>,
    /// A participant's name, which the model reads with the message.
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    /// A replayed assistant refusal.
    #[serde(borrow, default)]
    refusal: Option<&'a RawValue>,
}

#[derive(serde::Deserialize)]
struct ToolCall<'a> {
    #[serde(borrow, default)]
    function: Option<Function<'a>>,
}

#[derive(serde::Deserialize)]
struct Function<'a> {
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
}

/// Collects the texts of chat messages: their content by role, and tool-call arguments.
pub fn collect_messages(
    body: &str,
    messages: &[Message],
    out: &mut Vec<TextSlot>,
) -> Result<(), ParseError> {
    for msg in messages {
        let role = Role::from_name(msg.role.as_deref().unwrap_or("user"));
        if let Some(content) = msg.content {
            collect_content(body, content, role, out)?;
        }
        let calls = msg.tool_calls.iter().filter_map(|c| c.function.as_ref());
        for function in calls.chain(msg.function_call.as_ref()) {
            if let Some(arguments) = function.arguments {
                out.extend(string_slot(body, arguments, Role::Assistant)?);
            }
        }
        if let Some(name) = msg.name {
            out.extend(string_slot(body, name, role)?);
        }
        if let Some(refusal) = msg.refusal {
            out.extend(string_slot(body, refusal, Role::Assistant)?);
        }
    }
    Ok(())
}

/// One element of a content array, in any of the shapes the providers use: text parts,
/// tool results (with nested content), function call outputs and text documents.
#[derive(serde::Deserialize)]
struct Part<'a> {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    output: Option<&'a RawValue>,
    #[serde(borrow, default)]
    source: Option<Source<'a>>,
    #[serde(default)]
    role: Option<String>,
    /// Replayed tool calls: Anthropic `tool_use`/`server_tool_use` input (an object), the
    /// Responses API's `custom_tool_call` input (a string) and `function_call` arguments.
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
    /// Anthropic documents: the model reads their title and context with them.
    #[serde(borrow, default)]
    title: Option<&'a RawValue>,
    #[serde(borrow, default)]
    context: Option<&'a RawValue>,
    /// Gemini parts: a replayed function call's arguments, a function's response.
    #[serde(borrow, default, rename = "functionCall", alias = "function_call")]
    gemini_call: Option<GeminiCall<'a>>,
    #[serde(
        borrow,
        default,
        rename = "functionResponse",
        alias = "function_response"
    )]
    gemini_response: Option<GeminiResponse<'a>>,
}

#[derive(serde::Deserialize)]
struct GeminiCall<'a> {
    #[serde(borrow, default)]
    args: Option<&'a RawValue>,
}

#[derive(serde::Deserialize)]
struct GeminiResponse<'a> {
    #[serde(borrow, default)]
    response: Option<&'a RawValue>,
}

#[derive(serde::Deserialize)]
struct Source<'a> {
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// How deep tool results may nest content before the rest is ignored: bounds recursion on
/// hostile input.
const MAX_CONTENT_DEPTH: usize = 4;

/// How deep `collect_strings` follows a structured value (tool inputs) before ignoring the rest.
const MAX_VALUE_DEPTH: usize = 16;

/// Collects every string in a JSON value of any shape (tool call inputs and arguments, which
/// the model reads whole), each as a slot of its own so it can be redacted in place.
pub fn collect_strings(
    body: &str,
    raw: &RawValue,
    role: Role,
    out: &mut Vec<TextSlot>,
    depth: usize,
) -> Result<(), ParseError> {
    let literal = raw.get();
    if depth >= MAX_VALUE_DEPTH {
        return Ok(());
    }
    match literal.as_bytes().first() {
        Some(b'"') => out.extend(string_slot(body, raw, role)?),
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(literal)?;
            for item in items {
                collect_strings(body, item, role, out, depth + 1)?;
            }
        }
        Some(b'{') => {
            // Keys are owned: one with an escape cannot be borrowed. (Duplicates were refused.)
            let fields: std::collections::BTreeMap<String, &RawValue> =
                serde_json::from_str(literal)?;
            for value in fields.into_values() {
                collect_strings(body, value, role, out, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Collects the texts of a `content`-like value: a string, or an array of parts.
pub fn collect_content(
    body: &str,
    raw: &RawValue,
    role: Role,
    out: &mut Vec<TextSlot>,
) -> Result<(), ParseError> {
    collect_at_depth(body, raw, role, out, 0)
}

fn collect_at_depth(
    body: &str,
    raw: &RawValue,
    role: Role,
    out: &mut Vec<TextSlot>,
    depth: usize,
) -> Result<(), ParseError> {
    let literal = raw.get();
    if literal.starts_with('"') {
        out.extend(string_slot(body, raw, role)?);
        return Ok(());
    }
    if depth >= MAX_CONTENT_DEPTH {
        return Ok(());
    }
    // One part given on its own where a list is expected (Gemini accepts `parts: {…}`).
    let items: Vec<&RawValue> = match literal.as_bytes().first() {
        Some(b'[') => serde_json::from_str(literal)?,
        Some(b'{') => vec![raw],
        _ => return Ok(()),
    };
    for item in items {
        // Arrays hold parts (objects), plain strings (embeddings and completions input) or
        // token ids, which carry no text to inspect.
        if item.get().starts_with('"') {
            out.extend(string_slot(body, item, role)?);
            continue;
        }
        if !item.get().starts_with('{') {
            continue;
        }
        let part: Part = serde_json::from_str(item.get())?;
        let role = match (part.kind.as_deref(), part.role.as_deref()) {
            (Some("tool_result" | "function_call_output"), _) => Role::Tool,
            (Some("document"), _) => Role::Document,
            (_, Some(name)) => Role::from_name(name),
            _ => role,
        };
        if let Some(text) = part.text {
            out.extend(string_slot(body, text, role)?);
        }
        if let Some(output) = part.output {
            // A string, or (Responses) an array of parts.
            collect_at_depth(body, output, role, out, depth + 1)?;
        }
        for call in [part.input, part.arguments].into_iter().flatten() {
            collect_strings(body, call, Role::Assistant, out, 0)?;
        }
        for about in [part.title, part.context].into_iter().flatten() {
            out.extend(string_slot(body, about, Role::Document)?);
        }
        if let Some(args) = part.gemini_call.and_then(|c| c.args) {
            collect_strings(body, args, Role::Assistant, out, 0)?;
        }
        if let Some(response) = part.gemini_response.and_then(|r| r.response) {
            collect_strings(body, response, Role::Tool, out, 0)?;
        }
        if let Some(data) = part.source.and_then(|s| s.data) {
            out.extend(string_slot(body, data, Role::Document)?);
        }
        if let Some(content) = part.content {
            collect_at_depth(body, content, role, out, depth + 1)?;
        }
    }
    Ok(())
}
