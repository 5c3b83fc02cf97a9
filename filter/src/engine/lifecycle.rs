//! The order of the pipeline, one method per proxy callback: request headers, request body,
//! judge answer, response headers, response body, end of stream. Each says what to do with
//! what the proxy handed over; the stages it calls live in their own files.

use super::{AnswerMode, Decision, Engine, Exchange, HeaderEdits, Host, JudgeReply, Metric};
use super::{RequestBody, BODY_TOO_LARGE, MALFORMED_BODY, UNREADABLE};
use crate::audit;
use crate::decompress::{Coding, DecodeError};
use crate::header_map::Headers;
use crate::policy::Action;
use crate::providers::ParseError;

/// gRPC status UNAVAILABLE: what a judge call that could not be sent counts as.
const GRPC_UNAVAILABLE: u32 = 14;

impl Engine {
    /// Request headers: starts an exchange if this is an LLM API request with a body, whatever
    /// its method (a provider may read a PUT's body as it reads a POST's), else `None` (the
    /// stream is left alone). The decision is `Forward`, or `Refuse` when the body will not be
    /// read and the caller's budget is spent.
    pub fn request_headers<H: Host>(
        &self,
        headers: &Headers,
        end_of_stream: bool,
        host: &mut H,
    ) -> Option<(Exchange, HeaderEdits, Decision)> {
        if end_of_stream {
            return None;
        }
        let mut ex = self.start(&headers.lossy(":path")?)?;
        ex.metrics.push(Metric::Request);
        ex.head.source = host.property(&["source", "address"]);
        ex.head.authority = headers.owned(":authority");
        // Read at most once: the audit's user and the access identity may both want it.
        let mut principal = None;
        let mut principal_once = |host: &mut H| {
            principal
                .get_or_insert_with(|| host.property(&["source", "principal"]))
                .clone()
        };
        let user = match &self.config.audit.user_header {
            Some(name) => headers.owned(name),
            None => principal_once(host),
        };
        ex.head.user_id = user.map(|u| audit::hash_user(&self.config.audit.salt, &u));
        if self.config.controls_access() {
            ex.identity = match &self.config.identity_header {
                Some(name) => headers
                    .get(name)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned),
                None => principal_once(host),
            };
        }
        ex.head.request_id = match headers.owned("x-request-id") {
            Some(id) => id,
            None => format!("sluice-{:x}-{}", host.now().as_nanos(), host.stream_id()),
        };
        ex.head.encoding = headers
            .get("content-encoding")
            .filter(|e| !e.eq_ignore_ascii_case("identity"))
            .map(str::to_owned);
        let present = |name: &'static str| headers.get_raw(name).is_some().then_some(name);
        let mut edits = HeaderEdits::default();
        if self.inspects_request(&ex) {
            // The body may be rewritten, so its length is no longer known.
            edits.remove.extend(present("content-length"));
            // A compressed body the filter can read goes on decoded, as it was inspected.
            ex.head.decode = ex.head.encoding.as_deref().and_then(Coding::from_header);
            if ex.head.decode.is_some() {
                edits.remove.push("content-encoding");
            }
        } else {
            ex.request_body = RequestBody::PassThrough;
            // The body will not be read: the budget is settled now, before any byte goes out.
            if let Some(refused) = self.admit_now(&mut ex, host) {
                self.answered_locally(&mut ex, host);
                return Some((ex, edits, refused));
            }
        }
        // Answers must come back uncompressed to be inspected and restored.
        edits.remove.extend(present("accept-encoding"));
        Some((ex, edits, Decision::Forward))
    }

    /// A chunk of the request body (`size`: all bytes buffered so far). `Buffer` until the body
    /// is whole; then the request stage, admission and perhaps the judge decide.
    pub fn request_body<H: Host>(
        &self,
        ex: &mut Exchange,
        size: usize,
        end_of_stream: bool,
        host: &mut H,
    ) -> Decision {
        if ex.request_body != RequestBody::Inspect {
            // Streamed through chunk by chunk: its size stands in for its text in estimates.
            ex.usage.request_body_bytes += size;
            return Decision::Forward;
        }
        let limit = self.config.max_body_bytes;
        if !end_of_stream && size <= limit {
            return Decision::Buffer;
        }
        ex.request_body = RequestBody::Decided;
        let decision = if size > limit {
            self.cannot_inspect(ex, ParseError::TooLarge { limit })
        } else if let Some(coding) = ex.head.decode {
            match host.request_body(size) {
                Some(body) => self.inspect_compressed(ex, &body, coding),
                None => self.refuse_undecoded(ex, DecodeError::Corrupt(coding)),
            }
        } else if let Some(encoding) = ex.head.encoding.clone() {
            self.cannot_inspect(ex, ParseError::Compressed(encoding))
        } else {
            match host.request_body(size) {
                Some(body) => self.inspect_request(ex, &body),
                None => Decision::Forward,
            }
        };
        // Allowed so far: charge the request to the caller's budget (or refuse it).
        let decision = match decision {
            Decision::Refuse(_) => decision,
            allowed => self.admit_now(ex, host).unwrap_or(allowed),
        };
        match decision {
            Decision::Refuse(_) => self.answered_locally(ex, host),
            Decision::AskJudge { .. } => ex.judge_sent = Some(host.now()),
            _ => {}
        }
        decision
    }

    /// Decodes a compressed body, inspects it, and sends it on decoded: its `content-encoding`
    /// was removed at the headers, so whatever policy says, the original bytes cannot follow.
    fn inspect_compressed(&self, ex: &mut Exchange, body: &[u8], coding: Coding) -> Decision {
        let decoded = match crate::decompress::decode(body, coding, self.config.max_body_bytes) {
            Ok(decoded) => decoded,
            Err(e) => return self.refuse_undecoded(ex, e),
        };
        match self.inspect_request(ex, &decoded) {
            Decision::Forward => Decision::Rewrite(decoded),
            Decision::AskJudge { rewrite, call } => Decision::AskJudge {
                rewrite: Some(rewrite.unwrap_or(decoded)),
                call,
            },
            other => other,
        }
    }

    /// A body announced as compressed that does not decode within the limit: refused whatever
    /// `on_parse_error` says (passing it would send undecoded bytes without their coding).
    fn refuse_undecoded(&self, ex: &mut Exchange, err: DecodeError) -> Decision {
        let (status, name) = match err {
            DecodeError::TooLarge { .. } => (413, BODY_TOO_LARGE),
            DecodeError::Corrupt(_) => (400, MALFORMED_BODY),
        };
        self.refuse_unreadable(ex, status, name, &err)
    }

    /// Request trailers: the body (`size` bytes buffered) is complete, though no body callback
    /// said so (HTTP/2 ends such a request with its trailers). Decided as at a body's end.
    pub fn request_trailers<H: Host>(
        &self,
        ex: &mut Exchange,
        size: usize,
        host: &mut H,
    ) -> Decision {
        if ex.request_body != RequestBody::Inspect {
            return Decision::Forward;
        }
        self.request_body(ex, size, true, host)
    }

    /// The judge call of `AskJudge` ended (or was never sent): `Forward` resumes the request
    /// (or lets it go on, when the call failed synchronously), `Refuse` answers it.
    pub fn judge_answered<H: Host>(
        &self,
        ex: &mut Exchange,
        reply: JudgeReply,
        host: &mut H,
    ) -> Decision {
        let (grpc_status, message, latency_ms) = match reply {
            JudgeReply::NotSent => (GRPC_UNAVAILABLE, &[][..], None),
            JudgeReply::Answered {
                grpc_status,
                message,
            } => {
                let latency = ex.judge_sent.map(|sent| host.now().saturating_sub(sent));
                (grpc_status, message, latency.map(|l| l.as_millis() as u64))
            }
        };
        ex.metrics.push(Metric::Judge {
            latency_ms,
            failed: grpc_status != 0,
        });
        let decision = self.judge_outcome(ex, grpc_status, message);
        if let Decision::Refuse(_) = decision {
            self.answered_locally(ex, host);
        }
        decision
    }

    /// Response headers: picks how the answer body is handled (inspected whole, streamed,
    /// only counted, or passed) and says which headers to change. `read` fetches the headers
    /// (a host call), skipped for an exchange already answered locally.
    pub fn response_headers<H: Host>(
        &self,
        ex: &mut Exchange,
        read: impl FnOnce() -> Headers,
        end_of_stream: bool,
        host: &mut H,
    ) -> HeaderEdits {
        if ex.refused {
            return HeaderEdits::default();
        }
        let headers = read();
        let status = headers.get(":status").and_then(|s| s.parse::<u16>().ok());
        ex.usage.answer_status(status.unwrap_or(0));
        self.record_audit(ex, host);
        let mut edits = HeaderEdits {
            remove: Vec::new(),
            set: self.verdict_headers(ex),
        };
        let content_type = headers.get("content-type").unwrap_or_default();
        let encoded = headers
            .get("content-encoding")
            .is_some_and(|e| e != "identity");
        if end_of_stream || encoded {
            return edits;
        }
        let event_stream = content_type.starts_with("text/event-stream");
        let json = content_type.contains("json");
        let inspected = self.inspects_answer(ex);
        ex.answer = match (event_stream, json, inspected) {
            (true, _, true) => AnswerMode::Stream,
            (true, _, false) => AnswerMode::ObserveStream,
            (false, true, true) => AnswerMode::Buffer,
            (false, true, false) => AnswerMode::ObserveWhole,
            (false, false, _) => AnswerMode::Pass,
        };
        if matches!(ex.answer, AnswerMode::Stream | AnswerMode::Buffer)
            && headers.get_raw("content-length").is_some()
        {
            edits.remove.push("content-length");
        }
        edits
    }

    /// A chunk of the answer body (`size`: all bytes buffered so far, or this chunk when the
    /// answer is not buffered).
    pub fn response_body<H: Host>(
        &self,
        ex: &mut Exchange,
        size: usize,
        end_of_stream: bool,
        host: &mut H,
    ) -> Decision {
        let decision = self.answer_chunk(ex, size, end_of_stream, host);
        if end_of_stream {
            // Before the last bytes reach the client, so its next request sees the charge.
            self.settle_tokens(ex, host);
            // Output checks may have added to the verdict.
            self.record_audit(ex, host);
        }
        decision
    }

    fn answer_chunk<H: Host>(
        &self,
        ex: &mut Exchange,
        size: usize,
        end_of_stream: bool,
        host: &mut H,
    ) -> Decision {
        let limit = self.config.max_body_bytes;
        match ex.answer {
            AnswerMode::Pass => Decision::Forward,
            AnswerMode::Stream => {
                let Some(chunk) = read_answer(host, size) else {
                    log::error!("request {}: cannot read answer chunk", ex.head.request_id);
                    ex.answer = AnswerMode::Pass;
                    return Decision::Forward;
                };
                let out = self.stream_chunk(ex, &chunk, end_of_stream);
                if out == chunk {
                    Decision::Forward
                } else {
                    Decision::Rewrite(out)
                }
            }
            AnswerMode::ObserveStream | AnswerMode::ObserveWhole => {
                let Some(chunk) = read_answer(host, size) else {
                    log::warn!("request {}: answer not counted", ex.head.request_id);
                    ex.answer = AnswerMode::Pass;
                    return Decision::Forward;
                };
                if ex.answer == AnswerMode::ObserveStream {
                    self.observe_stream(ex, &chunk, end_of_stream);
                } else if ex.observed.len() + chunk.len() > limit {
                    // Too large to copy: its usage is estimated from what was seen (nothing).
                    ex.observed = Vec::new();
                    ex.answer = AnswerMode::Pass;
                } else {
                    ex.observed.extend_from_slice(&chunk);
                    if end_of_stream {
                        let observed = std::mem::take(&mut ex.observed);
                        self.observe_answer(ex, &observed);
                    }
                }
                Decision::Forward
            }
            AnswerMode::Buffer if size > limit => {
                log::warn!(
                    "request {}: answer over {limit} bytes passed uninspected",
                    ex.head.request_id
                );
                ex.answer = AnswerMode::Pass;
                Decision::Forward
            }
            AnswerMode::Buffer if !end_of_stream => Decision::Buffer,
            AnswerMode::Buffer => {
                ex.answer = AnswerMode::Pass;
                match host.answer_body(size) {
                    Some(body) => self.inspect_answer(ex, &body),
                    None => Decision::Forward,
                }
            }
        }
    }

    /// The stream ended (Envoy's `on_log`): charges what was counted if the answer was cut
    /// short, logs a verdict that is not `allow`, and hands over the exchange's metric events.
    pub fn finish<H: Host>(&self, ex: &mut Exchange, host: &mut H) -> Vec<Metric> {
        self.settle_tokens(ex, host);
        let verdict = &ex.verdict;
        let mut metrics = std::mem::take(&mut ex.metrics);
        metrics.push(Metric::Action(verdict.action));
        metrics.push(Metric::Exchange {
            provider: ex.endpoint.provider.name(),
            model: ex.model.clone(),
            usage: ex.usage.usage(),
        });
        metrics.extend(
            verdict
                .detections
                .iter()
                .map(|&name| Metric::Detection(name)),
        );
        if verdict.detections.iter().any(|d| UNREADABLE.contains(d)) {
            metrics.push(Metric::ParseError);
        }
        if verdict.action != Action::Allow {
            log::info!(
                "request {} {} {}: action={} detections={}",
                ex.head.request_id,
                ex.endpoint.provider.name(),
                self.route_name(ex).unwrap_or("-"),
                verdict.action.name(),
                verdict.detections.join(",")
            );
        }
        metrics
    }

    /// Charges one request to the caller's budget when one applies: `Some(Refuse)` when spent.
    /// Without a budget no clock or shared data is read (host calls).
    fn admit_now<H: Host>(&self, ex: &mut Exchange, host: &mut H) -> Option<Decision> {
        self.budget_limits(ex)?;
        let now_s = host.now().as_secs();
        match self.admit(ex, host.store(), now_s) {
            Decision::Forward => None,
            refused => Some(refused),
        }
    }

    /// Charges the answer's tokens to the caller's budget, once, when usage is known.
    fn settle_tokens<H: Host>(&self, ex: &mut Exchange, host: &mut H) {
        if ex.tokens_charged || ex.usage.usage().is_none() {
            return;
        }
        ex.tokens_charged = true;
        if self.tokens_to_charge(ex).is_some() {
            let now_s = host.now().as_secs();
            self.charge_tokens(ex, host.store(), now_s);
        }
    }

    /// The exchange is answered locally: its audit event is written before the answer goes.
    fn answered_locally<H: Host>(&self, ex: &mut Exchange, host: &mut H) {
        ex.refused = true;
        self.record_audit(ex, host);
    }

    fn record_audit<H: Host>(&self, ex: &Exchange, host: &mut H) {
        let ctx = audit::Context {
            request_id: &ex.head.request_id,
            path: &ex.head.path,
            user_id: ex.head.user_id.as_deref(),
            source: ex.head.source.as_deref(),
            destination: ex.head.authority.as_deref(),
            route: self.route_name(ex),
            now_ms: host.now().as_millis() as u64,
        };
        host.record_audit(&audit::event(ex, &ctx));
    }
}

/// The answer chunk, without a host call for an empty one.
fn read_answer<H: Host>(host: &mut H, size: usize) -> Option<Vec<u8>> {
    if size == 0 {
        return Some(Vec::new());
    }
    host.answer_body(size)
}
