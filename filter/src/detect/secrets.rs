//! Secrets: credentials with a recognisable shape (provider prefixes, JWTs, PEM private keys,
//! connection strings with passwords) and high-entropy values assigned to a key word
//! (`api_key = "…"`, `Authorization: Bearer …`). Prefixes and key words are found with
//! aho-corasick; each candidate is then read by hand and checked for length, charset,
//! entropy and placeholder look (`xxxx`, `<token>`, `${VAR}`).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, Input, MatchKind};

use super::{is_alnum_at, DetectorId, Finding};

/// A provider token shape: literal prefix, body charset, body length range, kind.
struct Shape {
    prefix: &'static str,
    body: Charset,
    min: usize,
    max: usize,
    kind: &'static str,
    /// Must the prefix start at a word boundary?
    boundary: bool,
    /// Fixed ending of the body, if the format has one (Anthropic keys end in `AA`).
    suffix: &'static str,
}

#[derive(Clone, Copy)]
enum Charset {
    /// A–Z a–z 0–9
    Alnum,
    /// Alnum plus `_` and `-`
    Url,
    /// Upper-case letters and digits 2–7 (AWS key ids)
    UpperB32,
    /// Alnum plus `_ - . / + =`
    Wide,
}

impl Charset {
    fn allows(self, c: u8) -> bool {
        match self {
            Charset::Alnum => c.is_ascii_alphanumeric(),
            Charset::Url => c.is_ascii_alphanumeric() || c == b'_' || c == b'-',
            Charset::UpperB32 => c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c),
            Charset::Wide => {
                c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'/' | b'+' | b'=')
            }
        }
    }
}

const fn shape(
    prefix: &'static str,
    body: Charset,
    min: usize,
    max: usize,
    kind: &'static str,
) -> Shape {
    Shape {
        prefix,
        body,
        min,
        max,
        kind,
        boundary: true,
        suffix: "",
    }
}

/// `shape` whose body must end with `suffix`.
const fn ending(mut s: Shape, suffix: &'static str) -> Shape {
    s.suffix = suffix;
    s
}

use Charset::*;

