//! The admission stage: who is calling, whether their route and workload allow this provider
//! and model (403 before any byte goes out), and whether their budget of requests and tokens
//! has room (429 with `retry-after`); then the answer's tokens are charged.

use super::{Decision, Engine, Exchange, Metric, ANONYMOUS};
use crate::access::AllowList;
use crate::budget::{self, Limits, Store};
use crate::policy::Action;

impl Engine {
    /// The caller's identity as budgets and workload entries see it.
    pub(crate) fn identity<'a>(&self, ex: &'a Exchange) -> &'a str {
        ex.identity.as_deref().unwrap_or(ANONYMOUS)
    }

    /// The allow-lists this exchange must pass: the route's (else the global one), and the
    /// caller's workload entry's.
    pub(super) fn allow_lists(&self, ex: &Exchange) -> [Option<&AllowList>; 2] {
        let by_route = self
            .route(ex)
            .and_then(|r| r.allow.as_ref())
            .unwrap_or(&self.config.allow);
        let by_workload = self
            .config
            .workload_for(self.identity(ex))
            .map(|w| &w.allow);
        let restricts = |l: &&AllowList| **l != AllowList::default();
        [
            Some(by_route).filter(restricts),
            by_workload.filter(restricts),
        ]
    }

    /// Refuses a request outside its allow-lists (403 in the provider's format), before any
    /// byte of it reaches the provider.
    pub(super) fn check_access(&self, ex: &mut Exchange) -> Option<Decision> {
        let denial = self
            .allow_lists(ex)
            .into_iter()
            .flatten()
            .find_map(|l| l.check(ex.endpoint.provider, ex.model.as_deref()).err())?;
        let name = denial.name();
        ex.verdict.record(Action::Block, name);
        let message = format!(
            "Sluice refused this request: {} for this route and caller",
            denial.describe()
        );
        Some(Decision::Refuse(
            self.refusal(ex, 403, name, &message, None),
        ))
    }

    /// The budget of this exchange's caller: their workload entry's, else the global one.
    pub(crate) fn budget_limits(&self, ex: &Exchange) -> Option<Limits> {
        match self.config.workload_for(self.identity(ex)) {
            Some(w) if w.budget.is_some() => w.budget,
            _ => self.config.budget,
        }
    }

    /// Charges one request to the caller's budget (`Forward`), or refuses it with 429 and
    /// `retry-after` when its requests or tokens for the window are spent. If the shared store
    /// fails, the request goes through (fail open) and the exchange reports `budget_error`.
    pub(crate) fn admit<S: Store>(&self, ex: &mut Exchange, store: &mut S, now_s: u64) -> Decision {
        let Some(limits) = self.budget_limits(ex) else {
            return Decision::Forward;
        };
        match budget::admit(store, self.identity(ex), &limits, now_s) {
            Ok(Ok(_)) => Decision::Forward,
            Ok(Err(refusal)) => {
                let name = refusal.spent.name();
                ex.verdict.record(Action::Block, name);
                let what = match refusal.spent {
                    budget::Spent::Requests => "requests",
                    budget::Spent::Tokens => "tokens",
                };
                let message = format!(
                    "Sluice refused this request: the caller's budget of {} {what} per {} s is spent; retry in {} s",
                    refusal.limit, limits.window_s, refusal.retry_after_s
                );
                let retry = Some(refusal.retry_after_s);
                Decision::Refuse(self.refusal(ex, 429, name, &message, retry))
            }
            Err(e) => {
                log::warn!(
                    "request {}: budget not checked, request let through: {e}",
                    ex.head.request_id
                );
                ex.verdict.record(Action::Alert, budget::BUDGET_ERROR);
                ex.metrics.push(Metric::BudgetError);
                Decision::Forward
            }
        }
    }

    /// The caller's budget and the answer's tokens, when a token budget applies and the answer
    /// used any: the one test of whether there is anything to charge.
    pub(super) fn tokens_to_charge(&self, ex: &Exchange) -> Option<(Limits, u64)> {
        let limits = self.budget_limits(ex).filter(|l| l.tokens.is_some())?;
        let tokens = ex.usage.usage()?.total();
        (tokens > 0).then_some((limits, tokens))
    }

    /// Charges the answer's tokens (reported or estimated) to the caller's token budget. A
    /// store that fails leaves the tokens uncounted and reports `budget_error`; returns whether
    /// it failed.
    pub(crate) fn charge_tokens<S: Store>(
        &self,
        ex: &mut Exchange,
        store: &mut S,
        now_s: u64,
    ) -> bool {
        let Some((limits, tokens)) = self.tokens_to_charge(ex) else {
            return false;
        };
        let charged = budget::charge_tokens(store, self.identity(ex), &limits, now_s, tokens);
        match charged {
            Ok(_) => false,
            Err(e) => {
                log::warn!("tokens of an answer not charged: {e}");
                ex.metrics.push(Metric::BudgetError);
                true
            }
        }
    }
}
