//! A small proxy-wasm host (ABI 0.2.1) on wasmtime, to drive the compiled Sluice filter in
//! tests the way Envoy does: configure, headers, bodies in chunks with Envoy's buffering, local
//! replies, gRPC calls and their answers, logs and metrics. No proxy-wasm test host is
//! published on crates.io; this one emulates what the filter uses and traps on the rest.
//!
//! ```no_run
//! use sluice_wasm_host::{Action, Vm};
//! let mut vm = Vm::new("build/sluice_filter.wasm", r#"{"expose_verdict_headers":true}"#).unwrap();
//! assert!(vm.configured());
//! let http = vm.new_http().unwrap();
//! vm.request_headers(http, &[(":method", "POST"), (":path", "/v1/chat/completions")], false).unwrap();
//! assert_eq!(vm.request_body(http, br#"{"messages":[]}"#, true).unwrap(), Action::Continue);
//! ```

mod abi;
mod state;

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use wasmtime::{Engine, Instance, Linker, Module, Store, WasmParams, WasmResults};

use state::State;
pub use state::{GrpcCall, LocalReply, Metric, Stream};

pub type Result<T> = wasmtime::Result<T>;

/// What a callback returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

impl Action {
    fn from_raw(raw: i32) -> Action {
        if raw == 0 {
            Action::Continue
        } else {
            Action::Pause
        }
    }
}

/// Compiled modules, one per path: compiling takes a quarter second, instantiating microseconds.
fn compiled(engine: &Engine, path: &Path) -> Result<Module> {
    static CACHE: OnceLock<Mutex<Vec<(std::path::PathBuf, Module)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    let mut cache = cache
        .lock()
        .map_err(|_| wasmtime::Error::msg("module cache poisoned"))?;
    if let Some((_, module)) = cache.iter().find(|(p, _)| p == path) {
        return Ok(module.clone());
    }
    let module = Module::from_file(engine, path)?;
    cache.push((path.to_path_buf(), module.clone()));
    Ok(module)
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(Engine::default)
}

const ROOT_CONTEXT: u32 = 1;

/// One VM with one configured plugin (root context 1).
pub struct Vm {
    store: Store<State>,
    instance: Instance,
    configured: bool,
    next_context: u32,
}

impl Vm {
    /// Loads the module, starts the VM and configures the plugin with `plugin_config`.
    pub fn new(wasm: impl AsRef<Path>, plugin_config: &str) -> Result<Vm> {
        let module = compiled(engine(), wasm.as_ref())?;
        let mut linker = Linker::new(engine());
        abi::define(&mut linker)?;
        linker.define_unknown_imports_as_traps(&module)?;
        let state = State {
            plugin_config: plugin_config.as_bytes().to_vec(),
            current: ROOT_CONTEXT,
            ..State::default()
        };
        let mut store = Store::new(engine(), state);
        let instance = linker.instantiate(&mut store, &module)?;
        let mut vm = Vm {
            store,
            instance,
            configured: false,
            next_context: ROOT_CONTEXT + 1,
        };
        if vm.instance.get_func(&mut vm.store, "_initialize").is_some() {
            vm.call::<(), ()>("_initialize", ())?;
        }
        vm.call::<(i32, i32), ()>("proxy_on_context_create", (ROOT_CONTEXT as i32, 0))?;
        let started = vm.call::<(i32, i32), i32>("proxy_on_vm_start", (ROOT_CONTEXT as i32, 0))?;
        let size = plugin_config.len() as i32;
        vm.configured = started != 0
            && vm.call::<(i32, i32), i32>("proxy_on_configure", (ROOT_CONTEXT as i32, size))? != 0;
        Ok(vm)
    }

    fn call<P: WasmParams, R: WasmResults>(&mut self, name: &str, params: P) -> Result<R> {
        let func = self
            .instance
            .get_typed_func::<P, R>(&mut self.store, name)?;
        func.call(&mut self.store, params)
    }

    fn call_in<P: WasmParams, R: WasmResults>(
        &mut self,
        context: u32,
        name: &str,
        params: P,
    ) -> Result<R> {
        self.store.data_mut().current = context;
        self.call(name, params)
    }

    /// Whether `proxy_on_configure` accepted the configuration.
    pub fn configured(&self) -> bool {
        self.configured
    }

    /// Log lines as (level, message); level -1 marks text written to stdout/stderr.
    pub fn logs(&self) -> &[(i32, String)] {
        &self.store.data().logs
    }