const SHAPES: &[Shape] = &[
    ending(
        shape("sk-ant-api03-", Url, 95, 95, "ANTHROPIC_API_KEY"),
        "AA",
    ),
    ending(
        shape("sk-ant-admin01-", Url, 95, 95, "ANTHROPIC_API_KEY"),
        "AA",
    ),
    shape("sk-proj-", Url, 40, 200, "OPENAI_API_KEY"),
    shape("sk-svcacct-", Url, 40, 200, "OPENAI_API_KEY"),
    shape("sk-admin-", Url, 40, 200, "OPENAI_API_KEY"),
    shape("sk-", Alnum, 32, 64, "OPENAI_API_KEY"),
    shape("AKIA", UpperB32, 16, 16, "AWS_ACCESS_KEY_ID"),
    shape("ASIA", UpperB32, 16, 16, "AWS_ACCESS_KEY_ID"),
    shape("ABIA", UpperB32, 16, 16, "AWS_ACCESS_KEY_ID"),
    shape("ACCA", UpperB32, 16, 16, "AWS_ACCESS_KEY_ID"),
    shape("A3T", Alnum, 17, 17, "AWS_ACCESS_KEY_ID"),
    shape("ABSK", Wide, 100, 400, "AWS_BEDROCK_KEY"),
    shape("ghp_", Alnum, 36, 36, "GITHUB_TOKEN"),
    shape("gho_", Alnum, 36, 36, "GITHUB_TOKEN"),
    shape("ghu_", Alnum, 36, 36, "GITHUB_TOKEN"),
    shape("ghs_", Alnum, 36, 36, "GITHUB_TOKEN"),
    shape("ghr_", Alnum, 36, 36, "GITHUB_TOKEN"),
    shape("github_pat_", Url, 82, 82, "GITHUB_TOKEN"),
    shape("glpat-", Url, 20, 60, "GITLAB_TOKEN"),
    shape("gldt-", Url, 20, 60, "GITLAB_TOKEN"),
    shape("glrt-", Url, 20, 60, "GITLAB_TOKEN"),
    shape("glptt-", Url, 20, 60, "GITLAB_TOKEN"),
    shape("glft-", Url, 20, 60, "GITLAB_TOKEN"),
    shape("glsoat-", Url, 20, 60, "GITLAB_TOKEN"),
    shape("glcbt-", Url, 20, 60, "GITLAB_TOKEN"),
    shape("glimt-", Url, 25, 60, "GITLAB_TOKEN"),
    shape("glagent-", Url, 50, 80, "GITLAB_TOKEN"),
    shape("gloas-", Url, 64, 64, "GITLAB_TOKEN"),
    shape("GR1348941", Url, 20, 60, "GITLAB_TOKEN"),
    shape("xoxb-", Url, 20, 200, "SLACK_TOKEN"),
    shape("xoxp-", Url, 20, 200, "SLACK_TOKEN"),
    shape("xoxa-", Url, 20, 200, "SLACK_TOKEN"),
    shape("xoxr-", Url, 20, 200, "SLACK_TOKEN"),
    shape("xoxs-", Url, 20, 200, "SLACK_TOKEN"),
    shape("xoxe.xox", Url, 20, 300, "SLACK_TOKEN"),
    shape("xoxe-", Url, 20, 300, "SLACK_TOKEN"),
    shape("xapp-", Url, 20, 200, "SLACK_TOKEN"),
    shape("hooks.slack.com/services/", Wide, 30, 120, "SLACK_WEBHOOK"),
    shape("hooks.slack.com/workflows/", Wide, 30, 120, "SLACK_WEBHOOK"),
    shape("sk_live_", Alnum, 10, 200, "STRIPE_KEY"),
    shape("sk_test_", Alnum, 10, 200, "STRIPE_KEY"),
    shape("sk_prod_", Alnum, 10, 200, "STRIPE_KEY"),
    shape("rk_live_", Alnum, 10, 200, "STRIPE_KEY"),
    shape("rk_test_", Alnum, 10, 200, "STRIPE_KEY"),
    shape("rk_prod_", Alnum, 10, 200, "STRIPE_KEY"),
    shape("whsec_", Alnum, 24, 100, "STRIPE_KEY"),
    shape("AIza", Url, 35, 35, "GOOGLE_API_KEY"),
    shape("ya29.", Url, 30, 400, "GOOGLE_OAUTH_TOKEN"),
    shape("GOCSPX-", Url, 28, 28, "GOOGLE_CLIENT_SECRET"),
    shape("hf_", Alnum, 34, 34, "HUGGINGFACE_TOKEN"),
    shape("api_org_", Alnum, 34, 34, "HUGGINGFACE_TOKEN"),
    shape("npm_", Alnum, 36, 36, "NPM_TOKEN"),
    shape("pypi-AgEIcHlwaS5vcmc", Url, 50, 300, "PYPI_TOKEN"),
    shape("dop_v1_", Alnum, 64, 64, "DIGITALOCEAN_TOKEN"),
    shape("doo_v1_", Alnum, 64, 64, "DIGITALOCEAN_TOKEN"),
    shape("dor_v1_", Alnum, 64, 64, "DIGITALOCEAN_TOKEN"),
    shape("SG.", Wide, 60, 70, "SENDGRID_KEY"),
    shape("shpat_", Alnum, 32, 32, "SHOPIFY_TOKEN"),
    shape("shpca_", Alnum, 32, 32, "SHOPIFY_TOKEN"),
    shape("shppa_", Alnum, 32, 32, "SHOPIFY_TOKEN"),
    shape("shpss_", Alnum, 32, 32, "SHOPIFY_TOKEN"),
    shape("sntryu_", Alnum, 64, 64, "SENTRY_TOKEN"),
    shape("sntrys_", Wide, 60, 300, "SENTRY_TOKEN"),
    shape("pscale_tkn_", Wide, 32, 64, "PLANETSCALE_TOKEN"),
    shape("pscale_pw_", Wide, 32, 64, "PLANETSCALE_TOKEN"),
    shape("pscale_oauth_", Wide, 32, 64, "PLANETSCALE_TOKEN"),
    shape("AGE-SECRET-KEY-1", Alnum, 58, 58, "AGE_SECRET_KEY"),
    shape("dt0c01.", Wide, 80, 100, "DYNATRACE_TOKEN"),
    shape("sha256~", Url, 43, 43, "OPENSHIFT_TOKEN"),
    shape("lin_api_", Alnum, 40, 40, "LINEAR_API_KEY"),
    shape("figd_", Url, 40, 60, "FIGMA_TOKEN"),
    shape("FlyV1 ", Wide, 40, 900, "FLYIO_TOKEN"),
    shape("fm1r_", Wide, 40, 900, "FLYIO_TOKEN"),
    shape("fm2_", Wide, 40, 900, "FLYIO_TOKEN"),
    shape("fo1_", Url, 43, 43, "FLYIO_TOKEN"),
    shape("hvs.", Url, 90, 120, "VAULT_TOKEN"),
    shape("hvb.", Url, 130, 300, "VAULT_TOKEN"),
    shape("sq0atp-", Url, 22, 22, "SQUARE_TOKEN"),
    shape("sq0csp-", Url, 43, 43, "SQUARE_TOKEN"),
    shape("EAAA", Url, 60, 60, "SQUARE_TOKEN"),
    shape("EAACEdEose0cBA", Alnum, 20, 400, "FACEBOOK_TOKEN"),
    shape("ATATT3", Wide, 186, 200, "ATLASSIAN_TOKEN"),
    shape("dapi", Alnum, 32, 40, "DATABRICKS_TOKEN"),
    shape("glc_", Wide, 32, 400, "GRAFANA_TOKEN"),
    shape("glsa_", Url, 32, 60, "GRAFANA_TOKEN"),
    shape("PMAK-", Url, 59, 59, "POSTMAN_KEY"),
    shape("rubygems_", Alnum, 48, 48, "RUBYGEMS_KEY"),
    shape("pul-", Alnum, 40, 40, "PULUMI_TOKEN"),
    shape("sgp_", Alnum, 40, 80, "SOURCEGRAPH_TOKEN"),
    shape("tfp_", Wide, 59, 59, "TYPEFORM_TOKEN"),
    shape("xai-", Alnum, 80, 80, "XAI_API_KEY"),
    shape("gsk_", Alnum, 52, 52, "GROQ_API_KEY"),
    shape("r8_", Alnum, 37, 40, "REPLICATE_TOKEN"),
    shape("ops_eyJ", Wide, 250, 2000, "ONEPASSWORD_TOKEN"),
    shape("ico-", Url, 32, 32, "INFRACOST_TOKEN"),
    shape("CLOJARS_", Alnum, 60, 60, "CLOJARS_TOKEN"),
    shape("EZAK", Alnum, 54, 54, "EASYPOST_KEY"),
    shape("EZTK", Alnum, 54, 54, "EASYPOST_KEY"),
    shape("shippo_live_", Alnum, 40, 40, "SHIPPO_TOKEN"),
    shape("shippo_test_", Alnum, 40, 40, "SHIPPO_TOKEN"),
    shape("duffel_test_", Url, 43, 43, "DUFFEL_TOKEN"),
    shape("duffel_live_", Url, 43, 43, "DUFFEL_TOKEN"),
    shape("dp.pt.", Alnum, 43, 43, "DOPPLER_TOKEN"),
    shape("pk.eyJ", Wide, 30, 300, "MAPBOX_TOKEN"),
    shape("sk.eyJ", Wide, 30, 300, "MAPBOX_TOKEN"),
    shape("nrak-", Alnum, 27, 27, "NEWRELIC_KEY"),
    shape("NRAK-", Alnum, 27, 27, "NEWRELIC_KEY"),
    shape("NRJS-", Alnum, 19, 19, "NEWRELIC_KEY"),
    shape("oy2", Alnum, 43, 43, "NUGET_KEY"),
    shape("prefect_", Alnum, 36, 36, "PREFECT_TOKEN"),
    shape("scalingo_", Alnum, 40, 40, "SCALINGO_TOKEN"),
    shape("tk_", Alnum, 40, 40, "SCALINGO_TOKEN"),
    shape("ctfp_", Alnum, 30, 60, "CONTENTFUL_TOKEN"),
    shape("ntn_", Alnum, 46, 46, "NOTION_TOKEN"),
    shape("secret_", Alnum, 43, 43, "NOTION_TOKEN"),
    shape("HRKU-", Url, 60, 60, "HEROKU_KEY"),
    shape("s-s4t2ud-", Alnum, 64, 64, "INTRA42_SECRET"),
    shape("s-s4t2af-", Alnum, 64, 64, "INTRA42_SECRET"),
    shape("p8e-", Alnum, 32, 32, "ADOBE_SECRET"),
    shape("EAAM", Alnum, 100, 400, "FACEBOOK_TOKEN"),
    shape("EAAC", Alnum, 100, 400, "FACEBOOK_TOKEN"),
    shape("sqp_", Alnum, 40, 40, "SONARQUBE_TOKEN"),
    shape("squ_", Alnum, 40, 40, "SONARQUBE_TOKEN"),
    shape("sqa_", Alnum, 40, 40, "SONARQUBE_TOKEN"),
];

