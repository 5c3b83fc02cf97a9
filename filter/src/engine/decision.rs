//! The contract between the pipeline and the proxy: what the engine tells the adapter to do
//! ([`Decision`], [`HeaderEdits`], [`Metric`]) and what it may ask of the host ([`Host`]).
//! The adapter executes these and decides nothing.

use std::time::Duration;

use crate::budget::Store;
use crate::policy::Action;
use crate::usage::Usage;

/// What to do with the body (or headers) the proxy just handed over.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Let the bytes go on as they are.
    Forward,
    /// Hold them: the engine needs the body whole before it decides.
    Buffer,
    /// Replace the bytes held so far by these, then go on.
    Rewrite(Vec<u8>),
    /// Answer the client locally and send nothing upstream.
    Refuse(Refusal),
    /// Send `call` to the judge and hold the request until it answers (see
    /// [`crate::engine::Engine::judge_answered`]); `rewrite` first, if any.
    AskJudge {
        rewrite: Option<Vec<u8>>,
        call: JudgeCall,
    },
}

/// A local answer in the provider's error format.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

/// One `sluice.judge.v1.Judge/Classify` call.
#[derive(Debug, PartialEq)]
pub struct JudgeCall {
    pub cluster: String,
    pub timeout: Duration,
    /// The encoded `ClassifyRequest`.
    pub message: Vec<u8>,
}

/// How a judge call ended, as the proxy saw it.
#[derive(Debug, Clone, Copy)]
pub enum JudgeReply<'a> {
    /// The call could not be dispatched (an unknown cluster fails synchronously).
    NotSent,
    /// The call ended with this gRPC status and, when OK, the `ClassifyResponse` bytes.
    Answered { grpc_status: u32, message: &'a [u8] },
}

/// Header changes to make before the headers go on.
#[derive(Debug, Default, PartialEq)]
pub struct HeaderEdits {
    /// Headers to remove (only those present: a removal is a host call).
    pub remove: Vec<&'static str>,
    /// Headers to set.
    pub set: Vec<(&'static str, String)>,
}

/// A stats event of one exchange. The engine collects them and hands them over once, when the
/// exchange ends, so the adapter increments each counter once per exchange.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    Request,
    Action(Action),
    /// A finished exchange by provider and model, with its tokens.
    Exchange {
        provider: &'static str,
        model: Option<String>,
        usage: Option<Usage>,
    },
    Detection(&'static str),
    ParseError,
    /// Shared data failed while checking or charging a budget (the request went through).
    BudgetError,
    /// A judge call ended: its round trip (none when it was not sent) and whether it failed.
    Judge {
        latency_ms: Option<u64>,
        failed: bool,
    },
}

/// What the engine reads from the proxy on demand. Each is a host call, so the engine asks
/// only when a configured check needs the answer.
pub trait Host {
    type Store: Store;
    /// The host's clock since the Unix epoch; zero if it cannot be read.
    fn now(&mut self) -> Duration;
    /// The proxy's id of this stream, for request ids the filter makes up.
    fn stream_id(&self) -> u32;
    /// A string property of the stream (`["source", "address"]`), `None` when absent or empty.
    fn property(&mut self, path: &[&str]) -> Option<String>;
    /// The shared data budgets are counted in.
    fn store(&mut self) -> &mut Self::Store;
    /// The request body buffered so far; `None` when it cannot be read.
    fn request_body(&mut self, size: usize) -> Option<Vec<u8>>;
    /// The answer body buffered so far (or the current chunk); `None` when it cannot be read.
    fn answer_body(&mut self, size: usize) -> Option<Vec<u8>>;
    /// Hands the exchange's audit event over (Envoy filter state `wasm.sluice_audit`); written
    /// again as the verdict grows, the last one stands.
    fn record_audit(&mut self, event: &str);
}
