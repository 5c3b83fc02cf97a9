//! One HTTP stream: buffer an LLM request body, let the engine decide, apply the decision;
//! then buffer the JSON answer to restore placeholders and run the output checks.

use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action as Flow, BufferType, MapType};

use crate::audit;
use crate::engine::{BodyDecision, Engine, Exchange};
use crate::judge;
use crate::policy::Action;
use crate::providers::ParseError;

use super::headers;
use super::metrics::Metrics;
use super::shared::HostStore;
use crate::header_map::Headers;

/// How the answer body is handled.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Forwarded as it comes.
    Pass,
    /// Buffered whole, then inspected and possibly rewritten.
    Buffer,
    /// Server-sent events, processed chunk by chunk as they arrive.
    Stream,
    /// Passed on as it comes; a copy is kept to read the token usage at the end.
    ObserveWhole,
    /// Server-sent events passed on as they come; framed on the side to count tokens.
    ObserveStream,
}

pub struct Stream {
    context_id: u32,
    engine: Rc<Engine>,
    metrics: Rc<Metrics>,
    exchange: Option<Exchange>,
    request_id: String,
    /// The request body carried a `content-encoding` the filter cannot read.
    request_encoding: Option<String>,
    request_inspected: bool,
    blocked: bool,
    answer: Answer,
    /// The judge call this request waits for.
    judge_token: Option<u32>,
    /// When that call was sent, for the latency histogram.
    judge_sent: Duration,
    path: String,
    /// The caller's identity for audit events, unhashed (hashed when the event is written).
    user: Option<String>,
    /// The downstream peer (`ip:port`) and the request's `:authority`, for audit events.
    source: Option<String>,
    authority: Option<String>,
    /// Copy of an observed whole answer, for its usage.
    observed: Vec<u8>,
    /// The answer's tokens were charged to the caller's budget.
    tokens_charged: bool,
}

impl Stream {
    pub fn new(context_id: u32, engine: Rc<Engine>, metrics: Rc<Metrics>) -> Stream {
        Stream {
            context_id,
            engine,
            metrics,
            exchange: None,
            request_id: String::new(),
            request_encoding: None,
            request_inspected: false,
            blocked: false,
            answer: Answer::Pass,
            judge_token: None,
            judge_sent: Duration::ZERO,
            path: String::new(),
            user: None,
            source: None,
            authority: None,
            observed: Vec::new(),
            tokens_charged: false,
        }
    }

    /// Sends the exchange's judge request, if any. Returns true when the request must wait.
    fn call_judge(&mut self) -> bool {
        let engine = Rc::clone(&self.engine);
        let Some(ex) = self.exchange.as_mut() else {
            return false;
        };
        let Some(message) = ex.judge_request.take() else {
            return false;
        };
        let Some((cluster, timeout_ms)) = engine.judge_target(ex) else {
            return false;
        };
        let sent = hostcalls::dispatch_grpc_call(
            cluster,
            judge::SERVICE,
            judge::METHOD,
            Vec::new(),
            Some(&message),
            Duration::from_millis(timeout_ms),
        );
        match sent {
            Ok(token) => {
                self.judge_token = Some(token);
                self.judge_sent = since_epoch();
                true
            }
            Err(e) => {
                // An unknown cluster fails here, synchronously: same policy as a dead judge.
                log::warn!(
                    "request {}: judge call to `{cluster}` not sent: {e:?}",
                    self.request_id
                );
                const UNAVAILABLE: u32 = 14;
                self.metrics.judge(None, true);
                let decision = engine.judge_answered(ex, UNAVAILABLE, &[], &self.request_id);
                if let BodyDecision::Block { status, body, .. } = decision {
                    self.answer_locally(status, &body, None);
                    return true;
                }
                false
            }
        }
    }

    fn fresh_request_id(&self) -> String {
        let nanos = since_epoch().as_nanos();
        format!("sluice-{nanos:x}-{}", self.context_id)
    }