    pub fn metric(&self, name: &str) -> Option<i64> {
        self.store
            .data()
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// Sets a property the filter can read (`proxy_get_property`), e.g. `["request", "id"]`.
    pub fn set_property(&mut self, path: &[&str], value: &[u8]) {
        let path = path.iter().map(|s| s.to_string()).collect();
        self.store
            .data_mut()
            .properties
            .insert(path, value.to_vec());
    }

    /// Limits the clusters gRPC calls may name; others fail synchronously as in Envoy.
    pub fn set_clusters(&mut self, clusters: &[&str]) {
        self.store.data_mut().clusters = Some(clusters.iter().map(|s| s.to_string()).collect());
    }

    /// Creates an HTTP context; returns its id.
    pub fn new_http(&mut self) -> Result<u32> {
        let id = self.next_context;
        self.next_context += 1;
        self.store.data_mut().streams.insert(id, Stream::default());
        self.call_in::<(i32, i32), ()>(
            id,
            "proxy_on_context_create",
            (id as i32, ROOT_CONTEXT as i32),
        )?;
        Ok(id)
    }

    pub fn stream(&self, http: u32) -> &Stream {
        static EMPTY: OnceLock<Stream> = OnceLock::new();
        self.store
            .data()
            .streams
            .get(&http)
            .unwrap_or_else(|| EMPTY.get_or_init(Stream::default))
    }

    pub fn request_headers(
        &mut self,
        http: u32,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Action> {
        let count = headers.len() as i32;
        self.store
            .data_mut()
            .streams
            .entry(http)
            .or_default()
            .request_headers = owned(headers);
        let raw = self.call_in::<(i32, i32, i32), i32>(
            http,
            "proxy_on_request_headers",
            (http as i32, count, end_of_stream as i32),
        )?;
        Ok(Action::from_raw(raw))
    }

    /// Delivers a body chunk. As in Envoy, a paused filter keeps its chunks buffered and is
    /// called next with the whole buffer's size; on Continue the buffer goes upstream.
    pub fn request_body(&mut self, http: u32, chunk: &[u8], end_of_stream: bool) -> Result<Action> {
        let size = {
            let stream = self.store.data_mut().streams.entry(http).or_default();
            stream.request_buffer.extend_from_slice(chunk);
            stream.request_buffer.len() as i32
        };
        let raw = self.call_in::<(i32, i32, i32), i32>(
            http,
            "proxy_on_request_body",
            (http as i32, size, end_of_stream as i32),
        )?;
        let action = Action::from_raw(raw);
        let stream = self.store.data_mut().streams.entry(http).or_default();
        if action == Action::Continue && stream.local_reply.is_none() {
            let held = std::mem::take(&mut stream.request_buffer);
            stream.upstream_body.extend(held);
        }
        Ok(action)
    }

    pub fn response_headers(
        &mut self,
        http: u32,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Action> {
        let count = headers.len() as i32;
        self.store
            .data_mut()
            .streams
            .entry(http)
            .or_default()
            .response_headers = owned(headers);
        let raw = self.call_in::<(i32, i32, i32), i32>(
            http,
            "proxy_on_response_headers",
            (http as i32, count, end_of_stream as i32),
        )?;
        Ok(Action::from_raw(raw))
    }

    pub fn response_body(
        &mut self,
        http: u32,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Action> {
        let size = {
            let stream = self.store.data_mut().streams.entry(http).or_default();
            stream.response_buffer.extend_from_slice(chunk);
            stream.response_buffer.len() as i32
        };
        let raw = self.call_in::<(i32, i32, i32), i32>(
            http,
            "proxy_on_response_body",
            (http as i32, size, end_of_stream as i32),
        )?;
        let action = Action::from_raw(raw);
        if action == Action::Continue {
            let stream = self.store.data_mut().streams.entry(http).or_default();
            let held = std::mem::take(&mut stream.response_buffer);
            stream.downstream_body.extend(held);
        }
        Ok(action)
    }

    /// Ends the stream: `on_done`, `on_log`, `on_delete`.
    pub fn finish(&mut self, http: u32) -> Result<()> {
        self.call_in::<i32, i32>(http, "proxy_on_done", http as i32)?;
        self.call_in::<i32, ()>(http, "proxy_on_log", http as i32)?;
        self.call_in::<i32, ()>(http, "proxy_on_delete", http as i32)?;
        Ok(())
    }

    /// gRPC calls dispatched so far.
    pub fn grpc_calls(&self) -> &[GrpcCall] {
        &self.store.data().grpc_calls
    }

    /// Answers a unary gRPC call as Envoy does: success delivers the message
    /// (`proxy_on_grpc_receive`), failure only the status (`proxy_on_grpc_close`).
    pub fn grpc_reply(&mut self, token: u32, grpc_status: u32, message: &[u8]) -> Result<()> {
        let context = self
            .grpc_calls()
            .iter()
            .find(|c| c.token == token)
            .map(|c| c.context)
            .ok_or_else(|| wasmtime::Error::msg(format!("no gRPC call with token {token}")))?;
        let state = self.store.data_mut();
        state.grpc_message = message.to_vec();
        state.grpc_status = (grpc_status, String::new());
        if grpc_status == 0 {
            let size = message.len() as i32;
            self.call_in::<(i32, i32, i32), ()>(
                context,
                "proxy_on_grpc_receive",
                (ROOT_CONTEXT as i32, token as i32, size),
            )?;
        } else {
            self.call_in::<(i32, i32, i32), ()>(
                context,
                "proxy_on_grpc_close",
                (ROOT_CONTEXT as i32, token as i32, grpc_status as i32),
            )?;
        }
        Ok(())
    }
}

fn owned(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
