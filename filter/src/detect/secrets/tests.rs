//! The secret detector on every shape and form, and on text that only looks like secrets.

use super::*;

fn kinds(text: &str) -> Vec<(&'static str, String)> {
    static D: std::sync::OnceLock<SecretDetector> = std::sync::OnceLock::new();
    let d = D.get_or_init(SecretDetector::new);
    let mut v = Vec::new();
    d.scan(text, &mut v);
    v.iter()
        .map(|f| (f.kind, text.get(f.span.clone()).unwrap_or("?").to_owned()))
        .collect()
}

#[test]
fn table() {
    let ant = format!("sk-ant-api03-{}AA", "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6kM9nP2rS5uV8xY1zA4cD7fG0iL3oR6tU9wX2aZ5bY8cX1dW4eV7fU0gT3hS6iR9jQ2kP".get(..93).unwrap_or(""));
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("key: sk-proj-Ab3xY9kLm2Qr7Tz1Wc5Nv8Hj4Gf6Dp0SaBq7WmZ2RtL9xKvN4pEj".into(), vec!["OPENAI_API_KEY"]),
        (ant, vec!["ANTHROPIC_API_KEY"]),
        ("AKIAIOSFODNN7EXAMPLE".into(), vec![]),
        ("id AKIAZ3MNQ4XK5PLRTW7Y here".into(), vec!["AWS_ACCESS_KEY_ID"]),
        ("aws_secret_access_key = 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".into(), vec!["GENERIC_SECRET"]),
        ("ghp_8aK2mZq9LwX4rT7yB1nC5vD3fG6hJ0pQsE2u".into(), vec!["GITHUB_TOKEN"]),
        ("ghr_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx".into(), vec![]),
        ("glpat-Zx8Kq2Lm9Nw4Rt7Yb1Vc".into(), vec!["GITLAB_TOKEN"]),
        ("xoxb-1234567890-0987654321-Qm7Lk2Rt9Vx4Nb8Wp3Zc6Hj1".into(), vec!["SLACK_TOKEN"]),
        ("sk_live_4eC39HqLyjWDarjtT1zdp7dc".into(), vec!["STRIPE_KEY"]),
        ("AIzaSyD3kP9xQ2mLw8Rt5Yb7Nc1Vf4Hj6Gs0Ua_".into(), vec!["GOOGLE_API_KEY"]),
        ("firebase: \"AIzaSyAnLA7NfeLquW1tJFpx_eQCxoX-oo6YyIs\"".into(), vec![]),
        ("pscale_pw_u2sm4tyfh2e=21q5qzgo6k61ma4yvyh9".into(), vec!["PLANETSCALE_TOKEN"]),
        ("PMAK-6e99fe6e722c1d85df0eac41-1db7fbc990730e89fb504d08dd4eb2a97b".into(), vec!["POSTMAN_KEY"]),
        ("tfp_ukftr05-63dt4=tm88coc1hjwkyaze268h-f=chxm3hkis481f6x0ixek3j".into(), vec!["TYPEFORM_TOKEN"]),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U".into(), vec!["JWT"]),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq9Xk2mLw8Rt5Yb7Nc1Vf4Hj6Gs0Ua3zQ\n-----END RSA PRIVATE KEY-----".into(), vec!["PRIVATE_KEY"]),
        ("-----BEGIN OPENSSH PRIVATE KEY----------END OPENSSH PRIVATE KEY-----".into(), vec![]),
        ("postgres://admin:S3cr3tPw9@db.internal:5432/app".into(), vec!["CONNECTION_STRING"]),
        ("postgres://user:${PASSWORD}@db/app".into(), vec![]),
        ("Authorization: Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0".into(), vec!["GENERIC_SECRET"]),
        ("the token is valid for one hour".into(), vec![]),
        ("password: changeme".into(), vec![]),
        ("api_key = \"YOUR_API_KEY_HERE\"".into(), vec![]),
        ("DEPLOY_TOKEN ?= \"9f8e7d6c-5b4a-3928-1706-f5e4d3c2b1a0\"".into(), vec!["GENERIC_SECRET"]),
        ("DEPLOY_TOKEN ::= 9f8e7d6c5b4a39281706f5e4d3c2b1a0".into(), vec!["GENERIC_SECRET"]),
        ("export BUNDLE_GEMS__CONTRIBSYS__COM=\"0af3c2d1:9b8e7f6a\"".into(), vec!["SIDEKIQ_SECRET"]),
        ("BUNDLE_GEMS__CONTRIBSYS__COM: 0af3c2d1:9b8e7f6".into(), vec![]),
        ("sqp_9f8e7d6c5b4a39281706f5e4d3c2b1a0a1b2c3d4".into(), vec!["SONARQUBE_TOKEN"]),
        ("see video_box.ico-7a388b69018576d24b59331fd60aab0c.png".into(), vec![]),
        ("token 1308742762612587|rhoK1cbv0DOU_RTX_87O4MkX7AI".into(), vec!["FACEBOOK_TOKEN"]),
        ("ids 1308742762612587|42 and a|b".into(), vec![]),
        ("\"token4\": \"xoxp-572370529330-573807301142-572331691188-####\"".into(), vec![]),
        (format!("sk-ant-api03-{}BB", "aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6kM9nP2rS5uV8xY1zA4cD7fG0iL3oR6tU9wX2aZ5bY8cX1dW4eV7fU0gT3hS6iR9jQ2kP".get(..93).unwrap_or("")), vec![]),
    ];
    for (text, want) in cases {
        let got: Vec<&str> = kinds(&text).iter().map(|k| k.0).collect();
        assert_eq!(got, want, "text {text:?} -> {:?}", kinds(&text));
    }
}