/// Google API keys published as examples in the Firebase Android SDK's sources and tests, copied
/// into countless sample apps: public by design, so not a leak. Secret scanners built on
/// gitleaks' rules allow-list the same keys.
const PUBLIC_EXAMPLE_KEYS: &[&str] = &[
    "AIzaSyabcdefghijklmnopqrstuvwxyz1234567",
    "AIzaSyAnLA7NfeLquW1tJFpx_eQCxoX-oo6YyIs",
    "AIzaSyCkEhVjf3pduRDt6d1yKOMitrUEke8agEM",
    "AIzaSyDMAScliyLx7F0NPDEJi1QmyCgHIAODrlU",
    "AIzaSyD3asb-2pEZVqMkmL6M9N6nHZRR_znhrh0",
    "AIzayDNSXIbFmlXbIE6mCzDLQAqITYefhixbX4A",
    "AIzaSyAdOS2zB6NCsk1pCdZ4-P6GBdi_UUPwX7c",
    "AIzaSyASWm6HmTMdYWpgMnjRBjxcQ9CKctWmLd4",
    "AIzaSyANUvH9H9BsUccjsu2pCmEkOPjjaXeDQgY",
    "AIzaSyA5_iVawFQ8ABuTZNUdcwERLJv_a_p4wtM",
    "AIzaSyA4UrcGxgwQFTfaI3no3t7Lt1sjmdnP5sQ",
    "AIzaSyDSb51JiIcB6OJpwwMicseKRhhrOq1cS7g",
    "AIzaSyBF2RrAIm4a0mO64EShQfqfd2AFnzAvvuU",
    "AIzaSyBcE-OOIbhjyR83gm4r2MFCu4MJmprNXsw",
    "AIzaSyB8qGxt4ec15vitgn44duC5ucxaOi4FmqE",
    "AIzaSyA8vmApnrHNFE0bApF4hoZ11srVL_n0nvY",
];

