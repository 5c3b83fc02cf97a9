//! `sluice-fake-provider`: a local stand-in for the LLM providers (OpenAI, Azure OpenAI,
//! Anthropic, Gemini, Cohere) that end-to-end tests and the demo send traffic to. It speaks
//! each provider's real wire format well enough for the official SDKs to parse it.
//!
//! # Running
//! `sluice-fake-provider [--listen ADDR]` (default `127.0.0.1:18080`, or env
//! `FAKE_PROVIDER_LISTEN`). Port 0 picks a free port. Once ready it prints exactly one
//! line, `listening on IP:PORT`, to stdout. SIGTERM / SIGINT shut it down gracefully.
//!
//! # Endpoints (all `POST`; streaming when the body has `"stream": true`)
//! - OpenAI: `/v1/chat/completions`, `/v1/completions`, `/v1/responses`, `/v1/embeddings`;
//!   Azure OpenAI: `/openai/deployments/{deployment}/{chat/completions,completions,embeddings}`
//!   (`api-version` ignored; the deployment is the model when the body names none) and
//!   `/openai/v1/...`, `/openai/responses`. Chat streams `chat.completion.chunk` data lines
//!   (role first, then content, then `finish_reason: "stop"`, a usage chunk when
//!   `stream_options.include_usage`, then `[DONE]`); Responses streams typed events from
//!   `response.created` to `response.completed`. Embeddings are deterministic unit vectors
//!   derived from each input (8 floats unless `dimensions`; `encoding_format` float/base64).
//! - Anthropic: `/v1/messages` (stream: `message_start`, `content_block_start`, `ping`,
//!   `content_block_delta`…, `content_block_stop`, `message_delta`, `message_stop`).
//! - Gemini: `/v1beta/models/{model}:generateContent` and `:streamGenerateContent` (SSE with
//!   `?alt=sse`, else a streamed JSON array); also under `/v1/models/`.
//! - Cohere Chat v2: `/v2/chat` (stream: `message-start`, `content-start`,
//!   `content-delta`…, `content-end`, `message-end`).
//!
//! # Reply text
//! `You said: <text of the last user message>` (text parts joined by `\n`), unless
//! overridden; first match wins: header `x-fake-reply: TEXT` (UTF-8, else read as
//! Latin-1), header `x-fake-reply-b64: BASE64` (for text with newlines), then the reply
//! stored with `PUT /_fake/reply` (body = text) until `DELETE /_fake/reply`.
//!
//! # Controls (request headers)
//! - `x-fake-delta-chars: N` characters of reply per stream delta (default 4).
//! - `x-fake-chunk-bytes: N` re-slices the whole response body into N-byte writes,
//!   ignoring event and UTF-8 boundaries (applies to non-streamed bodies too).
//! - `x-fake-delay-ms: N` waits before answering; `x-fake-write-delay-ms: N` waits between
//!   writes. Without it each write is still its own `writev` on a TCP_NODELAY socket, but a
//!   slow reader may receive several at once; add `x-fake-write-delay-ms: 1` when the
//!   receiver must see them separately (e.g. one `on_http_response_body` per write).
//! - `x-fake-status: 400..=599` answers with that status and the provider's error JSON.
//!
//! Malformed JSON, a non-object body, a missing `messages`/`input`/`prompt`/`contents`, or
//! a bad control header answer 400 in the provider's error format.
//!
//! # Test hooks
//! - `GET /_fake/requests`: JSON array (oldest first, last 200) of every request to a
//!   non-`/_fake/` path: `seq`, `method`, `path`, `query`, `headers` (lower-case names,
//!   repeats joined by `, `), `body` (UTF-8, or base64 with `body_base64: true`), `json`
//!   (the parsed body or null). `DELETE /_fake/requests` clears it.
//! - `GET /_fake/health` answers 200 `ok`.

mod controls;
mod providers;
mod recorder;
mod server;
mod stream;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use axum::serve::ListenerExt as _;

const DEFAULT_LISTEN: &str = "127.0.0.1:18080";
const USAGE: &str = "usage: sluice-fake-provider [--listen ADDR]   (env FAKE_PROVIDER_LISTEN; default 127.0.0.1:18080)";

fn main() -> ExitCode {
    let addr = match listen_addr(
        std::env::args().skip(1),
        std::env::var("FAKE_PROVIDER_LISTEN").ok(),
    ) {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sluice-fake-provider: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice-fake-provider: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(addr)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-fake-provider: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The address to listen on: `--listen` wins over the environment, which wins over the
/// default. `Ok(None)` means help was asked for.
fn listen_addr(
    mut args: impl Iterator<Item = String>,
    env: Option<String>,
) -> Result<Option<SocketAddr>, String> {
    let mut chosen = env.filter(|s| !s.is_empty());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--listen" => {
                chosen = Some(args.next().ok_or("--listen needs an address")?);
            }
            other => match other.strip_prefix("--listen=") {
                Some(value) => chosen = Some(value.to_owned()),
                None => return Err(format!("unknown argument {other:?}")),
            },
        }
    }
    let text = chosen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    text.parse::<SocketAddr>()
        .map(Some)
        .map_err(|e| format!("bad listen address {text:?} (want IP:PORT): {e}"))
}

async fn serve(addr: SocketAddr) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    // Small writes must leave as they are written, not wait for Nagle to batch them.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = server::router(Arc::new(providers::AppState::default()));
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {local}");
        let _ = out.flush();
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("server failed: {e}"))
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> impl Iterator<Item = String> {
        list.iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn listen_address_precedence() {
        let default: SocketAddr = DEFAULT_LISTEN.parse().unwrap();
        assert_eq!(listen_addr(args(&[]), None), Ok(Some(default)));
        let env = Some("127.0.0.1:1".to_owned());
        assert_eq!(
            listen_addr(args(&[]), env.clone()),
            Ok(Some("127.0.0.1:1".parse().unwrap()))
        );
        assert_eq!(
            listen_addr(args(&["--listen", "127.0.0.1:0"]), env.clone()),
            Ok(Some("127.0.0.1:0".parse().unwrap()))
        );
        assert_eq!(
            listen_addr(args(&["--listen=[::1]:9"]), None),
            Ok(Some("[::1]:9".parse().unwrap()))
        );
        assert_eq!(listen_addr(args(&["--help"]), None), Ok(None));
        assert!(listen_addr(args(&["--listen"]), None).is_err());
        assert!(listen_addr(args(&["--bogus"]), None).is_err());
        assert!(listen_addr(args(&["--listen", "nope"]), None).is_err());
    }
}