    /// Hands the exchange's audit event to Envoy (filter state `wasm.sluice_audit`), where the
    /// access log picks it up. Written again as the verdict grows; the last one stands.
    fn record_audit(&self) {
        let Some(ex) = &self.exchange else {
            return;
        };
        let now_ms = since_epoch().as_millis() as u64;
        let ctx = audit::Context {
            request_id: &self.request_id,
            path: &self.path,
            user: self.user.as_deref(),
            source: self.source.as_deref(),
            destination: self.authority.as_deref(),
            route: self.engine.route_name(ex),
            now_ms,
        };
        let event = audit::event(ex, &ctx, &self.engine.config.audit.salt);
        if let Err(e) = hostcalls::set_property(vec!["sluice_audit"], Some(event.as_bytes())) {
            log::warn!(
                "request {}: audit event not recorded: {e:?}",
                self.request_id
            );
        }
    }

    /// Charges the request to its caller's budget in shared data, or refuses it.
    fn admit(&mut self) -> BodyDecision {
        let engine = Rc::clone(&self.engine);
        let Some(ex) = self.exchange.as_mut() else {
            return BodyDecision::Pass;
        };
        if engine.budget_limits(ex).is_none() {
            // No budget: nothing to charge, and no clock to read (a host call).
            return BodyDecision::Pass;
        }
        let decision = engine.admit(
            ex,
            &mut HostStore,
            since_epoch().as_secs(),
            &self.request_id,
        );
        if ex.verdict.detections.contains(&crate::budget::BUDGET_ERROR) {
            self.metrics.budget_error();
        }
        decision
    }

    /// Charges the answer's tokens to the caller's budget, once.
    fn charge_tokens(&mut self) {
        if self.tokens_charged {
            return;
        }
        let Some(ex) = &self.exchange else {
            return;
        };
        if ex.usage.usage().is_none() {
            return;
        }
        self.tokens_charged = true;
        if self
            .engine
            .budget_limits(ex)
            .is_none_or(|l| l.tokens.is_none())
        {
            // No token budget: nothing to charge, and no clock to read (a host call).
            return;
        }
        if self
            .engine
            .charge_tokens(ex, &mut HostStore, since_epoch().as_secs())
        {
            self.metrics.budget_error();
        }
    }

    /// Sends the local answer for a blocked exchange.
    fn answer_locally(&mut self, status: u16, body: &str, retry_after: Option<u64>) {
        self.blocked = true;
        self.record_audit();
        let mut headers = vec![
            ("content-type", "application/json".to_owned()),
            ("x-request-id", self.request_id.clone()),
        ];
        if let Some(seconds) = retry_after {
            headers.push(("retry-after", seconds.to_string()));
        }
        headers.extend(self.verdict_headers());
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Err(e) =
            hostcalls::send_http_response(u32::from(status), headers, Some(body.as_bytes()))
        {
            log::error!("request {}: local reply failed: {e:?}", self.request_id);
        }
    }

    fn verdict_headers(&self) -> Vec<(&'static str, String)> {
        let Some(ex) = &self.exchange else {
            return Vec::new();
        };
        if !self.engine.config.expose_verdict_headers {
            return Vec::new();
        }
        vec![
            ("x-sluice-action", ex.verdict.action.name().to_owned()),
            ("x-sluice-detections", ex.verdict.detections.join(",")),
        ]
    }

