//! Provider codecs: recognise which LLM API a request speaks, pull its texts into the neutral
//! model (`model::TextSlot`), and write error answers in that provider's own format.

pub mod anthropic;
pub mod cohere;
pub mod gemini;
pub mod json;
pub mod openai;
pub mod strict;

use std::ops::Range;

use serde::Deserialize;

use crate::model::TextSlot;

/// The wire format family. OpenAI-compatible servers (vLLM, Ollama's /v1, Mistral) speak `OpenAi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    #[serde(
        rename = "openai",
        alias = "openai_compatible",
        alias = "azure_openai",
        alias = "mistral"
    )]
    OpenAi,
    Anthropic,
    Gemini,
    Cohere,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
            Provider::Cohere => "cohere",
        }
    }
}

/// The API operation, which decides where the texts live in a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Api {
    ChatCompletions,
    Responses,
    Completions,
    Embeddings,
    Messages,
    /// Gemini `generateContent` (and `streamGenerateContent`).
    GenerateContent,
    /// Cohere Chat v2.
    Chat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub provider: Provider,
    pub api: Api,
}

/// Recognises an LLM API by its path, as [`canonical_path`] gives it. Azure OpenAI's
/// `/openai/deployments/{name}/...` paths map to the OpenAI formats.
pub fn endpoint_for_path(canonical: &str) -> Option<Endpoint> {
    // Providers route case-insensitively.
    let path = canonical.to_ascii_lowercase();
    let path = path.trim_end_matches('/');
    let openai = |api| {
        Some(Endpoint {
            provider: Provider::OpenAi,
            api,
        })
    };
    if path.ends_with("/chat/completions") {
        openai(Api::ChatCompletions)
    } else if path.ends_with("/responses") {
        openai(Api::Responses)
    } else if path.ends_with("/embeddings") {
        openai(Api::Embeddings)
    } else if path.ends_with("/completions") {
        openai(Api::Completions)
    } else if path.ends_with("/v1/messages") {
        Some(Endpoint {
            provider: Provider::Anthropic,
            api: Api::Messages,
        })
    } else if path.ends_with(":generatecontent") || path.ends_with(":streamgeneratecontent") {
        Some(Endpoint {
            provider: Provider::Gemini,
            api: Api::GenerateContent,
        })
    } else if path.ends_with("/v2/chat") {
        Some(Endpoint {
            provider: Provider::Cohere,
            api: Api::Chat,
        })
    } else {
        None
    }
}

/// Why a body could not be read as the API it claims to be.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("body is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("body is not UTF-8")]
    NotUtf8,
    #[error("body exceeds the {limit} byte inspection limit")]
    TooLarge { limit: usize },
    #[error("body is compressed ({0}) and cannot be inspected")]
    Compressed(String),
    #[error("body is JSON but not a {0} request")]
    UnknownShape(&'static str),
}

/// The texts of a request body and what else the pipeline needs from it.
#[derive(Debug, Default, PartialEq)]
pub struct ParsedRequest {
    pub texts: Vec<TextSlot>,
    pub model: Option<String>,
    pub stream: bool,
    pub max_tokens: TokenCap,
}

/// Where a request states its answer-length cap, or where one can be written in.
#[derive(Debug, Default, PartialEq, Clone)]
pub struct TokenCap {
    /// The stated cap and the byte range of its number literal.
    pub stated: Option<(u64, Range<usize>)>,
    /// Where to insert a cap when none is stated: the byte just after an object's `{`, and the
    /// text to put before and after the number (e.g. `"max_tokens":` and `,`).
    pub insert: Option<(usize, &'static str, &'static str)>,
}

impl TokenCap {
    /// The body with the cap lowered (or added) to `limit`; `None` when it is already within.
    pub fn apply(&self, body: &str, limit: u64) -> Option<String> {
        match &self.stated {
            Some((value, _)) if *value <= limit => None,
            Some((_, range)) => Some(format!(
                "{}{limit}{}",
                body.get(..range.start)?,
                body.get(range.end..)?
            )),
            None => {
                let (at, before, after) = self.insert?;
                let rest = body.get(at..)?;
                // No comma before a closing brace: `{}` becomes `{"max_tokens":N}`.
                let after = if rest.trim_start().starts_with('}') {
                    after.trim_end_matches(',')
                } else {
                    after
                };
                Some(format!("{}{before}{limit}{after}{rest}", body.get(..at)?))
            }
        }
    }
}