/// Key words after which an assigned high-entropy value is a secret.
const KEYWORDS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "api_key",
    "apikey",
    "api-key",
    "key",
    "auth",
    "credential",
    "credentials",
    "bearer",
    "access",
    "private",
    "client_id",
    "clientid",
    "client-id",
    "access_id",
    "accessid",
    "signature",
    "salt",
    "pass",
    "session",
    "cookie",
    "license",
    "licence",
    "webhook",
    "dsn",
    "x-api-key",
    "id",
    "login",
];

pub struct SecretDetector {
    prefixes: Option<AhoCorasick>,
    keywords: Option<AhoCorasick>,
    /// Shortest run of token bytes (`TOKEN`) that can hold a prefix and its body.
    min_run: usize,
    /// How far before a run a prefix may start (prefixes with a space: `FlyV1 `).
    lookback: usize,
}

/// Bytes of token-like runs: every prefix and body byte except the spaces of a few prefixes.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(b, b'_' | b'-' | b'.' | b'/' | b'+' | b'=' | b'~');
        c += 1;
    }
    t
};

/// Calls `f` with each maximal run of `TOKEN` bytes at least `min` long, in order. A run that
/// long covers the byte `min - 1` after any point before it, so the scan probes one byte in
/// `min` and reads only around the probes that land on a token byte.
fn long_runs(b: &[u8], min: usize, mut f: impl FnMut(std::ops::Range<usize>)) {
    let min = min.max(1);
    let mut i = 0;
    while let Some(&c) = b.get(i + min - 1) {
        let probe = i + min - 1;
        if !TOKEN[c as usize] {
            i = probe + 1;
            continue;
        }
        let mut start = probe;
        while start > i && TOKEN[b[start - 1] as usize] {
            start -= 1;
        }
        let mut end = probe + 1;
        while end < b.len() && TOKEN[b[end] as usize] {
            end += 1;
        }
        if end - start >= min {
            f(start..end);
        }
        i = end;
    }
}

/// For a prefix: how many of its leading bytes lie outside the token run that holds its body
/// (up to and including its last non-token byte), and the shortest such run.
fn run_needs(s: &Shape) -> (usize, usize) {
    let cut = s
        .prefix
        .bytes()
        .rposition(|c| !TOKEN[c as usize])
        .map_or(0, |i| i + 1);
    (cut, s.prefix.len() - cut + s.min)
}

impl Default for SecretDetector {
    fn default() -> Self {
        Self::new()
    }
}

fn finding(kind: &'static str, a: usize, b: usize, score: f32) -> Finding {
    Finding {
        detector: DetectorId::Secrets,
        kind,
        span: a..b,
        score,
    }
}

