//! Every local answer the filter gives: the provider's own error format, a message naming the
//! request id, and the headers a client or operator reads (`retry-after`, verdict headers).

use super::{Engine, Exchange, Refusal};
use crate::providers;

impl Engine {
    /// A refusal of `ex` with `status`, reported as `name` and explained by `message` (the
    /// request id is appended).
    pub(super) fn refusal(
        &self,
        ex: &Exchange,
        status: u16,
        name: &str,
        message: &str,
        retry_after: Option<u64>,
    ) -> Refusal {
        let message = format!("{message} (request id {})", ex.head.request_id);
        let body = providers::error_body(ex.endpoint.provider, status, name, &message);
        let mut headers = vec![
            ("content-type", "application/json".to_owned()),
            ("x-request-id", ex.head.request_id.clone()),
        ];
        if let Some(seconds) = retry_after {
            headers.push(("retry-after", seconds.to_string()));
        }
        headers.extend(self.verdict_headers(ex));
        Refusal {
            status,
            body,
            headers,
        }
    }

    /// The refusal of an exchange a policy blocked.
    pub(super) fn blocked(&self, ex: &Exchange, status: u16, policy: &str) -> Refusal {
        let message = format!("Sluice blocked this exchange: policy `{policy}` fired");
        self.refusal(ex, status, policy, &message, None)
    }

    /// `x-sluice-action` and `x-sluice-detections`, when `expose_verdict_headers` is on.
    pub(super) fn verdict_headers(&self, ex: &Exchange) -> Vec<(&'static str, String)> {
        if !self.config.expose_verdict_headers {
            return Vec::new();
        }
        vec![
            ("x-sluice-action", ex.verdict.action.name().to_owned()),
            ("x-sluice-detections", ex.verdict.detections.join(",")),
        ]
    }
}
