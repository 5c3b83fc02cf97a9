//! Redaction: reversible placeholders in prompts (`vault`), masks in answers (`mask`).
pub mod mask;
pub mod vault;