impl SecretDetector {
    pub fn new() -> Self {
        let prefixes = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::DFA))
            .build(SHAPES.iter().map(|s| s.prefix))
            .ok();
        let keywords = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::DFA))
            .build(KEYWORDS)
            .ok();
        let min_run = SHAPES.iter().map(|s| run_needs(s).1).min().unwrap_or(0);
        let lookback = SHAPES.iter().map(|s| run_needs(s).0).max().unwrap_or(0);
        SecretDetector {
            prefixes,
            keywords,
            min_run,
            lookback,
        }
    }

    /// Appends secret findings, non-overlapping (specific shapes win over generic ones).
    pub fn scan(&self, text: &str, out: &mut Vec<Finding>) {
        let b = text.as_bytes();
        let mut found: Vec<Finding> = Vec::new();
        pem_keys(text, &mut found);
        jwts(text, &mut found);
        connection_strings(text, &mut found);
        if let Some(ac) = &self.prefixes {
            // Prefilter: a prefix and its body lie in one run of token bytes (a prefix with a
            // space just before it) at least `min_run` long. Prose has few such runs, so the
            // automaton reads a small part of the text.
            let mut searched = 0;
            long_runs(b, self.min_run, |run| {
                let from = run.start.saturating_sub(self.lookback).max(searched);
                self.prefixed(ac, text, from..run.end, &mut found);
                searched = run.end;
            });
        }
        self.assigned(text, &mut found);
        curl_user(text, &mut found);
        sidekiq(text, &mut found);
        facebook_app_tokens(text, &mut found);
        found.sort_by_key(|f| (f.span.start, std::cmp::Reverse(f.span.end)));
        let mut last_end = 0;
        for f in found {
            if f.span.start >= last_end {
                last_end = f.span.end;
                out.push(f);
            }
        }
    }

    /// Provider shapes whose prefix lies in `range` of `text`.
    fn prefixed(
        &self,
        ac: &AhoCorasick,
        text: &str,
        range: std::ops::Range<usize>,
        found: &mut Vec<Finding>,
    ) {
        let b = text.as_bytes();
        {
            for m in ac.find_iter(Input::new(text).range(range)) {
                let Some(s) = SHAPES.get(m.pattern().as_usize()) else {
                    continue;
                };
                // A prefix after a letter, digit or dot is inside a word or a file name
                // ("video_box.ico-7a38….png"), not the start of a token.
                if s.boundary
                    && m.start() > 0
                    && (is_alnum_at(b, m.start() - 1) || b[m.start() - 1] == b'.')
                {
                    continue;
                }
                let mut e = m.end();
                while e < b.len() && s.body.allows(b[e]) && e - m.end() <= s.max {
                    e += 1;
                }
                let n = e - m.end();
                if n < s.min || n > s.max || redacted_tail(b, e) {
                    continue;
                }
                let body = &text[m.end()..e];
                if !body.ends_with(s.suffix)
                    || is_placeholder(body)
                    || PUBLIC_EXAMPLE_KEYS.contains(&&text[m.start()..e])
                    || (n >= 16 && entropy(body) < 2.8)
                {
                    continue;
                }
                found.push(finding(s.kind, m.start(), e, 0.95));
            }
        }
    }

    /// `key = value` and `Authorization: Bearer value` with a high-entropy value.
    ///
    /// Key words are common inside words ("id", "key", "pass"), so the key-word automaton reads
    /// only the identifiers that can lead to a value: the ones right before an assignment
    /// operator (`:`, `=`, `->`) or "is ", and each "bearer". Key words are identifier bytes and
    /// every window starts after a non-identifier byte, so the automaton finds the same key
    /// words there as over the whole text (a proptest compares the two).
    fn assigned(&self, text: &str, out: &mut Vec<Finding>) {
        let Some(ac) = &self.keywords else { return };
        let b = text.as_bytes();
        let mut windows: Vec<(usize, usize)> = Vec::new();
        let mut before = |at: usize, end: usize| windows.push((identifier_start(b, at), end));
        for q in memchr::memchr2_iter(b':', b'=', b) {
            before(q, q);
        }
        for q in memchr::memmem::find_iter(b, b"->") {
            before(q, q);
        }
        for q in memchr::memchr2_iter(b'i', b'I', b) {
            if b.get(q + 1..q + 3)
                .is_some_and(|s| s.eq_ignore_ascii_case(b"s "))
            {
                before(q, q);
            }
        }
        for q in memchr::memchr2_iter(b'b', b'B', b) {
            if b.get(q..q + 6)
                .is_some_and(|s| s.eq_ignore_ascii_case(b"bearer"))
            {
                windows.push((q, q + 6));
            }
        }
        windows.sort_unstable();
        let mut merged: Option<(usize, usize)> = None;
        for (s, e) in windows.into_iter().chain([(usize::MAX, usize::MAX)]) {
            match merged {
                Some((ms, me)) if s <= me => merged = Some((ms, me.max(e))),
                _ => {
                    if let Some((ms, me)) = merged.replace((s, e)) {
                        for m in ac.find_iter(Input::new(text).range(ms..me)) {
                            self.assigned_at(text, m, out);
                        }
                    }
                }
            }
        }
    }

    /// The value assigned after the key word `m`, if it reads like a secret.
    fn assigned_at(&self, text: &str, m: aho_corasick::Match, out: &mut Vec<Finding>) {
        let b = text.as_bytes();
        // A key word starts a word or a camelCase part: "apiKey", "mailgun_token", not
        // "monkey" or "video".
        let first = b.get(m.start()).copied().unwrap_or(b' ');
        let prev = m.start().checked_sub(1).and_then(|i| b.get(i)).copied();
        let starts_word = match prev {
            None => true,
            Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() => first.is_ascii_uppercase(),
            Some(c) if c.is_ascii_uppercase() => false,
            Some(_) => true,
        };
        if !starts_word {
            return;
        }
        let strong_key = b.get(m.start()..m.end()).is_some_and(|k| {
            [&b"password"[..], b"passwd", b"pwd", b"secret", b"pass"]
                .iter()
                .any(|w| k.eq_ignore_ascii_case(w))
        });
        let mut p = m.end();
        // Rest of the identifier: `_TOKEN4`, `Token`, `_key_id`.
        while p < b.len() && (b[p].is_ascii_alphanumeric() || matches!(b[p], b'_' | b'-' | b'.')) {
            p += 1;
        }
        while p < b.len() && matches!(b[p], b'"' | b'\'' | b'`' | b']') {
            p += 1;
        }
        while p < b.len() && b[p] == b' ' {
            p += 1;
        }
        let sep_start = p;
        let rest = &b[p..];
        // Assignment operators: `:`, `=`, `:=`, `=>`, `->`, and make's `::=`, `:::=`, `?=`.
        let op = rest
            .iter()
            .take(4)
            .take_while(|c| matches!(c, b':' | b'=' | b'?'))
            .count();
        if rest.starts_with(b"=>") || rest.starts_with(b"->") {
            p += 2;
        } else if op > 0 && rest[..op].iter().any(|c| matches!(c, b':' | b'=')) {
            p += op;
        } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"is ") {
            p += 3;
        }
        let is_bearer = b
            .get(m.start()..m.end())
            .is_some_and(|k| k.eq_ignore_ascii_case(b"bearer"));
        if p == sep_start && !is_bearer {
            return;
        }
        while p < b.len() && matches!(b[p], b' ' | b'\t' | b'"' | b'\'' | b'`' | b'\n' | b'\r') {
            p += 1;
            if p - sep_start > 24 {
                break;
            }
        }
        for scheme in [&b"Bearer "[..], b"bearer ", b"Basic ", b"Token ", b"token "] {
            if b.get(p..p + scheme.len()) == Some(scheme) {
                p += scheme.len();
            }
        }
        let start = p;
        while p < b.len()
            && (b[p].is_ascii_alphanumeric()
                || matches!(
                    b[p],
                    b'_' | b'-'
                        | b'.'
                        | b'/'
                        | b'+'
                        | b'='
                        | b'~'
                        | b':'
                        | b'!'
                        | b'@'
                        | b'#'
                        | b'$'
                        | b'%'
                        | b'^'
                        | b'&'
                        | b'*'
                ))
        {
            p += 1;
        }
        let mut end = p;
        while end > start && matches!(b[end - 1], b'.' | b':' | b',') {
            end -= 1;
        }
        let Some(value) = text.get(start..end) else {
            return;
        };
        // A value cut short ("ops_eyJz..", "abc…[redacted]") is an example, not a secret.
        let truncated = text
            .get(end..)
            .is_some_and(|t| t.starts_with("..") || t.starts_with('…'));
        let min_len = if strong_key { 8 } else { 12 };
        if value.len() >= min_len && !truncated && looks_secret(value) {
            out.push(finding("GENERIC_SECRET", start, end, 0.7));
        }
    }
}

