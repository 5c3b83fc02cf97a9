//! LRU cache of judgements keyed by a 128-bit hash of (text kind, normalised text), so the
//! filter re-sending the same prompt (retries, multi-turn history) costs one lookup.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use crate::backend::Judgement;
use crate::features::hash64;

pub type Key = u128;

pub fn key(kind: i32, normalised: &str) -> Key {
    let mut bytes = Vec::with_capacity(normalised.len() + 4);
    bytes.extend_from_slice(&kind.to_le_bytes());
    bytes.extend_from_slice(normalised.as_bytes());
    (u128::from(hash64(0x0123_4567, &bytes)) << 64) | u128::from(hash64(0x89ab_cdef, &bytes))
}

/// A bounded LRU; capacity 0 disables caching.
pub struct Cache {
    inner: Option<Mutex<LruCache<Key, Judgement>>>,
}

impl Cache {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
        }
    }

    pub fn get(&self, k: Key) -> Option<Judgement> {
        let m = self.inner.as_ref()?;
        // A poisoned lock only means another request panicked mid-update; the map is still valid.
        let mut guard = m.lock().unwrap_or_else(|e| e.into_inner());
        guard.get(&k).cloned()
    }

    pub fn put(&self, k: Key, j: Judgement) {
        if let Some(m) = &self.inner {
            m.lock().unwrap_or_else(|e| e.into_inner()).put(k, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Verdict;

    fn j(m: &str) -> Judgement {
        Judgement {
            labels: vec![],
            verdict: Verdict::Allow,
            model: m.into(),
        }
    }

    #[test]
    fn evicts_least_recently_used() {
        let c = Cache::new(2);
        c.put(key(1, "a"), j("a"));
        c.put(key(1, "b"), j("b"));
        assert!(c.get(key(1, "a")).is_some());
        c.put(key(1, "c"), j("c"));
        assert!(c.get(key(1, "b")).is_none());
        assert!(c.get(key(1, "a")).is_some());
        assert_ne!(key(1, "a"), key(2, "a"));
    }

    #[test]
    fn zero_capacity_disables() {
        let c = Cache::new(0);
        c.put(key(1, "a"), j("a"));
        assert!(c.get(key(1, "a")).is_none());
    }
}
