//! Allow-lists: which providers and models a route and a calling workload may use. A request
//! outside them is refused before it reaches the provider. Pure matching; the adapter finds
//! the caller's identity (a header or the mTLS source principal).

use crate::providers::Provider;

/// Name reported (and counted) when a request's provider is not allowed.
pub const PROVIDER_NOT_ALLOWED: &str = "provider_not_allowed";
/// Name reported (and counted) when a request's model is not allowed.
pub const MODEL_NOT_ALLOWED: &str = "model_not_allowed";

/// A name pattern: exact, or a prefix when written with a trailing `*` (`gpt-4o*`, and `*`
/// alone for anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    pub fn parse(text: &str) -> Pattern {
        match text.strip_suffix('*') {
            Some(prefix) => Pattern::Prefix(prefix.to_owned()),
            None => Pattern::Exact(text.to_owned()),
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Exact(exact) => name == exact,
            Pattern::Prefix(prefix) => name.starts_with(prefix.as_str()),
        }
    }
}

/// Providers and models allowed; `None` allows any.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AllowList {
    pub providers: Option<Vec<Provider>>,
    pub models: Option<Vec<Pattern>>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    Provider(Provider),
    /// The model, or `None` when the request names none while models are restricted.
    Model(Option<String>),
}

impl Denial {
    pub fn name(&self) -> &'static str {
        match self {
            Denial::Provider(_) => PROVIDER_NOT_ALLOWED,
            Denial::Model(_) => MODEL_NOT_ALLOWED,
        }
    }

    /// Words for the error message (the caller's own request data, nothing else).
    pub fn describe(&self) -> String {
        match self {
            Denial::Provider(p) => format!("provider `{}` is not allowed", p.name()),
            Denial::Model(Some(m)) => format!("model `{m}` is not allowed"),
            Denial::Model(None) => "the request names no model, and models are restricted".into(),
        }
    }
}

impl AllowList {
    /// Checks one request. A request without a model fails a model restriction: what cannot
    /// be named cannot be shown to be allowed.
    pub fn check(&self, provider: Provider, model: Option<&str>) -> Result<(), Denial> {
        if let Some(providers) = &self.providers {
            if !providers.contains(&provider) {
                return Err(Denial::Provider(provider));
            }
        }
        if let Some(models) = &self.models {
            let allowed = model.is_some_and(|m| models.iter().any(|p| p.matches(m)));
            if !allowed {
                return Err(Denial::Model(model.map(str::to_owned)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(providers: Option<&[Provider]>, models: Option<&[&str]>) -> AllowList {
        AllowList {
            providers: providers.map(<[Provider]>::to_vec),
            models: models.map(|m| m.iter().map(|p| Pattern::parse(p)).collect()),
        }
    }

    #[test]
    fn patterns() {
        let cases = [
            ("gpt-4o", "gpt-4o", true),
            ("gpt-4o", "gpt-4o-mini", false),
            ("gpt-4o*", "gpt-4o-mini", true),
            ("gpt-4o*", "gpt-4o", true),
            ("gpt-4o*", "gpt-4", false),
            ("*", "anything", true),
            ("claude-*", "claude", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(
                Pattern::parse(pattern).matches(name),
                want,
                "{pattern} {name}"
            );
        }
    }

    #[test]
    fn checks() {
        let open = AllowList::default();
        assert_eq!(open.check(Provider::Cohere, None), Ok(()));
        let l = list(
            Some(&[Provider::OpenAi, Provider::Anthropic]),
            Some(&["gpt-4o-mini", "claude-3-5-*"]),
        );
        let cases = [
            (Provider::OpenAi, Some("gpt-4o-mini"), None),
            (Provider::Anthropic, Some("claude-3-5-haiku"), None),
            (
                Provider::OpenAi,
                Some("gpt-4o"),
                Some(Denial::Model(Some("gpt-4o".into()))),
            ),
            (Provider::OpenAi, None, Some(Denial::Model(None))),
            (
                Provider::Gemini,
                Some("gpt-4o-mini"),
                Some(Denial::Provider(Provider::Gemini)),
            ),
        ];
        for (provider, model, want) in cases {
            assert_eq!(
                l.check(provider, model).err(),
                want,
                "{provider:?} {model:?}"
            );
        }
        assert_eq!(Denial::Model(None).name(), MODEL_NOT_ALLOWED);
        assert_eq!(
            Denial::Provider(Provider::Gemini).describe(),
            "provider `gemini` is not allowed"
        );
    }
}