/// Start of the identifier that ends before `at`, past any spaces, quotes and operator bytes
/// between them (`api_key" ?= `): where a key word leading to `at` can begin.
fn identifier_start(b: &[u8], at: usize) -> usize {
    let mut s = at.min(b.len());
    while s > 0 && matches!(b[s - 1], b':' | b'=' | b'?') {
        s -= 1;
    }
    while s > 0 && b[s - 1] == b' ' {
        s -= 1;
    }
    while s > 0 && matches!(b[s - 1], b'"' | b'\'' | b'`' | b']') {
        s -= 1;
    }
    while s > 0 && (b[s - 1].is_ascii_alphanumeric() || matches!(b[s - 1], b'_' | b'-' | b'.')) {
        s -= 1;
    }
    s
}

/// A value that reads like a credential: long enough, mixed, high entropy, not a placeholder.
fn looks_secret(v: &str) -> bool {
    let n = v.len();
    if !(8..=512).contains(&n) || is_placeholder(v) {
        return false;
    }
    let digits = v.bytes().filter(u8::is_ascii_digit).count();
    let letters = v.bytes().filter(u8::is_ascii_alphabetic).count();
    // Digit-only ids and keys count from 16 digits; letter-only words need 20 chars.
    if letters == 0 && n < 16 || digits == 0 && n < 20 || v.contains("..") {
        return false;
    }
    // Words, paths and identifiers: mostly letters with separators but no digits.
    if v.starts_with("http") || v.starts_with('/') || v.starts_with("${") || v.contains("::") {
        return false;
    }
    let h = entropy(v);
    if n < 16 {
        h >= 2.8
    } else {
        h >= 3.0
    }
}