    /// Passes one chunk of a streamed answer through the engine; never holds the stream.
    fn stream_answer(&mut self, size: usize, end_of_stream: bool) -> Flow {
        let engine = Rc::clone(&self.engine);
        let Some(ex) = self.exchange.as_mut() else {
            return Flow::Continue;
        };
        let chunk = match hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size) {
            Ok(chunk) => chunk.unwrap_or_default(),
            Err(e) => {
                log::error!(
                    "request {}: cannot read answer chunk: {e:?}",
                    self.request_id
                );
                self.answer = Answer::Pass;
                return Flow::Continue;
            }
        };
        let out = engine.stream_chunk(ex, &chunk, end_of_stream, &self.request_id);
        if out != chunk {
            if let Err(e) = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, &out) {
                log::error!(
                    "request {}: cannot rewrite answer chunk: {e:?}",
                    self.request_id
                );
            }
        }
        Flow::Continue
    }

    /// Reads a chunk of an answer the filter only counts tokens in; never holds it.
    fn observe_answer(&mut self, size: usize, end_of_stream: bool) -> Flow {
        let engine = Rc::clone(&self.engine);
        let Some(ex) = self.exchange.as_mut() else {
            return Flow::Continue;
        };
        let chunk = if size > 0 {
            match hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size) {
                Ok(chunk) => chunk.unwrap_or_default(),
                Err(e) => {
                    log::warn!("request {}: answer not counted: {e:?}", self.request_id);
                    self.answer = Answer::Pass;
                    return Flow::Continue;
                }
            }
        } else {
            Vec::new()
        };
        if self.answer == Answer::ObserveStream {
            engine.observe_stream(ex, &chunk, end_of_stream);
            return Flow::Continue;
        }
        if self.observed.len() + chunk.len() > engine.config.max_body_bytes {
            // Too large to copy: its usage is estimated from what was seen (nothing).
            self.observed = Vec::new();
            self.answer = Answer::Pass;
            return Flow::Continue;
        }
        self.observed.extend_from_slice(&chunk);
        if end_of_stream {
            engine.observe_answer(ex, &std::mem::take(&mut self.observed));
        }
        Flow::Continue
    }

    /// The answer body, per how the response headers said to handle it.
    fn answer_body(&mut self, size: usize, end_of_stream: bool) -> Flow {
        match self.answer {
            Answer::Stream => return self.stream_answer(size, end_of_stream),
            Answer::ObserveWhole | Answer::ObserveStream => {
                return self.observe_answer(size, end_of_stream)
            }
            Answer::Pass | Answer::Buffer => {}
        }
        if self.answer != Answer::Buffer {
            return Flow::Continue;
        }
        if size > self.engine.config.max_body_bytes {
            log::warn!(
                "request {}: answer over {} bytes passed uninspected",
                self.request_id,
                self.engine.config.max_body_bytes
            );
            self.answer = Answer::Pass;
            return Flow::Continue;
        }
        if !end_of_stream {
            return Flow::Pause;
        }
        self.answer = Answer::Pass;
        let (engine, request_id) = (Rc::clone(&self.engine), self.request_id.clone());
        let Some(ex) = self.exchange.as_mut() else {
            return Flow::Continue;
        };
        let decision = match hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size) {
            Ok(body) => engine.inspect_answer(ex, &body.unwrap_or_default(), &request_id),
            Err(_) => BodyDecision::Pass,
        };
        self.apply(BufferType::HttpResponseBody, size, decision)
    }

    fn decide_request(&mut self, size: usize) -> BodyDecision {
        let (engine, request_id) = (Rc::clone(&self.engine), self.request_id.clone());
        let Some(ex) = self.exchange.as_mut() else {
            return BodyDecision::Pass;
        };
        if size > engine.config.max_body_bytes {
            let limit = engine.config.max_body_bytes;
            return engine.cannot_inspect(ex, ParseError::TooLarge { limit }, &request_id);
        }
        if let Some(encoding) = self.request_encoding.clone() {
            return engine.cannot_inspect(ex, ParseError::Compressed(encoding), &request_id);
        }
        match hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size) {
            Ok(body) => engine.inspect_request(ex, &body.unwrap_or_default(), &request_id),
            Err(e) => {
                log::error!("request {request_id}: cannot read body: {e:?}");
                BodyDecision::Pass
            }
        }
    }

    fn apply(&mut self, buffer: BufferType, size: usize, decision: BodyDecision) -> Flow {
        match decision {
            BodyDecision::Pass => Flow::Continue,
            BodyDecision::Rewrite(body) => {
                if let Err(e) = hostcalls::set_buffer(buffer, 0, size, &body) {
                    log::error!("request {}: rewrite failed: {e:?}", self.request_id);
                }
                Flow::Continue
            }
            BodyDecision::Block {
                status,
                body,
                retry_after,
            } => match buffer {
                BufferType::HttpRequestBody => {
                    self.answer_locally(status, &body, retry_after);
                    Flow::Pause
                }
                // The answer's status line is already on its way: replace the body instead.
                _ => {
                    if let Err(e) = hostcalls::set_buffer(buffer, 0, size, body.as_bytes()) {
                        log::error!("request {}: answer block failed: {e:?}", self.request_id);
                    }
                    Flow::Continue
                }
            },
        }
    }
}

