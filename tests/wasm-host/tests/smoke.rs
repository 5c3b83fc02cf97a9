//! Smoke test of the host against the real filter: configure it, send one exchange with the
//! body in two chunks, and check the host's view of the stream is coherent. Behaviour tests
//! of the filter live in `filter.rs`; this one only needs `SLUICE_WASM` and skips without it.

use std::path::PathBuf;

use sluice_wasm_host::{Action, Vm};

fn wasm() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("SLUICE_WASM")?);
    if path.exists() {
        Some(path)
    } else {
        println!("SLUICE_WASM={} does not exist: skipped", path.display());
        None
    }
}

#[test]
fn one_exchange_leaves_the_host_coherent() {
    let Some(wasm) = wasm() else {
        println!("SLUICE_WASM is not set: smoke test skipped (run `make test-wasm`)");
        return;
    };
    let mut vm = Vm::new(&wasm, "{}").expect("the VM starts");
    assert!(vm.configured(), "configuration refused: {:?}", vm.logs());

    let http = vm.new_http().expect("an HTTP context");
    let headers = [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        (":authority", "api.openai.com"),
        ("content-type", "application/json"),
    ];
    vm.request_headers(http, &headers, false).expect("headers");
    let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"What is a sluice?"}]}"#;
    let (first, second) = body.split_at(body.len() / 2);
    let first_action = vm.request_body(http, first, false).expect("first chunk");
    let stream = vm.stream(http);
    match first_action {
        // Held, as Envoy holds it: nothing went upstream yet.
        Action::Pause => {
            assert_eq!(stream.request_buffer, first);
            assert!(stream.upstream_body.is_empty() && stream.request_paused);
        }
        Action::Continue => assert_eq!(stream.upstream_body, first),
    }
    assert_eq!(
        vm.request_body(http, second, true).expect("last chunk"),
        Action::Continue
    );
    let stream = vm.stream(http);
    assert!(stream.local_reply.is_none(), "{:?}", stream.local_reply);
    assert!(stream.request_buffer.is_empty() && !stream.request_paused);
    assert_eq!(
        stream.upstream_body, body,
        "a harmless body goes upstream unchanged"
    );
    assert_eq!(stream.request_header(":path"), Some("/v1/chat/completions"));

    let answer = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"A gate."}}]}"#;
    let response = [(":status", "200"), ("content-type", "application/json")];
    vm.response_headers(http, &response, false)
        .expect("response headers");
    let mut last = Action::Pause;
    for (i, chunk) in answer.chunks(answer.len() / 2 + 1).enumerate() {
        last = vm
            .response_body(http, chunk, i == 1)
            .expect("response chunk");
    }
    assert_eq!(last, Action::Continue);
    let stream = vm.stream(http);
    assert_eq!(stream.downstream_body, answer);
    assert!(stream.response_buffer.is_empty() && !stream.response_paused);
    assert_eq!(stream.response_header(":status"), Some("200"));
    vm.finish(http).expect("on_done, on_log, on_delete");

    let critical: Vec<_> = vm.logs().iter().filter(|(level, _)| *level >= 4).collect();
    assert!(critical.is_empty(), "errors logged: {critical:?}");
}
