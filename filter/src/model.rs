//! The provider-neutral model of an LLM exchange: which texts a request carries and who wrote them.
//! Provider codecs fill it; detectors and policy read it.

use std::ops::Range;

/// Who a text in a request or answer speaks for. Detectors weigh a finding by it: an instruction
/// inside a tool result or retrieved document is an indirect injection, in a user turn a direct one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    System,
    User,
    Assistant,
    /// A tool or function result handed back to the model.
    Tool,
    /// Retrieved or embedded content (RAG documents, embeddings input).
    Document,
}

/// One text of a body, with the byte range of its JSON string literal (quotes included) so the
/// body can be rewritten in place, leaving every other byte as it was.
#[derive(Clone, Debug, PartialEq)]
pub struct TextSlot {
    pub role: Role,
    pub literal: Range<usize>,
    pub text: String,
}

impl Role {
    /// Maps a provider's role name; unknown roles count as user text, the most scrutinised kind.
    pub fn from_name(name: &str) -> Role {
        match name {
            "system" | "developer" => Role::System,
            "assistant" | "model" | "chatbot" => Role::Assistant,
            "tool" | "function" => Role::Tool,
            _ => Role::User,
        }
    }
}