/// The mTLS peer's principal (the calling workload under Istio), if any.
fn source_principal() -> Option<String> {
    hostcalls::get_property(vec!["source", "principal"])
        .ok()
        .flatten()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|p| !p.is_empty())
}

/// The host's clock; zero if it cannot be read (ids and timestamps then degrade, nothing fails).
fn since_epoch() -> Duration {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default()
}

/// Removes `name` from the host's `map` if `headers` (read from it) has it: a removal is a
/// host call, and most requests carry no `accept-encoding` or `content-length` to remove.
fn remove_header(map: MapType, headers: &Headers, name: &str) {
    if headers.get_raw(name).is_some() {
        let _ = hostcalls::set_map_value(map, name, None);
    }
}

impl Context for Stream {
    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        if self.judge_token != Some(token) {
            return;
        }
        self.judge_token = None;
        let latency = since_epoch().saturating_sub(self.judge_sent);
        self.metrics
            .judge(Some(latency.as_millis() as u64), status != 0);
        let message = if size > 0 {
            hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size)
                .ok()
                .flatten()
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let engine = Rc::clone(&self.engine);
        let Some(ex) = self.exchange.as_mut() else {
            return;
        };
        match engine.judge_answered(ex, status, &message, &self.request_id) {
            BodyDecision::Block { status, body, .. } => self.answer_locally(status, &body, None),
            _ => {
                if let Err(e) = hostcalls::resume_http_request() {
                    log::error!("request {}: cannot resume: {e:?}", self.request_id);
                }
            }
        }
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Flow {
        let map = MapType::HttpRequestHeaders;
        if end_of_stream {
            return Flow::Continue;
        }
        // One host call for every header this callback reads.
        let headers = headers::fetch(map);
        if headers.get(":method") != Some("POST") {
            return Flow::Continue;
        }
        let Some(path) = headers.lossy(":path") else {
            return Flow::Continue;
        };
        let Some(exchange) = self.engine.start(&path) else {
            return Flow::Continue;
        };
        self.exchange = Some(exchange);
        self.path = path;
        self.source = hostcalls::get_property(vec!["source", "address"])
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok());
        self.authority = headers.owned(":authority");
        // Read at most once: the audit's user and the access identity may both want it.
        let mut principal = None;
        let mut principal_once = || principal.get_or_insert_with(source_principal).clone();
        self.user = match &self.engine.config.audit.user_header {
            Some(name) => headers.owned(name),
            None => principal_once(),
        };
        if self.engine.config.controls_access() {
            let identity = match &self.engine.config.identity_header {
                Some(name) => headers
                    .get(name)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned),
                None => principal_once(),
            };
            if let Some(ex) = self.exchange.as_mut() {
                ex.identity = identity;
            }
        }
        self.metrics.request();
        self.request_id = headers
            .owned("x-request-id")
            .unwrap_or_else(|| self.fresh_request_id());
        self.request_encoding = headers
            .get("content-encoding")
            .filter(|e| !e.eq_ignore_ascii_case("identity"))
            .map(str::to_owned);
        let inspects_request = self
            .exchange
            .as_ref()
            .is_some_and(|ex| self.engine.inspects_request(ex));
        if inspects_request {
            // The body may be rewritten, so its length is no longer known.
            remove_header(map, &headers, "content-length");
        } else {
            self.request_inspected = true;
            // The body will not be read: the budget is settled now, before any byte goes out.
            if let BodyDecision::Block {
                status,
                body,
                retry_after,
            } = self.admit()
            {
                self.answer_locally(status, &body, retry_after);
                return Flow::Pause;
            }
        }
        // Answers must come back uncompressed to be inspected and restored.
        remove_header(map, &headers, "accept-encoding");
        Flow::Continue
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Flow {
        let Some(ex) = self.exchange.as_mut() else {
            return Flow::Continue;
        };
        if self.request_inspected {
            // Streamed through chunk by chunk: its size stands in for its text in estimates.
            ex.usage.request_body_bytes += size;
            return Flow::Continue;
        }
        let over_limit = size > self.engine.config.max_body_bytes;
        if !end_of_stream && !over_limit {
            return Flow::Pause;
        }
        self.request_inspected = true;
        let decision = match self.decide_request(size) {
            // Allowed so far: charge the request to the caller's budget (or refuse it).
            BodyDecision::Pass => self.admit(),
            BodyDecision::Rewrite(body) => match self.admit() {
                BodyDecision::Pass => BodyDecision::Rewrite(body),
                refused => refused,
            },
            block => block,
        };
        match self.apply(BufferType::HttpRequestBody, size, decision) {
            Flow::Continue if self.call_judge() => Flow::Pause,
            flow => flow,
        }
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Flow {
        if self.blocked {
            return Flow::Continue;
        }
        let map = MapType::HttpResponseHeaders;
        let headers = headers::fetch(map);
        let status = headers.get(":status").and_then(|s| s.parse::<u16>().ok());
        match self.exchange.as_mut() {
            Some(ex) => ex.usage.answer_status(status.unwrap_or(0)),
            None => return Flow::Continue,
        }
        self.record_audit();
        let Some(ex) = &self.exchange else {
            return Flow::Continue;
        };
        for (name, value) in self.verdict_headers() {
            let _ = hostcalls::set_map_value(map, name, Some(&value));
        }
        let content_type = headers.get("content-type").unwrap_or_default();
        let encoded = headers
            .get("content-encoding")
            .is_some_and(|e| e != "identity");
        if end_of_stream || encoded {
            return Flow::Continue;
        }
        let event_stream = content_type.starts_with("text/event-stream");
        if !self.engine.inspects_answer(ex) {
            // Nothing to check or restore: only count tokens, holding back no byte.
            if event_stream {
                self.answer = Answer::ObserveStream;
            } else if content_type.contains("json") {
                self.answer = Answer::ObserveWhole;
            }
            return Flow::Continue;
        }
        if event_stream {
            self.answer = Answer::Stream;
            remove_header(map, &headers, "content-length");
        } else if content_type.contains("json") {
            self.answer = Answer::Buffer;
            remove_header(map, &headers, "content-length");
        }
        Flow::Continue
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Flow {
        let flow = self.answer_body(size, end_of_stream);
        if end_of_stream {
            // Before the last bytes reach the client, so its next request sees the charge.
            self.charge_tokens();
            // Output checks may have added to the verdict.
            self.record_audit();
        }
        flow
    }

    fn on_log(&mut self) {
        // An answer cut short never reached its end: charge what was counted.
        self.charge_tokens();
        let Some(ex) = &self.exchange else {
            return;
        };
        self.metrics.action(ex.verdict.action);
        self.metrics.exchange(
            ex.endpoint.provider.name(),
            ex.model.as_deref(),
            ex.usage.usage().as_ref(),
        );
        for &name in &ex.verdict.detections {
            self.metrics.detection(name);
        }
        if ex.verdict.detections.contains(&crate::engine::PARSE_ERROR) {
            self.metrics.parse_error();
        }
        if ex.verdict.action != Action::Allow {
            log::info!(
                "request {} {} {}: action={} detections={}",
                self.request_id,
                ex.endpoint.provider.name(),
                self.engine.route_name(ex).unwrap_or("-"),
                ex.verdict.action.name(),
                ex.verdict.detections.join(",")
            );
        }
    }
}
