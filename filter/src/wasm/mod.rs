//! The proxy-wasm adapter: moves headers and bodies between Envoy and the core `Engine` and
//! carries out its decisions; it holds no policy. The root context parses the configuration
//! once; each HTTP context borrows the shared engine. Host calls go through `hostcalls` and
//! their `Err` results are logged, never unwrapped. That is not every failure: proxy-wasm 0.2
//! itself panics (trapping the VM) in some calls on a status it does not expect, which is why
//! shared data is called directly (`shared`) and header maps are read as bytes (`headers`).

mod headers;
mod http;
mod metrics;
// The one exception to `deny(unsafe_code)`: the SDK's shared-data helpers panic on statuses
// they do not expect, so the two host functions are imported and called directly.
#[allow(unsafe_code)]
mod shared;

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use crate::config::Config;
use crate::engine::Engine;
use metrics::Metrics;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    engine: Option<Rc<Engine>>,
    metrics: Option<Rc<Metrics>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        match Config::parse(&bytes) {
            Ok(config) => {
                self.engine = Some(Rc::new(Engine::new(config)));
                self.metrics = Some(Rc::new(Metrics::define()));
                log::info!("configured");
                true
            }
            Err(e) => {
                log::error!("{e}");
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let engine = self.engine.clone()?;
        let metrics = self.metrics.clone()?;
        Some(Box::new(http::Stream::new(context_id, engine, metrics)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
