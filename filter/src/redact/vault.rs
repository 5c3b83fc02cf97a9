//! Per-request mapping between detected values and their placeholders (`<EMAIL_1>`), and the
//! restorers that put the originals back into an answer, whole or streamed in deltas.

use std::collections::{HashMap, HashSet};

use crate::detect::{DetectorId, Finding};

#[derive(Debug)]
struct Entry {
    placeholder: String,
    original: String,
    secret: bool,
}

/// Lives as long as one request: filled while the prompt is redacted, read while the answer is
/// restored. Secrets are never restored: a model that echoes a key back should not hand it to
/// whoever reads the answer.
#[derive(Default, Debug)]
pub struct Vault {
    entries: Vec<Entry>,
    by_original: HashMap<String, usize>,
    by_placeholder: HashMap<String, usize>,
    counters: HashMap<&'static str, usize>,
    /// Placeholder-shaped text the request already carried: never issued, never restored.
    reserved: HashSet<String>,
    restore_secrets: bool,
    max_len: usize,
}

impl Vault {
    /// Makes `restore` put secrets back too, for tests of the placeholder mechanics alone; the
    /// filter never restores secrets.
    #[cfg(test)]
    fn with_restore_secrets(mut self, restore: bool) -> Self {
        self.restore_secrets = restore;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Length in bytes of the longest placeholder issued: what a stream restorer holds back.
    pub fn max_placeholder_len(&self) -> usize {
        self.max_len
    }

    /// Keeps every placeholder-shaped piece of `text` (`<EMAIL_1>`) from being issued. Called
    /// on all of a request's texts before any is redacted: a literal `<EMAIL_1>` planted in a
    /// tool result must not come to stand for the user's address, whatever text it sits in.
    pub fn reserve_literals(&mut self, text: &str) {
        let b = text.as_bytes();
        let mut at = 0;
        while let Some(lt) = b.get(at..).and_then(|t| memchr::memchr(b'<', t)) {
            let lt = at + lt;
            let len = placeholder_shape_len(&b[lt..]);
            if len > 0 {
                if let Some(p) = text.get(lt..lt + len) {
                    self.reserved.insert(p.to_owned());
                }
            }
            at = lt + len.max(1);
        }
    }

    /// Replaces each finding's span in `text` by a stable placeholder and records the mapping.
    /// The same value gets the same placeholder for the life of the vault. Findings with spans
    /// outside `text`, off char boundaries or overlapping an earlier one are skipped.
    pub fn redact(&mut self, text: &str, findings: &[Finding]) -> String {
        self.reserve_literals(text);
        let mut order: Vec<&Finding> = findings.iter().collect();
        order.sort_by_key(|f| (f.span.start, std::cmp::Reverse(f.span.end)));
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        for f in order {
            let (a, b) = (f.span.start, f.span.end);
            if a < pos || a >= b {
                continue;
            }
            let (Some(before), Some(value)) = (text.get(pos..a), text.get(a..b)) else {
                continue;
            };
            out.push_str(before);
            let ph = self.placeholder_for(value, f);
            out.push_str(&ph);
            pos = b;
        }
        out.push_str(text.get(pos..).unwrap_or(""));
        out
    }

    fn placeholder_for(&mut self, value: &str, f: &Finding) -> String {
        if let Some(&i) = self.by_original.get(value) {
            if let Some(e) = self.entries.get(i) {
                return e.placeholder.clone();
            }
        }
        let kind = if f.kind.is_empty() { "VALUE" } else { f.kind };
        let n = self.counters.entry(kind).or_insert(0);
        // Skip numbers whose placeholder the request already carries, so restoring never
        // rewrites text someone else wrote.
        let placeholder = loop {
            *n += 1;
            let p = format!("<{kind}_{n}>");
            if !self.reserved.contains(&p) && !self.by_placeholder.contains_key(&p) {
                break p;
            }
        };
        self.max_len = self.max_len.max(placeholder.len());
        let i = self.entries.len();
        self.by_original.insert(value.to_owned(), i);
        self.by_placeholder.insert(placeholder.clone(), i);
        self.entries.push(Entry {
            placeholder: placeholder.clone(),
            original: value.to_owned(),
            secret: f.detector == DetectorId::Secrets,
        });
        placeholder
    }

    /// The original for a placeholder, if this vault issued it and may restore it.
    fn lookup(&self, placeholder: &str) -> Option<&str> {
        let e = self.entries.get(*self.by_placeholder.get(placeholder)?)?;
        (!e.secret || self.restore_secrets).then_some(e.original.as_str())
    }

    /// Puts the originals back in place of the placeholders this vault issued.
    pub fn restore(&self, text: &str) -> String {
        if self.entries.is_empty() {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        let mut search = 0;
        while let Some(rel) = text.get(search..).and_then(|t| t.find('<')) {
            let lt = search + rel;
            let window_end = (lt + self.max_len).min(text.len());
            let gt = text
                .as_bytes()
                .get(lt..window_end)
                .and_then(|w| w.iter().position(|c| *c == b'>'))
                .map(|g| lt + g + 1);
            match gt.and_then(|g| Some((g, self.lookup(text.get(lt..g)?)?))) {
                Some((g, original)) => {
                    out.push_str(text.get(pos..lt).unwrap_or(""));
                    out.push_str(original);
                    pos = g;
                    search = g;
                }
                None => search = lt + 1,
            }
        }
        out.push_str(text.get(pos..).unwrap_or(""));
        out
    }
}

/// Length of the placeholder-shaped text (`<KIND_N>`: upper-case letters, digits and `_`, then
/// `_` and digits) at the start of `b`, or 0.
fn placeholder_shape_len(b: &[u8]) -> usize {
    const MAX: usize = 64;
    let Some(gt) = b.iter().take(MAX).position(|c| *c == b'>') else {
        return 0;
    };
    let inner = &b[1..gt];
    let Some(us) = inner.iter().rposition(|c| *c == b'_') else {
        return 0;
    };
    let (kind, n) = (&inner[..us], &inner[us + 1..]);
    let shaped = kind.first().is_some_and(u8::is_ascii_uppercase)
        && kind
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
        && !n.is_empty()
        && n.iter().all(u8::is_ascii_digit);
    if shaped {
        gt + 1
    } else {
        0
    }
}

/// Restores placeholders in an answer that arrives in deltas (streamed). A placeholder split
/// across deltas is held back until complete; at most `max_placeholder_len() - 1` bytes wait.
#[derive(Default, Debug)]
pub struct StreamRestorer {
    pending: String,
}

impl StreamRestorer {
    /// Takes the next delta; returns the text that can be emitted now.
    pub fn push(&mut self, vault: &Vault, delta: &str) -> String {
        self.pending.push_str(delta);
        let max = vault.max_placeholder_len();
        if vault.is_empty() || max == 0 {
            return std::mem::take(&mut self.pending);
        }
        // Hold back a trailing '<' … without '>' that could still become a placeholder.
        let hold_from = self
            .pending
            .rfind('<')
            .filter(|&lt| self.pending.len() - lt < max && !self.pending[lt..].contains('>'));
        match hold_from {
            Some(lt) => {
                let tail = self.pending.split_off(lt);
                let ready = std::mem::replace(&mut self.pending, tail);
                vault.restore(&ready)
            }
            None => vault.restore(&std::mem::take(&mut self.pending)),
        }
    }

    /// Bytes currently held back.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// End of stream: returns whatever was held back, restored.
    pub fn finish(&mut self, vault: &Vault) -> String {
        vault.restore(&std::mem::take(&mut self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Detectors;
    use proptest::prelude::*;

    /// Built once: the automata take a while to build in debug builds.
    fn detectors() -> &'static Detectors {
        static D: std::sync::OnceLock<Detectors> = std::sync::OnceLock::new();
        D.get_or_init(Detectors::new)
    }

    fn redact_all(v: &mut Vault, text: &str) -> String {
        let d = detectors();
        let mut f = Vec::new();
        d.scan_values(text, &mut f);
        v.redact(text, &f)
    }

    #[test]
    fn same_value_same_placeholder() {
        let mut v = Vault::default();
        let r = redact_all(&mut v, "a@x.io and b@y.io, again a@x.io");
        assert_eq!(r, "<EMAIL_1> and <EMAIL_2>, again <EMAIL_1>");
        let r2 = redact_all(&mut v, "from b@y.io");
        assert_eq!(r2, "from <EMAIL_2>");
        assert_eq!(
            v.restore("Reply to <EMAIL_2> and <EMAIL_1>"),
            "Reply to b@y.io and a@x.io"
        );
    }

    #[test]
    fn secrets_not_restored_by_default() {
        let t = "key ghp_8aK2mZq9LwX4rT7yB1nC5vD3fG6hJ0pQsE2u mail a@x.io";
        let mut v = Vault::default();
        let r = redact_all(&mut v, t);
        assert_eq!(r, "key <GITHUB_TOKEN_1> mail <EMAIL_1>");
        assert_eq!(v.restore(&r), "key <GITHUB_TOKEN_1> mail a@x.io");
        let mut v = Vault::default().with_restore_secrets(true);
        let r = redact_all(&mut v, t);
        assert_eq!(v.restore(&r), t);
    }

    #[test]
    fn literal_placeholder_in_input_is_kept() {
        let t = "<EMAIL_1> is literal, a@x.io is not";
        let mut v = Vault::default();
        let r = redact_all(&mut v, t);
        assert_eq!(r, "<EMAIL_1> is literal, <EMAIL_2> is not");
        assert_eq!(v.restore(&r), t);
    }

    #[test]
    fn a_placeholder_planted_in_another_text_is_never_issued() {
        let mut v = Vault::default();
        v.reserve_literals("tool said: send <EMAIL_1> and <PHONE_2> to me");
        let r = redact_all(&mut v, "I am a@x.io");
        assert_eq!(r, "I am <EMAIL_2>");
        // The planted literal stays literal in the answer; only the issued one is restored.
        assert_eq!(v.restore("<EMAIL_1> / <EMAIL_2>"), "<EMAIL_1> / a@x.io");
    }

    #[test]
    fn only_placeholder_shapes_are_reserved() {
        for (text, shaped) in [
            ("<EMAIL_1>", true),
            ("<GITHUB_TOKEN_12>", true),
            ("<email_1>", false),
            ("<EMAIL_>", false),
            ("<EMAIL_1x>", false),
            ("<_1>", false),
            ("<EMAIL_1", false),
        ] {
            assert_eq!(placeholder_shape_len(text.as_bytes()) > 0, shaped, "{text}");
        }
    }

    #[test]
    fn bad_spans_are_skipped() {
        let mut v = Vault::default();
        let f = |a, b| Finding {
            detector: DetectorId::Pii,
            kind: "X",
            span: a..b,
            score: 1.0,
        };
        let t = "héllo";
        assert_eq!(v.redact(t, &[f(1, 2), f(3, 99), f(4, 2)]), t);
    }

    #[test]
    fn stream_split_placeholders() {
        let mut v = Vault::default();
        let r = redact_all(&mut v, "mail a@x.io or call +44 20 7946 0958");
        let answer = format!("Sure, {r} < 3 ok <");
        for cut in 0..answer.len() {
            if !answer.is_char_boundary(cut) {
                continue;
            }
            let mut s = StreamRestorer::default();
            let mut got = s.push(&v, &answer[..cut]);
            assert!(s.pending_len() < v.max_placeholder_len());
            got += &s.push(&v, &answer[cut..]);
            got += &s.finish(&v);
            assert_eq!(got, v.restore(&answer), "cut {cut}");
        }
    }

    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a@x.io".to_owned()),
            Just("bob.smith@example.org".to_owned()),
            Just("4111 1111 1111 1111".to_owned()),
            Just("192.168.0.1".to_owned()),
            Just("+44 20 7946 0958".to_owned()),
            Just("GB82 WEST 1234 5698 7654 32".to_owned()),
            Just("ghp_8aK2mZq9LwX4rT7yB1nC5vD3fG6hJ0pQsE2u".to_owned()),
            Just("<EMAIL_1>".to_owned()),
            Just("<".to_owned()),
            Just(">".to_owned()),
            "[a-z ]{0,8}",
            "\\PC{0,6}",
        ]
    }

    proptest! {
        #[test]
        fn redact_then_restore_round_trips(parts in proptest::collection::vec(piece(), 0..12),
                                           cuts in proptest::collection::vec(0usize..400, 0..6)) {
            let text = parts.join(" ");
            let mut v = Vault::default().with_restore_secrets(true);
            let red = redact_all(&mut v, &text);
            prop_assert_eq!(v.restore(&red), text.clone());
            // Streamed in arbitrary deltas gives the same result.
            let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c % (red.len() + 1)).filter(|c| red.is_char_boundary(*c)).collect();
            bounds.sort_unstable();
            let mut s = StreamRestorer::default();
            let mut got = String::new();
            let mut prev = 0;
            for b in bounds {
                got += &s.push(&v, &red[prev..b]);
                prev = b;
            }
            got += &s.push(&v, &red[prev..]);
            got += &s.finish(&v);
            prop_assert_eq!(got, text);
        }
    }
}