/// Extracts the texts of a request body for the given API.
pub fn parse_request(endpoint: Endpoint, body: &str) -> Result<ParsedRequest, ParseError> {
    // Read as the strictest provider would, so no codec sees one body and the provider another.
    strict::check(body)?;
    match endpoint.provider {
        Provider::OpenAi => openai::parse_request(endpoint.api, body),
        Provider::Anthropic => anthropic::parse_request(body),
        Provider::Gemini => gemini::parse_request(body),
        Provider::Cohere => cohere::parse_request(body),
    }
}

/// Extracts the answer texts of a non-streamed response body.
pub fn parse_answer(endpoint: Endpoint, body: &str) -> Result<Vec<TextSlot>, ParseError> {
    match endpoint.provider {
        Provider::OpenAi => openai::parse_answer(endpoint.api, body),
        Provider::Anthropic => anthropic::parse_answer(body),
        Provider::Gemini => gemini::parse_answer(body),
        Provider::Cohere => cohere::parse_answer(body),
    }
}

/// What one streamed event carries: incremental answer text, and whether a run of text ends
/// with it (held-back text must be sent before such an event).
#[derive(Debug, Default, PartialEq)]
pub struct StreamEvent {
    /// Text deltas, located in the event's `data`.
    pub deltas: Vec<TextSlot>,
    pub ends_text: bool,
    /// Token counts the event reports (Anthropic's `message_start` and `message_delta`,
    /// OpenAI's final usage chunk, Gemini's `usageMetadata`, Cohere's `message-end`).
    pub usage: ReportedUsage,
}

/// Token counts as a provider reported them. Either side may be missing: an Anthropic stream
/// reports input tokens first and output tokens at the end. Later reports replace earlier ones
/// (streamed counts are cumulative).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReportedUsage {
    pub input: Option<u64>,
    pub output: Option<u64>,
}

impl ReportedUsage {
    /// Folds a later report in: what it states replaces what was known.
    pub fn merge(&mut self, later: ReportedUsage) {
        self.input = later.input.or(self.input);
        self.output = later.output.or(self.output);
    }
}

/// A token count from JSON: integers, or floats as Cohere's billed units may be written;
/// negative or non-finite values count as absent.
pub(crate) fn count(value: Option<f64>) -> Option<u64> {
    value
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v.round() as u64)
}

/// The token usage a non-streamed answer body reports (also a Gemini streamed JSON array).
pub fn answer_usage(endpoint: Endpoint, body: &str) -> ReportedUsage {
    match endpoint.provider {
        Provider::OpenAi => openai::answer_usage(endpoint.api, body),
        Provider::Anthropic => anthropic::answer_usage(body),
        Provider::Gemini => gemini::answer_usage(body),
        Provider::Cohere => cohere::answer_usage(body),
    }
    .unwrap_or_default()
}

/// The model a path names, for APIs that put it there rather than in the body: Gemini's
/// `/models/{model}:generateContent` and Azure OpenAI's `/openai/deployments/{deployment}/`
/// (the deployment stands for the model). `canonical` is as [`canonical_path`] gives it.
pub fn model_in_path(canonical: &str) -> Option<&str> {
    let path = canonical;
    if let Some((_, rest)) = path.split_once("/openai/deployments/") {
        return rest.split('/').next().filter(|m| !m.is_empty());
    }
    let (_, rest) = path.rsplit_once("/models/")?;
    let model = rest.split(':').next()?;
    (rest.contains(':') && !model.is_empty() && !model.contains('/')).then_some(model)
}

