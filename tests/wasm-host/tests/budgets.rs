//! Budgets and allow-lists through the compiled filter: counters kept in the host's shared data
//! (compare-and-swap versions), 429 with `retry-after`, tokens charged from the answer's usage.

use std::path::PathBuf;

use sluice_wasm_host::{Action, Vm};

fn wasm() -> PathBuf {
    std::env::var_os("SLUICE_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../build/sluice_filter.wasm"
            ))
        })
}

const NOW_S: u64 = 1_795_392_030; // 30 s into a minute
const BUDGET: &str = r#"{"identity":{"header":"x-workload"},
    "budget":{"window_s":60,"requests":2,"tokens":50},
    "allow":{"models":["gpt-4o*"]}}"#;

fn vm(config: &str) -> Vm {
    let mut vm = Vm::new(wasm(), config).expect("VM starts");
    assert!(vm.configured(), "configuration refused: {:?}", vm.logs());
    vm.set_time_nanos(NOW_S * 1_000_000_000);
    vm
}

/// Sends a chat request from `workload`; returns the stream id and the body's action.
fn request(vm: &mut Vm, workload: &str, model: &str) -> (u32, Action) {
    let http = vm.new_http().unwrap();
    let headers = [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("content-type", "application/json"),
        ("x-workload", workload),
    ];
    vm.request_headers(http, &headers, false).unwrap();
    let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    let action = vm.request_body(http, body.as_bytes(), true).unwrap();
    (http, action)
}

fn answer(vm: &mut Vm, http: u32, prompt_tokens: u64, completion_tokens: u64) {
    let headers = [(":status", "200"), ("content-type", "application/json")];
    vm.response_headers(http, &headers, false).unwrap();
    let body = format!(
        r#"{{"choices":[{{"message":{{"role":"assistant","content":"ok"}}}}],"usage":{{"prompt_tokens":{prompt_tokens},"completion_tokens":{completion_tokens}}}}}"#
    );
    vm.response_body(http, body.as_bytes(), true).unwrap();
    vm.finish(http).unwrap();
}

fn counter(vm: &Vm, identity_key: &str) -> String {
    let (value, cas) = vm
        .shared_data(identity_key)
        .expect("counter in shared data");
    assert!(cas > 0);
    String::from_utf8(value.to_vec()).unwrap()
}

#[test]
fn requests_are_counted_in_shared_data_and_refused_with_retry_after() {
    let mut vm = vm(BUDGET);
    let key = sluice_filter::budget::key("checkout");
    let (first, action) = request(&mut vm, "checkout", "gpt-4o-mini");
    assert_eq!(action, Action::Continue);
    assert_eq!(counter(&vm, &key), "1795392000 1 0");
    answer(&mut vm, first, 10, 5);
    assert_eq!(
        counter(&vm, &key),
        "1795392000 1 15",
        "tokens charged from usage"
    );
    let (second, action) = request(&mut vm, "checkout", "gpt-4o");
    assert_eq!(action, Action::Continue);
    answer(&mut vm, second, 1, 1);

    let (third, action) = request(&mut vm, "checkout", "gpt-4o");
    assert_eq!(action, Action::Pause);
    let stream = vm.stream(third);
    assert!(stream.upstream_body.is_empty());
    let reply = stream.local_reply.as_ref().expect("local reply");
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("30"));
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["error"]["code"], "request_budget");
    assert_eq!(json["error"]["type"], "rate_limit_error");
    vm.finish(third).unwrap();
    assert_eq!(
        counter(&vm, &key),
        "1795392000 2 17",
        "a refusal is not charged"
    );
    assert_eq!(vm.metric("sluice_detection_request_budget_total"), Some(1));
    assert_eq!(vm.metric("sluice_tokens_input_total"), Some(11));
    assert_eq!(
        vm.metric("sluice_model_tokens_openai_gpt_4o_mini_output_total"),
        Some(5)
    );

    // Another caller has a budget of its own; the next window starts afresh.
    assert_eq!(request(&mut vm, "search", "gpt-4o").1, Action::Continue);
    vm.set_time_nanos((NOW_S + 30) * 1_000_000_000);
    assert_eq!(request(&mut vm, "checkout", "gpt-4o").1, Action::Continue);
    assert_eq!(counter(&vm, &key), "1795392060 1 0");
}

#[test]
fn spent_tokens_refuse_the_next_request_and_disallowed_models_are_refused_uncharged() {
    let mut vm = vm(BUDGET);
    let key = sluice_filter::budget::key("batch");
    let (first, _) = request(&mut vm, "batch", "gpt-4o");
    answer(&mut vm, first, 40, 20);
    let (second, action) = request(&mut vm, "batch", "gpt-4o");
    assert_eq!(action, Action::Pause);
    let reply = vm.stream(second).local_reply.clone().unwrap();
    assert_eq!(reply.status, 429);
    assert!(String::from_utf8_lossy(&reply.body).contains("token_budget"));

    let (denied, action) = request(&mut vm, "other", "claude-3-5-haiku");
    assert_eq!(action, Action::Pause);
    let reply = vm.stream(denied).local_reply.clone().unwrap();
    assert_eq!(reply.status, 403);
    let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(json["error"]["code"], "model_not_allowed");
    assert!(vm
        .shared_data(&sluice_filter::budget::key("other"))
        .is_none());
    assert_eq!(counter(&vm, &key), "1795392000 1 60");
}