fn is_placeholder(v: &str) -> bool {
    let lower = v.to_ascii_lowercase();
    let b = lower.as_bytes();
    let x_or_star = b
        .iter()
        .filter(|c| matches!(c, b'x' | b'*' | b'.' | b'0' | b'#'))
        .count();
    x_or_star * 2 > b.len()
        || [
            "example",
            "your",
            "<",
            "{{",
            "${",
            "placeholder",
            "changeme",
            "redacted",
            "dummy",
            "sample",
            "fake",
            "xxxx",
            "****",
            "####",
            "abcdefgh",
            "qwerty",
            "here",
            "random",
            "string",
            "insert",
            "replace",
            "todo",
            "password",
            "username",
            "[",
        ]
        .iter()
        .any(|p| lower.contains(p))
        || b.windows(5).any(|w| w.iter().all(|c| *c == w[0]))
}

/// Shannon entropy in bits per byte.
pub fn entropy(s: &str) -> f32 {
    let mut counts = [0u32; 256];
    for c in s.bytes() {
        counts[c as usize] += 1;
    }
    let n = s.len() as f32;
    if n == 0.0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|&c| {
            let p = c as f32 / n;
            -p * p.log2()
        })
        .sum()
}

fn pem_keys(text: &str, out: &mut Vec<Finding>) {
    let mut from = 0;
    while let Some(s) = next_at(text, from, "-----BEGIN ") {
        let Some(head_end) = text.get(s + 11..).and_then(|t| t.find("-----")) else {
            break;
        };
        let label = text.get(s + 11..s + 11 + head_end).unwrap_or("");
        from = s + 11 + head_end + 5;
        if !label.ends_with("PRIVATE KEY") || label.len() > 40 {
            continue;
        }
        let end_marker = format!("-----END {label}-----");
        let body_end = text.get(from..).and_then(|t| t.find(&end_marker));
        let e = match body_end {
            Some(r) => from + r + end_marker.len(),
            // Truncated key: take the base64 body that follows.
            None => {
                let mut e = from;
                let b = text.as_bytes();
                while e < b.len()
                    && (b[e].is_ascii_alphanumeric()
                        || matches!(
                            b[e],
                            b'+' | b'/' | b'=' | b'\n' | b'\r' | b' ' | b'\\' | b':' | b'-' | b','
                        ))
                {
                    e += 1;
                }
                e
            }
        };
        let body = text.get(from..e).unwrap_or("");
        let body_chars = body.bytes().filter(|c| c.is_ascii_alphanumeric()).count();
        if body_chars >= 40 && !is_placeholder(body.trim_end_matches(&end_marker[..])) {
            out.push(finding("PRIVATE_KEY", s, e, 0.99));
        }
        from = e.max(from);
    }
}

/// Byte offset of the next `needle` at or after `from` (memchr's vectorised search).
fn next_at(text: &str, from: usize, needle: &str) -> Option<usize> {
    let hay = text.as_bytes().get(from..)?;
    let at = match needle.as_bytes() {
        [c] => memchr::memchr(*c, hay),
        n => memchr::memmem::find(hay, n),
    };
    at.map(|r| from + r)
}

fn jwts(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let url = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    let mut i = 0;
    while let Some(at) = next_at(text, i, "eyJ") {
        i = at;
        if i > 0 && url(b[i - 1]) {
            i += 1;
            continue;
        }
        let mut e = i;
        let mut parts = [0usize; 3];
        let mut k = 0;
        while e < b.len() {
            if url(b[e]) {
                parts[k] += 1;
            } else if b[e] == b'.' && k < 2 && b.get(e + 1).is_some_and(|c| url(*c)) {
                k += 1;
            } else {
                break;
            }
            e += 1;
        }
        if k == 2
            && parts[0] >= 10
            && parts[1] >= 10
            && b.get(i + parts[0] + 1..i + parts[0] + 4) == Some(b"eyJ")
        {
            out.push(finding("JWT", i, e, 0.95));
        }
        i = e.max(i + 1);
    }
}

/// Whether a value ending at `e` is cut short or masked ("xoxp-5723…-####", "ghp_ab12..."):
/// then it is an example, not a secret. (Not `*`: "**key**" is markdown bold.)
fn redacted_tail(b: &[u8], e: usize) -> bool {
    let rest = b.get(e..).unwrap_or_default();
    rest.starts_with(b"..") || rest.starts_with("…".as_bytes()) || rest.first() == Some(&b'#')
}

