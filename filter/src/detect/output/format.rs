//! `output_json`: the answer must be one JSON value, optionally in a code fence, optionally an
//! object with required keys.

use super::finding;
use crate::detect::{DetectorId, Finding};

/// An `output_json` finding if `text` is not one JSON value (`NOT_JSON`) or is not an object
/// with every key of `required_keys` (`MISSING_KEY`). With `allow_fence`, a single fenced
/// code block (```json … ```) around the value is accepted, as models often add one.
pub fn check_json(text: &str, allow_fence: bool, required_keys: &[String]) -> Option<Finding> {
    let mut body = text.trim();
    if allow_fence {
        if let Some(inner) = body.strip_prefix("```") {
            let inner = inner.strip_prefix("json").unwrap_or(inner);
            body = inner.strip_suffix("```").unwrap_or(inner).trim();
        }
    }
    let kind = if required_keys.is_empty() {
        match serde_json::from_str::<serde::de::IgnoredAny>(body) {
            Ok(_) => return None,
            Err(_) => "NOT_JSON",
        }
    } else {
        // Only the top level is kept: nested values are skipped, not built.
        match serde_json::from_str::<Top>(body) {
            Ok(Top::Object(keys)) if required_keys.iter().all(|k| keys.contains_key(k)) => {
                return None
            }
            Ok(_) => "MISSING_KEY",
            Err(_) => "NOT_JSON",
        }
    };
    Some(finding(DetectorId::OutputJson, kind, 0, text.len(), 1.0))
}

/// A JSON value read only as far as its top-level keys.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Top {
    Object(std::collections::BTreeMap<String, serde::de::IgnoredAny>),
    Other(serde::de::IgnoredAny),
}
