//! The personal-data scanners: every format, its near misses, and odd input.

use super::*;

/// The number scan as it was, byte by byte.
fn digit_runs_reference(b: &[u8], out: &mut Vec<Finding>) {
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && !(b[i].is_ascii_digit() || matches!(b[i], b'+' | b'(')) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        i = number_at(b, i, out);
    }
}

/// The IBAN scan as it was before it jumped between digit pairs: every start tried.
fn ibans_reference(b: &[u8], out: &mut Vec<Finding>) {
    let mut i = 0;
    while i + 4 <= b.len() {
        // A start at i..i+3 needs b[i+3] to be a digit (i, i+1) or an upper-case letter
        // (i+2, i+3): in lower-case prose this skips four bytes at a time.
        if !(b[i + 3].is_ascii_digit() || b[i + 3].is_ascii_uppercase()) {
            i += 4;
            continue;
        }
        let ok_start = b[i].is_ascii_uppercase()
            && b.get(i + 1).is_some_and(|c| c.is_ascii_uppercase())
            && b.get(i + 2).is_some_and(|c| c.is_ascii_digit())
            && b.get(i + 3).is_some_and(|c| c.is_ascii_digit())
            && (i == 0 || !is_alnum_at(b, i - 1));
        if !ok_start {
            i += 1;
            continue;
        }
        if let Some(e) = iban_at(b, i) {
            out.push(finding(IBAN, i..e, 0.99));
            i = e;
        } else {
            i += 1;
        }
    }
}

proptest::proptest! {
    /// Jumping between digit pairs finds the IBANs the scan of every start found.
    #[test]
    fn iban_jumps_find_the_same(parts in proptest::collection::vec(proptest::prop_oneof![
        proptest::prelude::Just("GB82WEST12345698765432".to_owned()),
        proptest::prelude::Just("GB82 WEST 1234 5698 7654 32".to_owned()),
        proptest::prelude::Just("DE89370400440532013000".to_owned()),
        "[A-Z0-9 ]{0,8}",
        "[a-zA-Z0-9 .]{0,6}",
    ], 0..8)) {
        let text = parts.concat();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        ibans(text.as_bytes(), &mut a);
        ibans_reference(text.as_bytes(), &mut b);
        proptest::prop_assert_eq!(a, b);
    }
}

proptest::proptest! {
    /// Jumping to digits finds the numbers that the byte-by-byte scan found.
    #[test]
    fn number_jumps_find_the_same(parts in proptest::collection::vec(proptest::prop_oneof![
        proptest::prelude::Just("+1-415-555-0134".to_owned()),
        proptest::prelude::Just("(415) 555-0134".to_owned()),
        proptest::prelude::Just("4111 1111 1111 1111".to_owned()),
        proptest::prelude::Just("123-45-6789".to_owned()),
        proptest::prelude::Just("192.168.1.20".to_owned()),
        proptest::prelude::Just("\\n".to_owned()),
        "[0-9+(). -]{0,8}",
        "[a-z0-9+(]{0,5}",
        "\\PC{0,3}",
    ], 0..10)) {
        let text = parts.concat();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        digit_runs(text.as_bytes(), &mut a);
        digit_runs_reference(text.as_bytes(), &mut b);
        proptest::prop_assert_eq!(a, b);
    }
}

fn kinds(text: &str) -> Vec<(&'static str, &str)> {
    let mut v = Vec::new();
    scan(text, &mut v);
    v.sort_by_key(|f| f.span.start);
    v.iter()
        .map(|f| (f.kind, text.get(f.span.clone()).unwrap_or("?")))
        .collect()
}