/// Facebook app access tokens: the app id (15–16 digits), `|` (or `%7C`), the app secret or
/// token (27–40 URL-safe chars).
fn facebook_app_tokens(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let url = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    let mut from = 0;
    while let Some(bar) = next_at(text, from, "|") {
        from = bar + 1;
        let mut s = bar;
        while s > 0 && b[s - 1].is_ascii_digit() && bar - s <= 16 {
            s -= 1;
        }
        if !(15..=16).contains(&(bar - s)) || (s > 0 && is_alnum_at(b, s - 1)) {
            continue;
        }
        let mut e = bar + 1;
        while e < b.len() && url(b[e]) {
            e += 1;
        }
        let secret = text.get(bar + 1..e).unwrap_or("");
        if (27..=40).contains(&secret.len())
            && !is_placeholder(secret)
            && entropy(secret) >= 3.0
            && !redacted_tail(b, e)
        {
            out.push(finding("FACEBOOK_TOKEN", s, e, 0.9));
        }
    }
}

/// Sidekiq Enterprise/Pro gem credentials: `BUNDLE_ENTERPRISE__CONTRIBSYS__COM=` (or `GEMS`)
/// followed by `hex8:hex8`, Bundler's environment form of a source credential.
fn sidekiq(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let hex8 = |i: usize| {
        b.get(i..i + 8)
            .is_some_and(|w| w.iter().all(|c| c.is_ascii_hexdigit()))
    };
    let mut from = 0;
    while let Some(at) = next_at(text, from, "CONTRIBSYS__COM") {
        from = at + 15;
        let mut p = from;
        while b.get(p).is_some_and(|c| matches!(c, b'"' | b'\'' | b' ')) {
            p += 1;
        }
        if !b.get(p).is_some_and(|c| matches!(c, b':' | b'=')) {
            continue;
        }
        while b
            .get(p)
            .is_some_and(|c| matches!(c, b':' | b'=' | b' ' | b'"' | b'\''))
        {
            p += 1;
        }
        if hex8(p) && b.get(p + 8) == Some(&b':') && hex8(p + 9) && !is_alnum_at(b, p + 17) {
            out.push(finding("SIDEKIQ_SECRET", p, p + 17, 0.9));
        }
    }
}

/// `curl -u user:password` / `--user 'user:password'` with a real-looking password.
fn curl_user(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    if memchr::memmem::find(b, b"-u").is_none() {
        return;
    }
    let mut i = 0;
    while let Some(at) = next_at(text, i, "-") {
        i = at;
        let flag_len = if b[i..].starts_with(b"--user ") {
            7
        } else if b[i..].starts_with(b"-u ") && (i == 0 || b[i - 1] == b' ') {
            3
        } else {
            i += 1;
            continue;
        };
        let mut p = i + flag_len;
        while b.get(p) == Some(&b' ') {
            p += 1;
        }
        let start = p;
        while p < b.len() && !matches!(b[p], b' ' | b'\n' | b'\t') {
            p += 1;
        }
        let raw = std::str::from_utf8(&b[start..p]).unwrap_or("");
        let cred: String = raw
            .chars()
            .filter(|c| !matches!(c, '"' | '\'' | '{' | '}'))
            .collect();
        if let Some((_, pw)) = cred.split_once(':') {
            let user = cred.split(':').next().unwrap_or("");
            let secret_part = if pw.is_empty() { user } else { pw };
            if secret_part.len() >= 6
                && !is_placeholder(secret_part)
                && !secret_part.starts_with('$')
            {
                out.push(finding("CURL_CREDENTIALS", start, p, 0.85));
            }
        }
        i = p.max(i + 1);
    }
}

/// `scheme://user:password@host` with a real-looking password.
fn connection_strings(text: &str, out: &mut Vec<Finding>) {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = next_at(text, i, "://") {
        i = at;
        let mut s = i;
        while s > 0 && (b[s - 1].is_ascii_alphanumeric() || matches!(b[s - 1], b'+' | b'-' | b'.'))
        {
            s -= 1;
        }
        let mut e = i + 3;
        let mut colon = None;
        let mut at = None;
        while e < b.len()
            && !matches!(
                b[e],
                b' ' | b'\n' | b'"' | b'\'' | b'/' | b'`' | b'<' | b'>'
            )
        {
            match b[e] {
                b':' if colon.is_none() => colon = Some(e),
                b'@' => at = Some(e),
                _ => {}
            }
            e += 1;
        }
        if let (Some(c), Some(a)) = (colon, at) {
            if c < a && s < i {
                let pw = std::str::from_utf8(&b[c + 1..a]).unwrap_or("");
                if pw.len() >= 3
                    && !is_placeholder(pw)
                    && !pw.starts_with('$')
                    && !pw.eq_ignore_ascii_case("password")
                {
                    let mut host_end = a + 1;
                    while host_end < b.len()
                        && !matches!(
                            b[host_end],
                            b' ' | b'\n' | b'"' | b'\'' | b'`' | b'<' | b'>' | b')'
                        )
                    {
                        host_end += 1;
                    }
                    out.push(finding("CONNECTION_STRING", s, host_end, 0.9));
                    i = host_end;
                    continue;
                }
            }
        }
        i += 3;
    }
}

#[cfg(test)]
mod tests {
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
}
