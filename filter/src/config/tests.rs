//! Parsing the plugin configuration: defaults, every field, and errors that name the field.

use super::*;
use crate::detect::{DetectorId, Language};
use crate::policy::Mode;

#[test]
fn empty_means_defaults() {
    let c = Config::parse(b"  ").unwrap();
    assert!(!c.expose_verdict_headers);
    assert_eq!(c.on_parse_error, Action::Block);
    assert_eq!(c.block_status, 403);
    assert_eq!(c.policy, Policy::default());
}

#[test]
fn full_config() {
    let c = Config::parse(
        br#"{"expose_verdict_headers":true,"on_parse_error":"block","block_status":451,
            "detectors":{"pii":{"action":"block","threshold":0.9}},
            "routes":[{"name":"claude","path_prefix":"/v1/messages","provider":"anthropic",
                       "detectors":{"prompt_injection":{"action":"alert"}}}]}"#,
    )
    .unwrap();
    assert_eq!(c.block_status, 451);
    assert_eq!(c.policy.get(DetectorId::Pii).mode, Mode::Block);
    let route = c.route_for("/v1/messages").unwrap();
    assert_eq!(route.provider, Some(Provider::Anthropic));
    assert_eq!(
        route.policy.get(DetectorId::PromptInjection).mode,
        Mode::Alert
    );
    // Route policies start from the global one.
    assert_eq!(route.policy.get(DetectorId::Pii).threshold, 0.9);
    assert!(c.route_for("/v1/chat/completions").is_none());
}

#[test]
fn token_limits() {
    let c = Config::parse(
        br#"{"max_tokens":{"limit":4096},
            "routes":[{"name":"r","path_prefix":"/v1/messages","max_tokens":{"limit":256,"over":"refuse"}},
                      {"name":"s","path_prefix":"/v1/chat"}]}"#,
    )
    .unwrap();
    assert_eq!(
        c.max_tokens,
        Some(TokenLimit {
            limit: 4096,
            refuse: false
        })
    );
    assert_eq!(
        c.routes[0].max_tokens,
        Some(TokenLimit {
            limit: 256,
            refuse: true
        })
    );
    assert_eq!(c.routes[1].max_tokens, c.max_tokens);
    let err =
        Config::parse(br#"{"routes":[{"name":"r","path_prefix":"/","max_tokens":{"limit":0}}]}"#)
            .unwrap_err();
    assert_eq!(err.field, "routes[0].max_tokens.limit");
}

#[test]
fn judge_config() {
    let c = Config::parse(
        br#"{"judge":{"cluster":"outbound|50051||judge.sluice.svc.cluster.local","failure":"closed"},
            "routes":[{"name":"emb","path_prefix":"/v1/embeddings","judge":false},
                      {"name":"chat","path_prefix":"/v1/chat","judge_failure":"open"}]}"#,
    )
    .unwrap();
    let judge = c.judge.unwrap();
    assert_eq!(judge.timeout_ms, 300);
    assert_eq!(judge.failure, JudgeFailure::Closed);
    assert_eq!(judge.action, Action::Block);
    assert!(!c.routes[0].use_judge);
    assert_eq!(c.routes[1].judge_failure, Some(JudgeFailure::Open));
    let err = Config::parse(br#"{"judge":{"cluster":"j","timeout_ms":0}}"#).unwrap_err();
    assert_eq!(err.field, "judge.timeout_ms");
    let err = Config::parse(br#"{"judge":{"timeout_ms":5}}"#).unwrap_err();
    assert!(err.reason.contains("cluster"), "{err}");
}

#[test]
fn access_and_budgets() {
    let c = Config::parse(
        br#"{"identity":{"header":"X-Workload"},
            "allow":{"providers":["openai","anthropic"],"models":["gpt-4o-mini","claude-*"]},
            "budget":{"window_s":60,"requests":100},
            "routes":[{"name":"emb","path_prefix":"/v1/embeddings","allow":{"models":["text-embedding-3-small"]}}],
            "workloads":[
              {"identity":"spiffe://cluster.local/ns/batch/*","budget":{"window_s":3600,"tokens":100000}},
              {"identity":"spiffe://cluster.local/ns/shop/sa/checkout","allow":{"providers":["openai"]}}]}"#,
    )
    .unwrap();
    assert_eq!(c.identity_header.as_deref(), Some("x-workload"));
    assert_eq!(
        c.allow.providers,
        Some(vec![Provider::OpenAi, Provider::Anthropic])
    );
    assert!(c
        .allow
        .check(Provider::Anthropic, Some("claude-3-5-haiku"))
        .is_ok());
    assert!(c.allow.check(Provider::OpenAi, Some("gpt-4o")).is_err());
    assert_eq!(
        c.budget,
        Some(Limits {
            window_s: 60,
            requests: Some(100),
            tokens: None
        })
    );
    let batch = c
        .workload_for("spiffe://cluster.local/ns/batch/sa/nightly")
        .unwrap();
    assert_eq!(batch.budget.unwrap().tokens, Some(100_000));
    assert_eq!(batch.allow, AllowList::default());
    assert!(c
        .workload_for("spiffe://cluster.local/ns/other/sa/x")
        .is_none());
    assert!(c.routes[0].allow.is_some());
    assert!(c.controls_access());
    assert!(!Config::default().controls_access());
}

