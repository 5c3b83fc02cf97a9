//! One HTTP stream: hands each callback's headers and bodies to the engine and carries out the
//! decision it returns (forward, hold, rewrite, answer locally, call the judge).

use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action as Flow, BufferType, MapType};

use crate::engine::{Decision, Engine, Exchange, HeaderEdits, Host, JudgeReply, Refusal};
use crate::judge;

use super::headers;
use super::metrics::Metrics;
use super::shared::HostStore;

pub struct Stream {
    context_id: u32,
    engine: Rc<Engine>,
    metrics: Rc<Metrics>,
    exchange: Option<Exchange>,
    /// The judge call this request waits for.
    judge_token: Option<u32>,
    /// Request body bytes buffered so far (what the last body callback reported).
    request_buffered: usize,
}

/// The engine's view of the host for one stream.
struct Calls {
    context_id: u32,
    store: HostStore,
}

impl Host for Calls {
    type Store = HostStore;

    fn now(&mut self) -> Duration {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default()
    }

    fn stream_id(&self) -> u32 {
        self.context_id
    }

    fn property(&mut self, path: &[&str]) -> Option<String> {
        hostcalls::get_property(path.to_vec())
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|p| !p.is_empty())
    }

    fn store(&mut self) -> &mut HostStore {
        &mut self.store
    }

    fn request_body(&mut self, size: usize) -> Option<Vec<u8>> {
        read(BufferType::HttpRequestBody, size)
    }

    fn answer_body(&mut self, size: usize) -> Option<Vec<u8>> {
        read(BufferType::HttpResponseBody, size)
    }

    fn record_audit(&mut self, event: &str) {
        if let Err(e) = hostcalls::set_property(vec!["sluice_audit"], Some(event.as_bytes())) {
            log::warn!("audit event not recorded: {e:?}");
        }
    }
}

fn read(buffer: BufferType, size: usize) -> Option<Vec<u8>> {
    match hostcalls::get_buffer(buffer, 0, size) {
        Ok(body) => Some(body.unwrap_or_default()),
        Err(e) => {
            log::error!("cannot read {buffer:?}: {e:?}");
            None
        }
    }
}

impl Stream {
    pub fn new(context_id: u32, engine: Rc<Engine>, metrics: Rc<Metrics>) -> Stream {
        Stream {
            context_id,
            engine,
            metrics,
            exchange: None,
            judge_token: None,
            request_buffered: 0,
        }
    }

    fn calls(&self) -> Calls {
        Calls {
            context_id: self.context_id,
            store: HostStore,
        }
    }

    /// Carries out `decision` on the body in `buffer` (`size` bytes held so far).
    fn execute(&mut self, buffer: BufferType, size: usize, decision: Decision) -> Flow {
        match decision {
            Decision::Forward => Flow::Continue,
            Decision::Buffer => Flow::Pause,
            Decision::Rewrite(body) => {
                rewrite(buffer, size, &body);
                Flow::Continue
            }
            Decision::Refuse(refusal) => {
                answer_locally(&refusal);
                Flow::Pause
            }
            Decision::AskJudge {
                rewrite: body,
                call,
            } => {
                if let Some(body) = body {
                    rewrite(buffer, size, &body);
                }
                let sent = hostcalls::dispatch_grpc_call(
                    &call.cluster,
                    judge::SERVICE,
                    judge::METHOD,
                    Vec::new(),
                    Some(&call.message),
                    call.timeout,
                );
                match sent {
                    Ok(token) => {
                        self.judge_token = Some(token);
                        Flow::Pause
                    }
                    Err(e) => {
                        // An unknown cluster fails here, synchronously.
                        log::warn!("judge call to `{}` not sent: {e:?}", call.cluster);
                        let decision = self.judged(JudgeReply::NotSent);
                        self.execute(buffer, size, decision)
                    }
                }
            }
        }
    }

    fn judged(&mut self, reply: JudgeReply) -> Decision {
        let mut calls = self.calls();
        match self.exchange.as_mut() {
            Some(ex) => self.engine.judge_answered(ex, reply, &mut calls),
            None => Decision::Forward,
        }
    }
}

fn rewrite(buffer: BufferType, size: usize, body: &[u8]) {
    if let Err(e) = hostcalls::set_buffer(buffer, 0, size, body) {
        log::error!("cannot rewrite {buffer:?}: {e:?}");
    }
}

fn answer_locally(refusal: &Refusal) {
    let headers: Vec<(&str, &str)> = refusal
        .headers
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    let body = Some(refusal.body.as_bytes());
    if let Err(e) = hostcalls::send_http_response(u32::from(refusal.status), headers, body) {
        log::error!("local reply failed: {e:?}");
    }
}

fn edit(map: MapType, edits: &HeaderEdits) {
    for name in &edits.remove {
        let _ = hostcalls::set_map_value(map, name, None);
    }
    for (name, value) in &edits.set {
        let _ = hostcalls::set_map_value(map, name, Some(value));
    }
}

impl Context for Stream {
    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        if self.judge_token != Some(token) {
            return;
        }
        self.judge_token = None;
        let message = match size {
            0 => Vec::new(),
            _ => read(BufferType::GrpcReceiveBuffer, size).unwrap_or_default(),
        };
        let reply = JudgeReply::Answered {
            grpc_status: status,
            message: &message,
        };
        match self.judged(reply) {
            Decision::Refuse(refusal) => answer_locally(&refusal),
            _ => {
                if let Err(e) = hostcalls::resume_http_request() {
                    log::error!("cannot resume: {e:?}");
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
        // One host call for every header the engine reads.
        let headers = headers::fetch(map);
        let mut calls = self.calls();
        let Some((ex, edits, decision)) =
            self.engine
                .request_headers(&headers, end_of_stream, &mut calls)
        else {
            return Flow::Continue;
        };
        self.exchange = Some(ex);
        edit(map, &edits);
        self.execute(BufferType::HttpRequestBody, 0, decision)
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Flow {
        let mut calls = self.calls();
        let Some(ex) = self.exchange.as_mut() else {
            return Flow::Continue;
        };
        self.request_buffered = size;
        let decision = self
            .engine
            .request_body(ex, size, end_of_stream, &mut calls);
        self.execute(BufferType::HttpRequestBody, size, decision)
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Flow {
        let mut calls = self.calls();
        let Some(ex) = self.exchange.as_mut() else {
            return Flow::Continue;
        };
        let size = self.request_buffered;
        let decision = self.engine.request_trailers(ex, size, &mut calls);
        self.execute(BufferType::HttpRequestBody, size, decision)
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Flow {
        let mut calls = self.calls();
        let Some(ex) = self.exchange.as_mut() else {
            return Flow::Continue;
        };
        let map = MapType::HttpResponseHeaders;
        let read = || headers::fetch(map);
        let edits = self
            .engine
            .response_headers(ex, read, end_of_stream, &mut calls);
        edit(map, &edits);
        Flow::Continue
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Flow {
        let mut calls = self.calls();
        let Some(ex) = self.exchange.as_mut() else {
            return Flow::Continue;
        };
        let decision = self
            .engine
            .response_body(ex, size, end_of_stream, &mut calls);
        self.execute(BufferType::HttpResponseBody, size, decision)
    }

    fn on_log(&mut self) {
        let mut calls = self.calls();
        let Some(ex) = self.exchange.as_mut() else {
            return;
        };
        for metric in self.engine.finish(ex, &mut calls) {
            self.metrics.emit(&metric);
        }
    }
}
