//! Reversible redaction: placeholders out, originals back in.
pub mod vault;