/// The path as a provider reads it: no query or fragment, percent-escapes decoded (where they
/// decode to UTF-8), runs of slashes merged. Case is kept (model names in paths keep theirs).
/// Every spelling that can reach a provider (`//v1//chat/completions`, `%3AgenerateContent`)
/// is then recognised; computed once per request.
pub fn canonical_path(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let mut out = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

/// Reads one streamed event (`name` is its SSE `event:` field, `data` its data).
pub fn stream_event(endpoint: Endpoint, name: Option<&str>, data: &str) -> StreamEvent {
    let read = match endpoint.provider {
        Provider::OpenAi => openai::stream_event(data),
        Provider::Anthropic => anthropic::stream_event(data),
        Provider::Gemini => gemini::stream_event(data),
        Provider::Cohere => cohere::stream_event(data),
    };
    read.unwrap_or_else(|_| StreamEvent {
        deltas: Vec::new(),
        // `[DONE]` and other non-JSON markers close the text too.
        ends_text: name.is_some() || !data.trim_start().starts_with('{'),
        usage: ReportedUsage::default(),
    })
}

/// The event that stops a stream with an error the provider's SDKs raise.
pub fn stream_error_event(provider: Provider, code: &str, message: &str) -> String {
    match provider {
        Provider::Anthropic => format!(
            "event: error\ndata: {}\n\n",
            anthropic::error_body(403, message)
        ),
        Provider::OpenAi => format!("data: {}\n\n", openai::error_body(403, code, message)),
        Provider::Gemini => format!("data: {}\n\n", gemini::error_body(403, message)),
        Provider::Cohere => format!("event: error\ndata: {}\n\n", cohere::error_body(message)),
    }
}

/// A local error answer in the provider's own format, so SDK clients raise their usual error.
pub fn error_body(provider: Provider, status: u16, code: &str, message: &str) -> String {
    match provider {
        Provider::OpenAi => openai::error_body(status, code, message),
        Provider::Anthropic => anthropic::error_body(status, message),
        Provider::Gemini => gemini::error_body(status, message),
        Provider::Cohere => cohere::error_body(message),
    }
}

/// What the codecs' tests compare: each text of a parsed request with its role.
#[cfg(test)]
pub(crate) fn role_texts(parsed: ParsedRequest) -> Vec<(crate::model::Role, String)> {
    parsed.texts.into_iter().map(|t| (t.role, t.text)).collect()
}

/// Asserts that every `(role, text)` of `want` is among `got`.
#[cfg(test)]
pub(crate) fn assert_has_texts(
    got: &[(crate::model::Role, String)],
    want: &[(crate::model::Role, &str)],
) {
    for (role, text) in want {
        assert!(
            got.iter().any(|(r, t)| r == role && t == text),
            "{:?} not in {got:?}",
            (role, text)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_caps_are_lowered_or_added() {
        const M: &str = r#""messages":[{"role":"user","content":"x"}]"#;
        let openai = [
            (
                Api::ChatCompletions,
                format!(r#"{{"model":"m","max_tokens":9000,{M}}}"#),
                Some(format!(r#"{{"model":"m","max_tokens":100,{M}}}"#)),
            ),
            (
                Api::ChatCompletions,
                format!(r#"{{"model":"m","max_tokens":50,{M}}}"#),
                None,
            ),
            (
                Api::ChatCompletions,
                format!(r#" {{{M}}}"#),
                Some(format!(r#" {{"max_tokens":100,{M}}}"#)),
            ),
            (
                Api::Responses,
                r#"{"input":"x"}"#.to_string(),
                Some(r#"{"max_output_tokens":100,"input":"x"}"#.to_string()),
            ),
            (
                Api::ChatCompletions,
                format!(r#"{{"max_completion_tokens":101,{M}}}"#),
                Some(format!(r#"{{"max_completion_tokens":100,{M}}}"#)),
            ),
        ];
        for (api, body, want) in openai {
            let endpoint = Endpoint {
                provider: Provider::OpenAi,
                api,
            };
            let cap = parse_request(endpoint, &body).unwrap().max_tokens;
            assert_eq!(cap.apply(&body, 100), want, "{body}");
        }
        // `{}` gets no trailing comma.
        let empty = TokenCap {
            stated: None,
            insert: Some((1, "\"max_tokens\":", ",")),
        };
        assert_eq!(
            empty.apply("{ }", 100).as_deref(),
            Some(r#"{"max_tokens":100 }"#)
        );

        let gemini = Endpoint {
            provider: Provider::Gemini,
            api: Api::GenerateContent,
        };
        const C: &str = r#""contents":[{"parts":[{"text":"x"}]}]"#;
        for (body, want) in [
            (
                format!("{{{C}}}"),
                format!(r#"{{"generationConfig":{{"maxOutputTokens":100}},{C}}}"#),
            ),
            (
                format!(r#"{{"generationConfig":{{"temperature":1}},{C}}}"#),
                format!(r#"{{"generationConfig":{{"maxOutputTokens":100,"temperature":1}},{C}}}"#),
            ),
            (
                format!(r#"{{"generationConfig":{{"maxOutputTokens":4096}},{C}}}"#),
                format!(r#"{{"generationConfig":{{"maxOutputTokens":100}},{C}}}"#),
            ),
        ] {
            let cap = parse_request(gemini, &body).unwrap().max_tokens;
            assert_eq!(cap.apply(&body, 100), Some(want), "{body}");
        }
        let anthropic = Endpoint {
            provider: Provider::Anthropic,
            api: Api::Messages,
        };
        let body = format!(r#"{{"max_tokens":1024,{M}}}"#);
        let cap = parse_request(anthropic, &body).unwrap().max_tokens;
        assert_eq!(
            cap.apply(&body, 64),
            Some(format!(r#"{{"max_tokens":64,{M}}}"#))
        );
    }

    #[test]
    fn models_named_in_paths() {
        let cases = [
            (
                "/v1beta/models/gemini-2.0-flash:generateContent",
                Some("gemini-2.0-flash"),
            ),
            (
                "/v1beta/models/gemini-1.5-pro:streamGenerateContent?alt=sse",
                Some("gemini-1.5-pro"),
            ),
            (
                "/openai/deployments/gpt4o/chat/completions?api-version=1",
                Some("gpt4o"),
            ),
            ("/v1/chat/completions", None),
            ("/v1/models/", None),
            ("/v1beta/models/:generateContent", None),
            // An escaped colon names the model as the plain one does.
            (
                "/v1beta/models/gemini-2.0-flash%3AgenerateContent",
                Some("gemini-2.0-flash"),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(model_in_path(&canonical_path(path)), want, "{path}");
        }
    }

    #[test]
    fn usage_of_every_provider() {
        let ep = |provider, api| Endpoint { provider, api };
        let cases = [
            (
                ep(Provider::OpenAi, Api::ChatCompletions),
                r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#,
                (Some(12), Some(5)),
            ),
            (
                ep(Provider::OpenAi, Api::Responses),
                r#"{"output":[],"usage":{"input_tokens":7,"output_tokens":3}}"#,
                (Some(7), Some(3)),
            ),
            (
                ep(Provider::OpenAi, Api::Embeddings),
                r#"{"data":[],"usage":{"prompt_tokens":4,"total_tokens":4}}"#,
                (Some(4), Some(0)),
            ),
            (
                ep(Provider::OpenAi, Api::ChatCompletions),
                r#"{"choices":[]}"#,
                (None, None),
            ),
            (
                ep(Provider::Anthropic, Api::Messages),
                r#"{"content":[],"usage":{"input_tokens":10,"cache_read_input_tokens":90,"output_tokens":2}}"#,
                (Some(100), Some(2)),
            ),
            (
                ep(Provider::Gemini, Api::GenerateContent),
                r#"{"candidates":[],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":6,"thoughtsTokenCount":4}}"#,
                (Some(8), Some(10)),
            ),
            (
                ep(Provider::Gemini, Api::GenerateContent),
                r#"[{"candidates":[]},{"candidates":[],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1}}]"#,
                (Some(3), Some(1)),
            ),
            (
                ep(Provider::Cohere, Api::Chat),
                r#"{"message":{},"usage":{"billed_units":{"input_tokens":5.0,"output_tokens":9},"tokens":{"input_tokens":70,"output_tokens":9}}}"#,
                (Some(70), Some(9)),
            ),
            (
                ep(Provider::Cohere, Api::Chat),
                r#"{"message":{},"usage":{"billed_units":{"input_tokens":5.0,"output_tokens":9}}}"#,
                (Some(5), Some(9)),
            ),
            (ep(Provider::Cohere, Api::Chat), "not json", (None, None)),
        ];
        for (endpoint, body, (input, output)) in cases {
            assert_eq!(
                answer_usage(endpoint, body),
                ReportedUsage { input, output },
                "{body}"
            );
        }
    }

    #[test]
    fn usage_of_every_stream() {
        let cases = [
            (
                Provider::OpenAi,
                r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
                (Some(3), Some(4)),
            ),
            (
                Provider::OpenAi,
                r#"{"choices":[{"index":0,"delta":{"content":"x"}}],"usage":null}"#,
                (None, None),
            ),
            (
                Provider::OpenAi,
                r#"{"type":"response.completed","response":{"usage":{"input_tokens":5,"output_tokens":6}}}"#,
                (Some(5), Some(6)),
            ),
            (
                Provider::Anthropic,
                r#"{"type":"message_start","message":{"usage":{"input_tokens":25,"output_tokens":1}}}"#,
                (Some(25), Some(1)),
            ),
            (
                Provider::Anthropic,
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}"#,
                (None, Some(15)),
            ),
            (
                Provider::Gemini,
                r#"{"candidates":[],"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":3}}"#,
                (Some(2), Some(3)),
            ),
            (
                Provider::Cohere,
                r#"{"type":"message-end","delta":{"usage":{"tokens":{"input_tokens":1,"output_tokens":2}}}}"#,
                (Some(1), Some(2)),
            ),
        ];
        for (provider, data, (input, output)) in cases {
            let endpoint = endpoint_for_path(match provider {
                Provider::OpenAi => "/v1/chat/completions",
                Provider::Anthropic => "/v1/messages",
                Provider::Gemini => "/v1beta/models/g:streamGenerateContent",
                Provider::Cohere => "/v2/chat",
            })
            .unwrap();
            let event = stream_event(endpoint, None, data);
            assert_eq!(event.usage, ReportedUsage { input, output }, "{data}");
        }
        // Anthropic's two reports together.
        let mut total = ReportedUsage {
            input: Some(25),
            output: Some(1),
        };
        total.merge(ReportedUsage {
            input: None,
            output: Some(15),
        });
        assert_eq!((total.input, total.output), (Some(25), Some(15)));
    }

    #[test]
    fn endpoints_by_path() {
        let cases = [
            (
                "/v1/chat/completions",
                Some((Provider::OpenAi, Api::ChatCompletions)),
            ),
            (
                "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21",
                Some((Provider::OpenAi, Api::ChatCompletions)),
            ),
            ("/v1/responses", Some((Provider::OpenAi, Api::Responses))),
            ("/v1/embeddings", Some((Provider::OpenAi, Api::Embeddings))),
            (
                "/v1/completions",
                Some((Provider::OpenAi, Api::Completions)),
            ),
            ("/v1/messages", Some((Provider::Anthropic, Api::Messages))),
            (
                "/v1beta/models/gemini-2.0-flash:generateContent",
                Some((Provider::Gemini, Api::GenerateContent)),
            ),
            (
                "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
                Some((Provider::Gemini, Api::GenerateContent)),
            ),
            ("/v2/chat", Some((Provider::Cohere, Api::Chat))),
            ("/v1/models", None),
            ("/healthz", None),
            // Spellings a provider or a proxy on the way reads as the plain path.
            (
                "/V1/Chat/Completions",
                Some((Provider::OpenAi, Api::ChatCompletions)),
            ),
            (
                "//v1//chat/completions/",
                Some((Provider::OpenAi, Api::ChatCompletions)),
            ),
            (
                "/v1/chat%2Fcompletions",
                Some((Provider::OpenAi, Api::ChatCompletions)),
            ),
            (
                "/v1beta/models/gemini-2.0-flash%3agenerateContent",
                Some((Provider::Gemini, Api::GenerateContent)),
            ),
            (
                "/v1beta/models/gemini-2.0-flash%3AstreamGenerateContent?alt=sse",
                Some((Provider::Gemini, Api::GenerateContent)),
            ),
            ("/v1/messages%3F", None),
        ];
        for (path, want) in cases {
            let got = endpoint_for_path(&canonical_path(path)).map(|e| (e.provider, e.api));
            assert_eq!(got, want, "{path}");
        }
    }
}
