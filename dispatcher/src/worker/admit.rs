//! Admit: whether a job may go to its endpoint now: the circuit breaker, the endpoint's rate
//! limit, a free slot of the endpoint's concurrency cap and of the global one. A job that is not
//! admitted is deferred (or, in a tier, an open breaker counts as its attempt).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{AcquireError, OwnedSemaphorePermit};

use erp_webhooks::endpoint::EndpointConfig;

use crate::delivery::{Attempt, AttemptResult};
use crate::isolation::{Admission, EndpointState};

use super::pipeline::{Core, Sent};

/// What admission hands the send stage: the endpoint's state and the slots the request holds.
pub(super) struct Admitted {
    pub(super) state: Arc<EndpointState>,
    /// Whether this request is the half-open breaker's probe.
    pub(super) probe: bool,
    /// A slot of the endpoint's concurrency cap.
    pub(super) permit: OwnedSemaphorePermit,
    /// A slot of the dispatcher-wide cap (its semaphore is never closed), held like `permit`
    /// until the request ends.
    pub(super) global: Result<OwnedSemaphorePermit, AcquireError>,
}

/// What a breaker's refusal means for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Not sent and not counted: to the first tier (or wait in the lane).
    Defer,
    /// Counted as a failed attempt, so every task's way through the tiers stays finite.
    CountAsAttempt,
}

/// The refusal of a job: on the main path, or for a replay still waiting out the breaker, the
/// job is deferred; in a tier the open breaker answers for the endpoint (it failed often enough
/// in a row that a request would most likely fail too).
pub(super) fn on_refusal(from_tier: bool, wait_out_breaker: bool) -> Refusal {
    if !from_tier || wait_out_breaker {
        Refusal::Defer
    } else {
        Refusal::CountAsAttempt
    }
}

impl Core {
    /// Admits a job to `endpoint_id`, or answers what happened instead.
    pub(super) async fn admit(
        &self,
        endpoint_id: &str,
        config: &EndpointConfig,
        from_tier: bool,
        wait_out_breaker: bool,
    ) -> Result<Admitted, Sent> {
        let state = self.endpoints.get(endpoint_id);
        let probe = match state.admit(from_tier) {
            Admission::Allowed { probe } => probe,
            Admission::Refused => match on_refusal(from_tier, wait_out_breaker) {
                Refusal::Defer => return Err(Sent::Deferred("circuit_open")),
                Refusal::CountAsAttempt => {
                    self.metrics
                        .attempts
                        .with_label_values(&["circuit_open"])
                        .inc();
                    let attempt = Attempt {
                        result: AttemptResult::Retryable {
                            code: "CIRCUIT_OPEN".into(),
                            message: "not sent: the endpoint's circuit breaker is open after consecutive failures".into(),
                            status: None,
                            retry_after: None,
                        },
                        duration: Duration::ZERO,
                        response_body: String::new(),
                        body_truncated: false,
                    };
                    return Err(Sent::Attempt(attempt));
                }
            },
        };
        // The rate limit before the slot: a delivery waiting for its turn holds no slot.
        let limit = config.rate_limit.or(self.settings.default_rate_limit);
        match state
            .throttle
            .reserve(limit, self.settings.endpoint_queue_wait)
        {
            Some(wait) if wait.is_zero() => {}
            Some(wait) => {
                self.metrics.throttled.with_label_values(&["waited"]).inc();
                tokio::select! {
                    _ = self.interrupt.cancelled() => {
                        if probe {
                            state.abandon_probe();
                        }
                        return Err(Sent::Interrupted);
                    }
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            None => {
                if probe {
                    state.abandon_probe();
                }
                self.metrics
                    .throttled
                    .with_label_values(&["deferred"])
                    .inc();
                return Err(Sent::Deferred("throttled"));
            }
        }
        let permit = tokio::time::timeout(
            self.settings.endpoint_queue_wait,
            Arc::clone(&state.permits).acquire_owned(),
        )
        .await;
        let Ok(Ok(permit)) = permit else {
            if probe {
                state.abandon_probe();
            }
            return Err(Sent::Deferred("saturated"));
        };
        let global = tokio::select! {
            _ = self.interrupt.cancelled() => {
                if probe {
                    state.abandon_probe();
                }
                return Err(Sent::Interrupted);
            }
            global = Arc::clone(&self.global).acquire_owned() => global,
        };
        Ok(Admitted {
            state,
            probe,
            permit,
            global,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_defers_on_the_main_path_and_counts_in_a_tier() {
        assert_eq!(on_refusal(false, false), Refusal::Defer);
        assert_eq!(on_refusal(false, true), Refusal::Defer);
        assert_eq!(on_refusal(true, false), Refusal::CountAsAttempt);
        // A replay waits out the breaker in a tier too, for a bounded number of waits.
        assert_eq!(on_refusal(true, true), Refusal::Defer);
    }
}
