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
//! assert_eq!(vm.request_body(http, br#"{"messages":"#, false).unwrap(), Action::Pause);
//! assert_eq!(vm.request_body(http, b"[]}", true).unwrap(), Action::Continue);
//! assert_eq!(vm.stream(http).upstream_body, br#"{"messages":[]}"#);
//! if let Some(call) = vm.grpc_calls().iter().find(|c| !c.finished).cloned() {
//!     vm.grpc_reply(call.token, 0, b"...").unwrap(); // proxy_on_grpc_receive
//! }
//! vm.finish(http).unwrap(); // on_done, on_log, on_delete
//! ```
//!
//! A trap in the guest (a panic: the filter is built with `panic = "abort"`) comes back as an
//! `Err` carrying the panic message; the VM is unusable afterwards, as it is in Envoy.

mod abi;
mod calls;
mod shared;
mod state;
mod wasi;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use wasmtime::{Engine, Instance, Linker, Module, Store, WasmParams, WasmResults};

use state::State;
pub use state::{GrpcCall, HttpCall, LocalReply, Metric, Stream};

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

/// Compiled modules, one per path and process.
fn compiled(engine: &Engine, path: &Path) -> Result<Module> {
    static CACHE: OnceLock<Mutex<Vec<(PathBuf, Module)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    let mut cache = cache
        .lock()
        .map_err(|_| wasmtime::Error::msg("module cache poisoned"))?;
    if let Some((_, module)) = cache.iter().find(|(p, _)| p == path) {
        return Ok(module.clone());
    }
    let wasm = std::fs::read(path)
        .map_err(|e| wasmtime::Error::msg(format!("reading {}: {e}", path.display())))?;
    let module = load_or_compile(engine, &wasm)?;
    cache.push((path.to_path_buf(), module.clone()));
    Ok(module)
}

/// Compiled code is also cached on disk, by content hash, in `$CARGO_TARGET_DIR` (else the
/// temp dir): cranelift built in the debug profile takes about 30 s per module, instead of a
/// quarter second optimised, and every test binary is its own process.
fn load_or_compile(engine: &Engine, wasm: &[u8]) -> Result<Module> {
    let mut hasher = DefaultHasher::new();
    wasm.hash(&mut hasher);
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("sluice-wasm-host-cache");
    let file = dir.join(format!("{:016x}.cwasm", hasher.finish()));
    if file.exists() {
        // SAFETY: the file is one `Module::serialize` wrote below for these exact bytes (the
        // name is their hash, the write is atomic), and wasmtime refuses one made by another
        // version or engine configuration; a refusal just recompiles.
        if let Ok(module) = unsafe { Module::deserialize_file(engine, &file) } {
            return Ok(module);
        }
    }
    let module = Module::new(engine, wasm)?;
    // Best effort: a cache that cannot be written only costs time.
    if let Ok(bytes) = module.serialize() {
        let tmp = dir.join(format!(
            "{:016x}.{}.tmp",
            hasher.finish(),
            std::process::id()
        ));
        if std::fs::create_dir_all(&dir).is_ok() && std::fs::write(&tmp, bytes).is_ok() {
            let _ = std::fs::rename(&tmp, &file);
        }
    }
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
    /// Why the VM died (a trap); every later call fails with it.
    failed: Option<String>,
}

impl Vm {
    /// Loads the module, starts the VM and configures the plugin with `plugin_config`.
    pub fn new(wasm: impl AsRef<Path>, plugin_config: &str) -> Result<Vm> {
        Self::with_vm_config(wasm, "", plugin_config)
    }

    /// As [`Vm::new`], with a VM configuration too (`proxy_on_vm_start`'s buffer).
    pub fn with_vm_config(
        wasm: impl AsRef<Path>,
        vm_config: &str,
        plugin_config: &str,
    ) -> Result<Vm> {
        let module = compiled(engine(), wasm.as_ref())?;
        let mut linker = Linker::new(engine());
        abi::define(&mut linker)?;
        linker.define_unknown_imports_as_traps(&module)?;
        let state = State {
            vm_config: vm_config.as_bytes().to_vec(),
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
            failed: None,
        };
        // A wasip1 reactor (the SDK's cdylib) has `_initialize`; a command module `_start`.
        for init in ["_initialize", "_start"] {
            if vm.instance.get_func(&mut vm.store, init).is_some() {
                vm.call::<(), ()>(init, ())?;
                break;
            }
        }
        vm.call::<(i32, i32), ()>("proxy_on_context_create", (ROOT_CONTEXT as i32, 0))?;
        let vm_size = vm_config.len() as i32;
        let started =
            vm.call::<(i32, i32), i32>("proxy_on_vm_start", (ROOT_CONTEXT as i32, vm_size))?;
        let size = plugin_config.len() as i32;
        vm.configured = started != 0
            && vm.call::<(i32, i32), i32>("proxy_on_configure", (ROOT_CONTEXT as i32, size))? != 0;
        Ok(vm)
    }

