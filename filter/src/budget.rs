//! Budgets: requests and tokens per calling identity per fixed time window, counted in a
//! key-value store every Envoy worker shares (proxy-wasm shared data) and updated with
//! compare-and-swap, retried on conflict. Pure logic over a `Store` trait: the adapter
//! implements it with host calls, tests with a map.
//!
//! Windows are fixed and aligned to the Unix epoch (`start = now - now % window_s`), so every
//! worker agrees on them without talking. A request is charged when admitted; the tokens of its
//! answer are charged when the answer's usage is known, and only checked before admitting the
//! next request (an answer in flight can overshoot the token limit; the next request is refused).

use sha2::{Digest, Sha256};

/// Name reported (and counted) when an identity's request budget is spent.
pub const REQUEST_BUDGET: &str = "request_budget";
/// Name reported (and counted) when an identity's token budget is spent.
pub const TOKEN_BUDGET: &str = "token_budget";
/// Name reported when the shared store failed and the request was let through.
pub const BUDGET_ERROR: &str = "budget_error";

/// Compare-and-swap attempts before giving up on a key (then the request fails open).
pub const MAX_ATTEMPTS: usize = 32;

/// The limits of one budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub window_s: u64,
    pub requests: Option<u64>,
    pub tokens: Option<u64>,
}

/// What one identity spent in one window, as stored: `"START REQUESTS TOKENS"` in ASCII.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counter {
    pub window_start: u64,
    pub requests: u64,
    pub tokens: u64,
}

impl Counter {
    pub fn encode(&self) -> Vec<u8> {
        format!("{} {} {}", self.window_start, self.requests, self.tokens).into_bytes()
    }

    /// `None` for anything else (an older format, a foreign writer): the counter starts over.
    pub fn decode(bytes: &[u8]) -> Option<Counter> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split(' ').map(str::parse::<u64>);
        let counter = Counter {
            window_start: parts.next()?.ok()?,
            requests: parts.next()?.ok()?,
            tokens: parts.next()?.ok()?,
        };
        parts.next().is_none().then_some(counter)
    }

    /// This counter if it belongs to the window `now` falls in, else a fresh one.
    fn in_window(stored: Option<Counter>, limits: &Limits, now_s: u64) -> Counter {
        let start = window_start(now_s, limits.window_s);
        match stored {
            Some(c) if c.window_start == start => c,
            _ => Counter {
                window_start: start,
                ..Counter::default()
            },
        }
    }
}

/// Start of the window `now_s` falls in.
pub fn window_start(now_s: u64, window_s: u64) -> u64 {
    let window_s = window_s.max(1);
    now_s - now_s % window_s
}

/// Seconds until the window `now_s` falls in ends, at least 1 (the value of `retry-after`).
pub fn retry_after(now_s: u64, window_s: u64) -> u64 {
    (window_start(now_s, window_s) + window_s.max(1))
        .saturating_sub(now_s)
        .max(1)
}

/// Which limit a refused request hit, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub spent: Spent,
    pub retry_after_s: u64,
    pub limit: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    Requests,
    Tokens,
}

impl Spent {
    pub fn name(self) -> &'static str {
        match self {
            Spent::Requests => REQUEST_BUDGET,
            Spent::Tokens => TOKEN_BUDGET,
        }
    }
}

/// The key of an identity's counter: a fixed-size hash, so neither a long nor a hostile
/// identity can make keys large, and no raw identity sits in shared memory.
pub fn key(identity: &str) -> String {
    let digest = Sha256::new().chain_update(identity.as_bytes()).finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("sluice.budget.v1.{hex}")
}

/// The shared key-value store with compare-and-swap versions (proxy-wasm shared data).
pub trait Store {
    /// The value and its version, `None` when the key was never set.
    fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError>;
    /// Writes if the version still is `cas` (0: unconditionally); `Ok(false)` on a mismatch.
    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<bool, StoreError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("shared data call failed: {0}")]
    Host(String),
    #[error("shared data key `{0}` stayed contended after {MAX_ATTEMPTS} attempts")]
    Contended(String),
}

