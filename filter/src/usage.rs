//! Token accounting for one exchange: the counts the provider reported in its answer (usage
//! fields, streamed or not), or an estimate when it reported none. Audit events, token metrics
//! and token budgets read the result.
//!
//! The estimate is one token per four bytes of text, rounded up: of the prompt's texts as the
//! codec found them (the raw request body when it was not parsed) and of the answer's texts.
//! It is coarse (English prose runs near four bytes a token; code, CJK and JSON differ) and only
//! meant to keep budgets from being free when a provider stays silent, e.g. an OpenAI stream
//! requested without `stream_options.include_usage`.

use crate::providers::ReportedUsage;

/// Bytes of text per estimated token.
pub const BYTES_PER_TOKEN: usize = 4;

/// The tokens an exchange used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    /// At least one side is an estimate rather than the provider's count.
    pub estimated: bool,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input.saturating_add(self.output)
    }
}

/// What is known so far about an exchange's token use.
#[derive(Debug, Default, Clone)]
pub struct UsageMeter {
    reported: ReportedUsage,
    /// Bytes of prompt text the codec found (`None`: the body was not parsed).
    prompt_text_bytes: Option<usize>,
    /// Bytes of request body seen, for the estimate when the body was not parsed.
    pub request_body_bytes: usize,
    /// Bytes of answer text seen (streamed deltas or the whole answer's texts).
    pub answer_text_bytes: usize,
    /// The answer's HTTP status, once its headers came.
    status: Option<u16>,
}

/// Tokens estimated for `bytes` of text.
pub fn estimate(bytes: usize) -> u64 {
    bytes.div_ceil(BYTES_PER_TOKEN) as u64
}

impl UsageMeter {
    pub fn prompt_text(&mut self, bytes: usize) {
        self.prompt_text_bytes = Some(bytes);
    }

    pub fn answer_status(&mut self, status: u16) {
        self.status = Some(status);
    }

    pub fn report(&mut self, usage: ReportedUsage) {
        self.reported.merge(usage);
    }

    /// Whether the provider already stated both counts (the answer's texts need not be read).
    pub fn complete(&self) -> bool {
        self.reported.input.is_some() && self.reported.output.is_some()
    }

    /// The exchange's usage, once an answer came. `None` when the request never reached the
    /// provider (refused locally) or the provider answered with an error and stated no usage:
    /// nothing is known to have been spent.
    pub fn usage(&self) -> Option<Usage> {
        let status = self.status?;
        let reported = self.reported;
        if !(200..300).contains(&status) && reported.input.is_none() && reported.output.is_none() {
            return None;
        }
        let prompt_bytes = self.prompt_text_bytes.unwrap_or(self.request_body_bytes);
        Some(Usage {
            input: reported.input.unwrap_or_else(|| estimate(prompt_bytes)),
            output: reported
                .output
                .unwrap_or_else(|| estimate(self.answer_text_bytes)),
            estimated: reported.input.is_none() || reported.output.is_none(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(input: Option<u64>, output: Option<u64>) -> ReportedUsage {
        ReportedUsage { input, output }
    }

    #[test]
    fn reported_counts_win_and_estimates_fill_the_gaps() {
        let mut m = UsageMeter::default();
        assert_eq!(m.usage(), None, "no answer yet");
        m.prompt_text(41);
        m.answer_text_bytes = 8;
        m.answer_status(200);
        assert_eq!(
            m.usage(),
            Some(Usage {
                input: 11,
                output: 2,
                estimated: true
            })
        );
        m.report(reported(Some(25), Some(1)));
        m.report(reported(None, Some(15)));
        assert_eq!(
            m.usage(),
            Some(Usage {
                input: 25,
                output: 15,
                estimated: false
            })
        );
        assert!(m.complete());
    }

    #[test]
    fn unparsed_bodies_are_estimated_from_their_size() {
        let mut m = UsageMeter {
            request_body_bytes: 400,
            ..Default::default()
        };
        m.answer_status(200);
        m.report(reported(None, Some(3)));
        assert_eq!(
            m.usage(),
            Some(Usage {
                input: 100,
                output: 3,
                estimated: true
            })
        );
    }

    #[test]
    fn error_answers_without_usage_spend_nothing() {
        let mut m = UsageMeter::default();
        m.prompt_text(100);
        m.answer_status(429);
        assert_eq!(m.usage(), None);
        m.report(reported(Some(5), None));
        assert_eq!(m.usage().map(|u| (u.input, u.estimated)), Some((5, true)));
    }

    #[test]
    fn estimate_rounds_up() {
        assert_eq!(
            [0, 1, 4, 5, 8].map(estimate),
            [0, 1, 1, 2, 2],
            "one token per four bytes, rounded up"
        );
    }
}