#[test]
fn access_and_budget_errors_name_the_field() {
    let cases: [(&[u8], &str); 9] = [
        (
            br#"{"allow":{"providers":["openia"]}}"#,
            "allow.providers[0]",
        ),
        (br#"{"allow":{"providers":[]}}"#, "allow.providers"),
        (br#"{"allow":{"models":["gp*t"]}}"#, "allow.models[0]"),
        (br#"{"allow":{"model":["x"]}}"#, "allow"),
        (
            br#"{"budget":{"window_s":0,"requests":1}}"#,
            "budget.window_s",
        ),
        (br#"{"budget":{"window_s":60}}"#, "budget"),
        (br#"{"budget":{"window_s":60,"tokens":0}}"#, "budget.tokens"),
        (
            br#"{"workloads":[{"identity":"a*b","budget":{"window_s":1,"requests":1}}]}"#,
            "workloads[0].identity",
        ),
        (
            br#"{"routes":[{"name":"r","path_prefix":"/","allow":{"models":[]}}]}"#,
            "routes[0].allow.models",
        ),
    ];
    for (input, field) in cases {
        let err = Config::parse(input).unwrap_err();
        assert!(
            err.field.starts_with(field),
            "{}: got {err}",
            String::from_utf8_lossy(input),
        );
    }
    let err = Config::parse(br#"{"allow":{"providers":["openia"]}}"#).unwrap_err();
    assert!(err.reason.contains("unknown variant"), "{err}");
}

#[test]
fn errors_name_the_field() {
    let cases: [(&[u8], &str); 8] = [
        (b"{", ""),
        (br#"{"expose_verdict_header":true}"#, ""),
        (br#"{"on_parse_error":"explode"}"#, "on_parse_error"),
        (br#"{"block_status":42}"#, "block_status"),
        (
            br#"{"detectors":{"nope":{"action":"block"}}}"#,
            "detectors.nope",
        ),
        (
            br#"{"detectors":{"pii":{"action":"block","threshold":2}}}"#,
            "detectors.pii.threshold",
        ),
        (
            br#"{"detectors":{"pii":{"action":"shout"}}}"#,
            "detectors.pii.action",
        ),
        (
            br#"{"routes":[{"name":"x","path_prefix":"v1"}]}"#,
            "routes[0].path_prefix",
        ),
    ];
    for (input, field) in cases {
        let err = Config::parse(input).unwrap_err();
        assert!(
            err.field.starts_with(field),
            "{}: got field {:?}",
            String::from_utf8_lossy(input),
            err.field
        );
    }
    let err = Config::parse(br#"{"expose_verdict_header":true}"#).unwrap_err();
    assert!(err.to_string().contains("expose_verdict_header"), "{err}");
}

#[test]
fn answer_expectations_are_checked_where_they_are_set() {
    let c = Config::parse(
        br#"{"detectors":{"output_json":{"action":"block","fence":false,"required_keys":["a"]},
            "output_language":{"action":"alert","languages":["EN","de"]},
            "output_exfiltration":{"action":"alert","allowed_hosts":["Cdn.Example.com."]}}}"#,
    )
    .unwrap();
    let expect = c.policy.expectations();
    assert!(!expect.json_fence);
    assert_eq!(expect.json_required_keys, ["a"]);
    assert_eq!(expect.languages, [Language::English, Language::German]);
    assert_eq!(expect.allowed_hosts, ["cdn.example.com"]);
    let refused: [(&[u8], &str, &str); 6] = [
        (
            br#"{"detectors":{"pii":{"action":"alert","languages":["en"]}}}"#,
            "detectors.pii.languages",
            "only output_language",
        ),
        (
            br#"{"detectors":{"output_language":{"action":"alert"}}}"#,
            "detectors.output_language.languages",
            "needs the languages",
        ),
        (
            br#"{"detectors":{"output_language":{"action":"alert","languages":["xx"]}}}"#,
            "detectors.output_language.languages",
            "unknown language",
        ),
        (
            br#"{"detectors":{"output_json":{"action":"redact"}}}"#,
            "detectors.output_json.action",
            "cannot redact",
        ),
        (
            br#"{"detectors":{"output_exfiltration":{"action":"alert","allowed_hosts":["https://x.com/"]}}}"#,
            "detectors.output_exfiltration.allowed_hosts",
            "not a host name",
        ),
        (
            br#"{"routes":[{"name":"r","path_prefix":"/r/","detectors":{"output_json":{"action":"alert","languages":["en"]}}}]}"#,
            "routes[0].detectors.output_json.languages",
            "only output_language",
        ),
    ];
    for (input, field, why) in refused {
        let err = Config::parse(input).unwrap_err();
        assert_eq!(err.field, field, "{}", String::from_utf8_lossy(input));
        assert!(err.to_string().contains(why), "{err}");
    }
}