    fn call<P: WasmParams, R: WasmResults>(&mut self, name: &str, params: P) -> Result<R> {
        if let Some(why) = &self.failed {
            return Err(wasmtime::Error::msg(format!(
                "the VM trapped earlier: {why}"
            )));
        }
        let func = self
            .instance
            .get_typed_func::<P, R>(&mut self.store, name)?;
        let logged = self.store.data().logs.len();
        func.call(&mut self.store, params).map_err(|err| {
            // The panic message went to proxy_log (critical) or stderr just before the trap.
            let said: Vec<&str> = self.store.data().logs[logged..]
                .iter()
                .filter(|(level, _)| *level == 5 || *level == -1)
                .map(|(_, line)| line.trim_end())
                .collect();
            let why = format!("{name} trapped: {}", said.join(" | "));
            self.failed = Some(why.clone());
            err.context(why)
        })
    }

    /// Runs a stream callback unless Envoy would no longer call it (local reply or reset).
    fn stream_call(&mut self, http: u32, name: &str, size: usize, end: bool) -> Result<Action> {
        if self.stream(http).ended() {
            return Err(wasmtime::Error::msg(format!(
                "{name}: stream {http} already ended (local reply or reset)"
            )));
        }
        let params = (http as i32, size as i32, end as i32);
        let raw = self.call_in::<(i32, i32, i32), i32>(http, name, params)?;
        Ok(Action::from_raw(raw))
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

    /// The value of the metric the filter defined under `name`.
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

    /// A property as the filter last set it (`proxy_set_property`) or the test did.
    pub fn property(&self, path: &[&str]) -> Option<&[u8]> {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        self.store.data().properties.get(&path).map(Vec::as_slice)
    }

    /// A shared-data entry and its CAS version.
    pub fn shared_data(&self, key: &str) -> Option<(&[u8], u32)> {
        let (value, cas) = self.store.data().shared_data.get(key)?;
        Some((value, *cas))
    }

    /// The log level `proxy_get_log_level` reports (0 trace .. 5 critical; default trace).
    pub fn set_log_level(&mut self, level: u32) {
        self.store.data_mut().log_level = level;
    }

    /// Freezes the proxy clock (`proxy_get_current_time_nanoseconds` and WASI's clock).
    pub fn set_time_nanos(&mut self, nanos: u64) {
        self.store.data_mut().now_nanos = Some(nanos);
    }

    /// The tick period the filter asked for, in milliseconds (0: none).
    pub fn tick_period_ms(&self) -> u32 {
        self.store.data().tick_period_ms
    }

    /// Limits the clusters gRPC and HTTP calls may name; a gRPC call to another fails at once
    /// with ParseFailure, as Envoy 1.40 does (HTTP calls: BadArgument).
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

    /// The HTTP stream's state: header maps as the filter left them, held and forwarded
    /// bodies, local reply, paused flags.
    pub fn stream(&self, http: u32) -> &Stream {
        static EMPTY: OnceLock<Stream> = OnceLock::new();
        self.store
            .data()
            .streams
            .get(&http)
            .unwrap_or_else(|| EMPTY.get_or_init(Stream::default))
    }

    /// Delivers the request headers; Pause leaves the stream paused until the filter resumes.
    pub fn request_headers(
        &mut self,
        http: u32,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Action> {
        self.store
            .data_mut()
            .streams
            .entry(http)
            .or_default()
            .request_headers = owned(headers);
        let name = "proxy_on_request_headers";
        let action = self.stream_call(http, name, headers.len(), end_of_stream)?;
        self.stream_mut(http).request_paused = action == Action::Pause;
        Ok(action)
    }

    /// Delivers a body chunk. As in Envoy, a paused filter keeps its chunks buffered and is
    /// called next with the whole buffer's size; on Continue the buffer goes upstream.
    pub fn request_body(&mut self, http: u32, chunk: &[u8], end_of_stream: bool) -> Result<Action> {
        if self.stream(http).ended() {
            return self.stream_call(http, "proxy_on_request_body", 0, end_of_stream);
        }
        let stream = self.stream_mut(http);
        stream.request_buffer.extend_from_slice(chunk);
        let size = stream.request_buffer.len();
        let action = self.stream_call(http, "proxy_on_request_body", size, end_of_stream)?;
        let stream = self.stream_mut(http);
        match action {
            Action::Continue => stream.release_request(),
            Action::Pause => stream.request_paused = true,
        }
        Ok(action)
    }

    /// Delivers the upstream's response headers. The host does not pass a local reply
    /// through these callbacks: after one, this returns `Err`.
    pub fn response_headers(
        &mut self,
        http: u32,
        headers: &[(&str, &str)],
        end_of_stream: bool,
    ) -> Result<Action> {
        self.store
            .data_mut()
            .streams
            .entry(http)
            .or_default()
            .response_headers = owned(headers);
        let name = "proxy_on_response_headers";
        let action = self.stream_call(http, name, headers.len(), end_of_stream)?;
        self.stream_mut(http).response_paused = action == Action::Pause;
        Ok(action)
    }

    /// Delivers a response body chunk, with the same buffering as [`Vm::request_body`]:
    /// on Continue the held bytes go to the client (`Stream::downstream_body`).
    pub fn response_body(
        &mut self,
        http: u32,
        chunk: &[u8],
        end_of_stream: bool,
    ) -> Result<Action> {
        if self.stream(http).ended() {
            return self.stream_call(http, "proxy_on_response_body", 0, end_of_stream);
        }
        let stream = self.stream_mut(http);
        stream.response_buffer.extend_from_slice(chunk);
        let size = stream.response_buffer.len();
        let action = self.stream_call(http, "proxy_on_response_body", size, end_of_stream)?;
        let stream = self.stream_mut(http);
        match action {
            Action::Continue => stream.release_response(),
            Action::Pause => stream.response_paused = true,
        }
        Ok(action)
    }

    /// Passes the stream's local reply through the filter's own response callbacks, as Envoy
    /// does (a local reply traverses the encoder filters, the sender's too): response headers
    /// (`:status`, the reply's headers), then the body with end of stream. The reply then holds
    /// what the filter made of it. Opt-in, so tests can look at the reply before and after.
    pub fn deliver_local_reply(&mut self, http: u32) -> Result<()> {
        let Some(reply) = self.stream(http).local_reply.clone() else {
            return Err(wasmtime::Error::msg(format!(
                "stream {http} has no local reply"
            )));
        };
        let mut headers = vec![(":status".to_string(), reply.status.to_string())];
        headers.extend(reply.headers.iter().cloned());
        let count = headers.len() as i32;
        let no_body = reply.body.is_empty() as i32;
        let stream = self.stream_mut(http);
        stream.response_headers = headers;
        stream.response_buffer = reply.body;
        let params = (http as i32, count, no_body);
        self.call_in::<(i32, i32, i32), i32>(http, "proxy_on_response_headers", params)?;
        let size = self.stream(http).response_buffer.len() as i32;
        if no_body == 0 {
            let params = (http as i32, size, 1);
            self.call_in::<(i32, i32, i32), i32>(http, "proxy_on_response_body", params)?;
        }
        let stream = self.stream_mut(http);
        let body = std::mem::take(&mut stream.response_buffer);
        let mut headers = stream.response_headers.clone();
        let status = headers
            .iter()
            .position(|(k, _)| k == ":status")
            .map(|i| headers.remove(i).1);
        if let Some(reply) = stream.local_reply.as_mut() {
            reply.status = status.and_then(|s| s.parse().ok()).unwrap_or(reply.status);
            reply.headers = headers;
            reply.body = body;
        }
        Ok(())
    }

    fn stream_mut(&mut self, http: u32) -> &mut Stream {
        self.store.data_mut().streams.entry(http).or_default()
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

    /// HTTP calls dispatched so far (recorded only; nothing answers them).
    pub fn http_calls(&self) -> &[HttpCall] {
        &self.store.data().http_calls
    }

    /// Answers a pending unary gRPC call as Envoy does: status 0 delivers `message`
    /// (`proxy_on_grpc_receive`, read back as `GrpcReceiveBuffer`); any other status only
    /// closes the call (`proxy_on_grpc_close`), `message` then being the status message
    /// `proxy_get_status` returns. Envoy never sends both for one unary call, and the SDK
    /// forgets the token after the first. Answering twice, or a cancelled call, is an `Err`.
    pub fn grpc_reply(&mut self, token: u32, grpc_status: u32, message: &[u8]) -> Result<()> {
        let call = self
            .store
            .data_mut()
            .grpc_calls
            .iter_mut()
            .find(|c| c.token == token && !c.finished)
            .ok_or_else(|| wasmtime::Error::msg(format!("no pending gRPC call {token}")))?;
        call.finished = true;
        let context = call.context;
        let state = self.store.data_mut();
        if grpc_status == 0 {
            state.grpc_message = message.to_vec();
            state.grpc_status = (0, String::new());
            let size = message.len() as i32;
            self.call_in::<(i32, i32, i32), ()>(
                context,
                "proxy_on_grpc_receive",
                (context as i32, token as i32, size),
            )?;
        } else {
            state.grpc_message.clear();
            state.grpc_status = (grpc_status, String::from_utf8_lossy(message).into_owned());
            self.call_in::<(i32, i32, i32), ()>(
                context,
                "proxy_on_grpc_close",
                (context as i32, token as i32, grpc_status as i32),
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