/// Read-modify-write of one counter with compare-and-swap, retried while other workers win
/// the race. `change` sees the stored counter (if any) and returns the new one, or an outcome
/// that needs no write.
fn update<S: Store, R>(
    store: &mut S,
    key: &str,
    mut change: impl FnMut(Option<Counter>) -> Result<Counter, R>,
) -> Result<Result<Counter, R>, StoreError> {
    for _ in 0..MAX_ATTEMPTS {
        let (stored, cas) = match store.get(key)? {
            Some((bytes, cas)) => (Counter::decode(&bytes), cas),
            None => (None, 0),
        };
        let next = match change(stored) {
            Ok(next) => next,
            Err(outcome) => return Ok(Err(outcome)),
        };
        // An absent key is created unconditionally (the host offers no create-if-absent):
        // two workers creating the same identity's key at the same instant can lose one
        // charge. After that, every write is a checked compare-and-swap.
        if store.set(key, &next.encode(), cas)? {
            return Ok(Ok(next));
        }
    }
    Err(StoreError::Contended(key.to_owned()))
}

/// Admits one request of `identity` under `limits`, charging it, or says which limit is spent.
pub fn admit<S: Store>(
    store: &mut S,
    identity: &str,
    limits: &Limits,
    now_s: u64,
) -> Result<Result<Counter, Refusal>, StoreError> {
    update(store, &key(identity), |stored| {
        let c = Counter::in_window(stored, limits, now_s);
        let refuse = |spent, limit| Refusal {
            spent,
            retry_after_s: retry_after(now_s, limits.window_s),
            limit,
        };
        if let Some(limit) = limits.tokens.filter(|l| c.tokens >= *l) {
            return Err(refuse(Spent::Tokens, limit));
        }
        if let Some(limit) = limits.requests.filter(|l| c.requests >= *l) {
            return Err(refuse(Spent::Requests, limit));
        }
        Ok(Counter {
            requests: c.requests + 1,
            ..c
        })
    })
}