#[test]
fn table() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            "mail jane.doe+x@example.co.uk now",
            &[(EMAIL, "jane.doe+x@example.co.uk")],
        ),
        ("at @home or a@b or user@localhost", &[]),
        (
            "card 4111 1111 1111 1111 ok",
            &[(CARD, "4111 1111 1111 1111")],
        ),
        ("card 4111-1111-1111-1112 bad luhn", &[]),
        ("card 060450306786", &[(CARD, "060450306786")]),
        (
            "IBAN GB82 WEST 1234 5698 7654 32.",
            &[(IBAN, "GB82 WEST 1234 5698 7654 32")],
        ),
        (
            "IBAN DE89370400440532013000",
            &[(IBAN, "DE89370400440532013000")],
        ),
        ("IBAN DE89370400440532013001", &[]),
        ("SSN 123-45-6789", &[(SSN, "123-45-6789")]),
        ("SSN 666-45-6789 or 900-12-3456 or 123-00-4567", &[]),
        (
            "ip 192.168.1.20, not 1.2.3.4.5 or 999.1.1.1",
            &[(IP, "192.168.1.20")],
        ),
        (
            "v6 2001:db8::8a2e:370:7334 end",
            &[(IP, "2001:db8::8a2e:370:7334")],
        ),
        ("at 12:30:45 or std::vec", &[]),
        (
            "call +44 20 7946 0958 today",
            &[(PHONE, "+44 20 7946 0958")],
        ),
        ("call (978)519-3639x511 I", &[(PHONE, "(978)519-3639x511")]),
        (
            "to 001-738-856-7586x53119.",
            &[(PHONE, "001-738-856-7586x53119")],
        ),
        ("on 8569096665. ok", &[(PHONE, "8569096665")]),
        ("tel 693.785.7133", &[(PHONE, "693.785.7133")]),
        ("+1-763-531-3258x5866", &[(PHONE, "+1-763-531-3258x5866")]),
        ("in 2023 we had 1500 users, version 1.2.3", &[]),
        ("+49 (0) 30 1234567", &[(PHONE, "+49 (0) 30 1234567")]),
    ];
    for (text, want) in cases {
        assert_eq!(&kinds(text), want, "text {text:?}");
    }
}

#[test]
fn evasion_and_odd_input() {
    // Unicode around values does not break spans; odd input never panics.
    assert_eq!(kinds("é✓ a@b.io ✓"), vec![(EMAIL, "a@b.io")]);
    for s in [
        "@", "a@", "@b.c", "+", "(", "1-", "GB82", "::", "1.", "+1 (", "4111 ",
    ] {
        let _ = kinds(s);
    }
}

#[test]
fn context_decides_what_a_look_alike_is() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        // National phone formats count where a cue word announces them.
        ("call me on 07700 900123", &[(PHONE, "07700 900123")]),
        ("Tel.: 030 12345678", &[(PHONE, "030 12345678")]),
        ("mon portable : 06 12345678", &[(PHONE, "06 12345678")]),
        ("phone 0044 20 7946 0958", &[(PHONE, "0044 20 7946 0958")]),
        ("Telefon 030 1234567", &[(PHONE, "030 1234567")]),
        ("order 07700 900123 shipped", &[]),
        // Identifiers, ISBNs, versions, loopback and networks are no one's data.
        ("ticket ORD-2024-000123-45 closed", &[]),
        ("ISBN 978-3-16-148410-0", &[]),
        ("see 978-0-306-40615-7 for details", &[]),
        ("running version 1.2.3.4 now", &[]),
        ("bind 127.0.0.1 or 0.0.0.0, route 10.0.0.0/8", &[]),
        ("host 10.0.0.7 is down", &[(IP, "10.0.0.7")]),
        (
            "eth0 10.0.1.40/24, server 192.43.244.18",
            &[(IP, "10.0.1.40"), (IP, "192.43.244.18")],
        ),
        ("clone git@github.com:org/repo.git", &[]),
        (
            "mail git@github.com: it bounced",
            &[(EMAIL, "git@github.com")],
        ),
    ];
    for (text, want) in cases {
        assert_eq!(&kinds(text), want, "text {text:?}");
    }
}