use proptest::prelude::*;

/// The key-word scan over the whole text, which `assigned` narrows to windows.
fn assigned_everywhere(d: &SecretDetector, text: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(ac) = &d.keywords {
        for m in ac.find_iter(text) {
            d.assigned_at(text, m, &mut out);
        }
    }
    out
}

/// Every maximal run of token bytes at least `min` long, byte by byte.
fn long_runs_everywhere(b: &[u8], min: usize) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && TOKEN[b[i] as usize] {
            i += 1;
        }
        if i - start >= min.max(1) {
            runs.push(start..i);
        }
        i = i.max(start + 1);
    }
    runs
}

proptest::proptest! {
    #[test]
    fn probed_runs_are_all_long_runs(text in "[a-c_ .,=\n-]{0,80}", min in 0usize..12) {
        let mut probed = Vec::new();
        long_runs(text.as_bytes(), min, |r| probed.push(r));
        proptest::prop_assert_eq!(probed, long_runs_everywhere(text.as_bytes(), min));
    }

    #[test]
    fn keyword_windows_find_the_same(parts in proptest::collection::vec(proptest::prop_oneof![
        proptest::sample::select(vec![
            "token", "Token", "API_KEY", "apiKey", "monkey", "pass", "Password", "id", "bearer",
            "BeArEr", "Bearer ", "is ", "IS ", "iS", "this ", " ", "  ", "=", ":", "?", "->",
            "=>", "\"", "'", "]", "`", "-", "_", ".", "\n", "x-api-key", "é", "b",
        ]).prop_map(str::to_owned),
        "[A-Za-z0-9]{1,24}",
    ], 0..16)) {
        let d = SecretDetector::new();
        let text: String = parts.concat();
        let mut windowed = Vec::new();
        d.assigned(&text, &mut windowed);
        proptest::prop_assert_eq!(windowed, assigned_everywhere(&d, &text));
    }
}

#[test]
fn odd_input() {
    for s in [
        "-----BEGIN ",
        "eyJ",
        "eyJa.eyJ",
        "://",
        "a://b:c@",
        "token=",
        "sk-",
        "é token: é",
    ] {
        let _ = kinds(s);
    }
}