/// Charges an answer's tokens to `identity`'s counter in the window `now_s` falls in.
pub fn charge_tokens<S: Store>(
    store: &mut S,
    identity: &str,
    limits: &Limits,
    now_s: u64,
    tokens: u64,
) -> Result<Counter, StoreError> {
    let charged = update(store, &key(identity), |stored| {
        let c = Counter::in_window(stored, limits, now_s);
        Ok::<_, ()>(Counter {
            tokens: c.tokens.saturating_add(tokens),
            ..c
        })
    })?;
    Ok(charged.unwrap_or_default())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Shared data as Envoy keeps it: versions bumped on every write, a write with a stale
    /// version refused, an absent key created whatever the version.
    #[derive(Default)]
    pub struct MapStore {
        pub data: HashMap<String, (Vec<u8>, u32)>,
        pub next_cas: u32,
        /// Before each of the next `interfere` writes, another "worker" charges one request.
        pub interfere: usize,
        pub fail: bool,
    }

    impl Store for MapStore {
        fn get(&mut self, key: &str) -> Result<Option<(Vec<u8>, u32)>, StoreError> {
            if self.fail {
                return Err(StoreError::Host("BadArgument".into()));
            }
            Ok(self.data.get(key).cloned())
        }

        fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<bool, StoreError> {
            if self.interfere > 0 {
                self.interfere -= 1;
                if let Some((bytes, _)) = self.data.get(key).cloned() {
                    let mut c = Counter::decode(&bytes).unwrap();
                    c.requests += 1;
                    self.next_cas += 1;
                    self.data
                        .insert(key.to_owned(), (c.encode(), self.next_cas));
                }
            }
            if let Some((_, version)) = self.data.get(key) {
                if cas != 0 && cas != *version {
                    return Ok(false);
                }
            }
            self.next_cas += 1;
            self.data
                .insert(key.to_owned(), (value.to_vec(), self.next_cas));
            Ok(true)
        }
    }

    const LIMITS: Limits = Limits {
        window_s: 60,
        requests: Some(3),
        tokens: Some(100),
    };

    #[test]
    fn window_arithmetic() {
        assert_eq!(window_start(125, 60), 120);
        assert_eq!(window_start(120, 60), 120);
        assert_eq!(retry_after(125, 60), 55);
        assert_eq!(retry_after(179, 60), 1);
        assert_eq!(retry_after(120, 60), 60);
        assert_eq!(
            window_start(5, 0),
            5,
            "a zero window is treated as one second"
        );
    }

    #[test]
    fn counters_round_trip_and_reject_garbage() {
        let c = Counter {
            window_start: 1_700_000_040,
            requests: 7,
            tokens: 12_345,
        };
        assert_eq!(Counter::decode(&c.encode()), Some(c));
        for bad in [&b""[..], b"1 2", b"1 2 3 4", b"a b c", b"1 -2 3", b"\xff"] {
            assert_eq!(Counter::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keys_are_bounded_and_distinct() {
        let long = "x".repeat(100_000);
        assert_eq!(key(&long).len(), key("a").len());
        assert_ne!(key("spiffe://a"), key("spiffe://b"));
        assert!(!key("alice").contains("alice"));
    }

    #[test]
    fn requests_are_charged_until_spent_then_refused_until_the_window_ends() {
        let mut store = MapStore::default();
        for n in 1..=3 {
            let c = admit(&mut store, "a", &LIMITS, 130).unwrap().unwrap();
            assert_eq!(c.requests, n);
        }
        let refused = admit(&mut store, "a", &LIMITS, 150).unwrap().unwrap_err();
        assert_eq!(refused.spent, Spent::Requests);
        assert_eq!(refused.retry_after_s, 30);
        assert_eq!(refused.limit, 3);
        // Another identity has its own budget; the next window starts afresh.
        assert!(admit(&mut store, "b", &LIMITS, 150).unwrap().is_ok());
        let c = admit(&mut store, "a", &LIMITS, 180).unwrap().unwrap();
        assert_eq!((c.window_start, c.requests), (180, 1));
    }

    #[test]
    fn tokens_are_charged_after_the_answer_and_checked_before_the_next_request() {
        let mut store = MapStore::default();
        admit(&mut store, "a", &LIMITS, 10).unwrap().unwrap();
        let c = charge_tokens(&mut store, "a", &LIMITS, 11, 150).unwrap();
        assert_eq!((c.requests, c.tokens), (1, 150));
        let refused = admit(&mut store, "a", &LIMITS, 12).unwrap().unwrap_err();
        assert_eq!(refused.spent, Spent::Tokens);
        assert_eq!(refused.retry_after_s, 48);
        // A charge landing after the window turned counts in the new one.
        let c = charge_tokens(&mut store, "a", &LIMITS, 61, 5).unwrap();
        assert_eq!((c.window_start, c.requests, c.tokens), (60, 0, 5));
    }

    #[test]
    fn lost_races_are_retried_and_no_charge_is_lost() {
        let mut store = MapStore::default();
        admit(&mut store, "a", &LIMITS, 0).unwrap().unwrap();
        // Two other workers win the race on the next two attempts.
        store.interfere = 2;
        let c = admit(&mut store, "a", &LIMITS, 0).unwrap().unwrap_err();
        assert_eq!(
            c.spent,
            Spent::Requests,
            "1 before and 2 concurrent spent all 3"
        );
        let roomy = Limits {
            requests: Some(10),
            ..LIMITS
        };
        store.interfere = 2;
        let c = admit(&mut store, "a", &roomy, 0).unwrap().unwrap();
        assert_eq!(c.requests, 6, "3 before, 2 concurrent, and this one");
        // A store that never settles fails instead of spinning.
        let mut store = MapStore::default();
        admit(&mut store, "a", &LIMITS, 0).unwrap().unwrap();
        store.interfere = usize::MAX;
        let no_limit = Limits {
            requests: None,
            tokens: None,
            ..LIMITS
        };
        assert!(matches!(
            admit(&mut store, "a", &no_limit, 0),
            Err(StoreError::Contended(_))
        ));
        let mut broken = MapStore {
            fail: true,
            ..MapStore::default()
        };
        assert!(matches!(
            admit(&mut broken, "a", &LIMITS, 0),
            Err(StoreError::Host(_))
        ));
    }
}
