//! The cheapest proxy-wasm filters that do what Sluice's filter cannot do without, for
//! `make bench` to measure next to it in the same Envoy and V8:
//!
//! - plugin configuration `{"floor": "noop"}`: a filter that does nothing (the price of having
//!   a wasm filter in the chain at all: a VM context per stream and Envoy's callbacks into it);
//! - `{"floor": "buffer"}`: a filter that holds each body until it is complete and reads it
//!   into the VM, and nothing else. Any filter that can block or redact a request or an answer
//!   must do at least this, so its cost bounds the whole-stack throughput such a filter can reach.
#![cfg(target_arch = "wasm32")]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { buffer: false }) });
}}

struct Root {
    buffer: bool,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        self.buffer = config.windows(8).any(|w| w == b"\"buffer\"");
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            buffer: self.buffer,
        }))
    }
}

struct Stream {
    buffer: bool,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !self.buffer {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        std::hint::black_box(self.get_http_request_body(0, size));
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        if !self.buffer {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        std::hint::black_box(self.get_http_response_body(0, size));
        Action::Continue
    }
}
