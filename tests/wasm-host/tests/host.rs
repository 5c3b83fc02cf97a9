//! The host's emulation checked against a tiny proxy-wasm filter built from
//! `fixtures/echo-filter` (wasm32-wasip1, about 15 s once, then cached in the target dir):
//! Envoy-style body buffering, header and buffer writes, local replies, gRPC calls and their
//! answers, properties, metrics, and traps surfacing as errors.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use sluice_wasm_host::{Action, Vm};

/// Builds the fixture once per test process; cargo makes later builds no-ops.
fn echo_wasm() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/echo-filter");
            let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("echo-filter");
            let status = Command::new(option_env!("CARGO").unwrap_or("cargo"))
                .args(["build", "--release", "--target", "wasm32-wasip1", "--quiet"])
                .current_dir(fixture)
                .env("CARGO_TARGET_DIR", &target)
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building the echo-filter fixture failed");
            target.join("wasm32-wasip1/release/echo_filter.wasm")
        })
        .clone()
}

fn echo(config: &str) -> Vm {
    Vm::new(echo_wasm(), config).expect("the VM starts")
}

fn post(vm: &mut Vm) -> u32 {
    let http = vm.new_http().unwrap();
    let headers = [(":method", "POST"), (":path", "/x"), ("x-remove-me", "1")];
    assert_eq!(
        vm.request_headers(http, &headers, false).unwrap(),
        Action::Continue
    );
    http
}

#[test]
fn configure_reports_acceptance_and_logs() {
    let vm = echo("hello");
    assert!(vm.configured());
    assert!(vm
        .logs()
        .iter()
        .any(|(level, line)| *level == 2 && line == "configured with hello"));
    assert!(!echo("refuse").configured());
}

#[test]
fn headers_properties_and_metrics() {
    let mut vm = echo("{}");
    vm.set_property(&["request", "id"], b"req-7");
    let http = post(&mut vm);
    let stream = vm.stream(http);
    assert_eq!(stream.request_header("x-seen-id"), Some("req-7"));
    assert_eq!(stream.request_header("x-echo"), Some("1"));
    assert_eq!(stream.request_header("x-remove-me"), None);
    assert_eq!(stream.request_header(":path"), Some("/x"));
    post(&mut vm);
    assert_eq!(vm.metric("echo_requests"), Some(2));
}

#[test]
fn paused_chunks_stay_buffered_then_go_upstream_rewritten() {
    let mut vm = echo("{}");
    let http = post(&mut vm);
    assert_eq!(vm.request_body(http, b"hel", false).unwrap(), Action::Pause);
    let stream = vm.stream(http);
    assert_eq!(stream.request_buffer, b"hel");
    assert!(stream.upstream_body.is_empty() && stream.request_paused);

    assert_eq!(
        vm.request_body(http, b"lo", true).unwrap(),
        Action::Continue
    );
    let stream = vm.stream(http);
    assert_eq!(
        stream.upstream_body, b"HELLO",
        "the whole buffer was replaced"
    );
    assert!(stream.request_buffer.is_empty() && !stream.request_paused);
    assert_eq!(vm.property(&["echo", "seen"]), Some(&b"yes"[..]));

    vm.response_headers(http, &[(":status", "200")], false)
        .unwrap();
    assert_eq!(vm.response_body(http, b"a", false).unwrap(), Action::Pause);
    assert_eq!(
        vm.response_body(http, b"b", true).unwrap(),
        Action::Continue
    );
    assert_eq!(
        vm.stream(http).downstream_body,
        b"ab!",
        "appended at the end"
    );
    vm.finish(http).unwrap();
}

#[test]
fn a_local_reply_ends_the_stream() {
    let mut vm = echo("{}");
    let http = post(&mut vm);
    assert_eq!(
        vm.request_body(http, b"block", true).unwrap(),
        Action::Pause
    );
    let stream = vm.stream(http);
    let reply = stream.local_reply.as_ref().expect("a local reply");
    assert_eq!((reply.status, reply.body.as_slice()), (403, &b"no"[..]));
    assert_eq!(reply.header("x-why"), Some("blocked"));
    assert_eq!(reply.grpc_status, None);
    assert!(stream.upstream_body.is_empty());
    assert!(vm.request_body(http, b"more", true).is_err());
    assert!(vm
        .response_headers(http, &[(":status", "200")], true)
        .is_err());
    vm.finish(http).unwrap();
}

#[test]
fn a_grpc_answer_resumes_the_request_with_the_answer() {
    let mut vm = echo("{}");
    let http = post(&mut vm);
    assert_eq!(
        vm.request_body(http, b"judge", true).unwrap(),
        Action::Pause
    );
    let call = vm.grpc_calls().first().cloned().expect("a gRPC call");
    assert_eq!(
        (
            call.cluster.as_str(),
            call.service.as_str(),
            call.method.as_str()
        ),
        ("judge", "sluice.Judge", "Check")
    );
    assert_eq!(
        call.initial_metadata,
        vec![("x-k".to_string(), "v".to_string())]
    );
    assert_eq!(
        (call.message.as_slice(), call.timeout_ms),
        (&b"judge"[..], 250)
    );
    assert_eq!(call.context, http);
    assert!(vm.stream(http).upstream_body.is_empty());

    vm.grpc_reply(call.token, 0, b"verdict").unwrap();
    let stream = vm.stream(http);
    assert_eq!(stream.upstream_body, b"verdict");
    assert!(stream.request_resumed && !stream.request_paused);
    assert!(
        vm.grpc_reply(call.token, 0, b"again").is_err(),
        "answered once"
    );
}

#[test]
fn a_failed_grpc_call_delivers_only_its_status() {
    let mut vm = echo("{}");
    let http = post(&mut vm);
    vm.request_body(http, b"judge", true).unwrap();
    let token = vm.grpc_calls()[0].token;
    vm.grpc_reply(token, 14, b"down").unwrap();
    let reply = vm.stream(http).local_reply.clone().expect("a local reply");
    assert_eq!(reply.status, 503);
    assert_eq!(reply.body, b"judge failed: 14 down");
}

#[test]
fn a_guest_panic_is_an_error_and_kills_the_vm() {
    let mut vm = echo("{}");
    let http = post(&mut vm);
    let err = vm.request_body(http, b"panic", true).expect_err("a trap");
    assert!(format!("{err:?}").contains("asked to panic"), "{err:?}");
    let later = vm.new_http().expect_err("the VM is dead");
    assert!(
        format!("{later:?}").contains("trapped earlier"),
        "{later:?}"
    );
}
