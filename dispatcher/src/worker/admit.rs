//! Admit: whether a job may go to its endpoint now: the circuit breaker, the endpoint's rate
//! limit, a free slot of the endpoint's concurrency cap and of the global one. A job that is not
//! admitted is deferred without using one of its attempts; one held back by an open breaker for
//! longer than the whole retry schedule ends as a dead letter.

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
    /// Not sent and not counted: to the first tier (or wait in the lane), so it is close at
    /// hand when the breaker lets a probe through.
    Defer,
    /// Held back longer than the retry schedule's total time: a dead letter, so nothing waits
    /// forever for an endpoint that stays down.
    Expire,
}

/// The code of a delivery that an open breaker held back for longer than the schedule.
pub(super) const CIRCUIT_OPEN_TOO_LONG: &str = "CIRCUIT_OPEN_TOO_LONG";

/// The refusal of a job that has been deferred `deferrals` times, of `waits` allowed. An open
/// breaker is the dispatcher's own judgement, not the endpoint's answer, so it never spends one
/// of the job's attempts (the earlier rule, counting it as a `CIRCUIT_OPEN` attempt, moved a
/// flaky endpoint's retries to the 5-minute tier and dead-lettered events it would have taken).
pub(super) fn on_refusal(deferrals: u32, waits: u32) -> Refusal {
    if deferrals < waits {
        Refusal::Defer
    } else {
        Refusal::Expire
    }
}

impl Core {
    /// How often an open breaker may defer one delivery: the schedule's total time over the
    /// shortest wait between two tries (a tier-1 wait, or a lane head's re-check for `ordered`).
    /// Every deferral waits at least that long, so a delivery expires only after it was held
    /// back for at least the whole schedule.
    pub(super) fn breaker_waits(&self, ordered: bool) -> u32 {
        let wait = if ordered {
            self.settings.endpoint_queue_wait
        } else {
            self.schedule.delay(1)
        };
        crate::schedule::waits_within(self.schedule.total(), wait)
    }

    /// Admits a job to `endpoint_id`, or answers what happened instead. `deferrals`: how often
    /// the job was deferred so far (an open breaker holds it back within a bound).
    pub(super) async fn admit(
        &self,
        endpoint_id: &str,
        config: &EndpointConfig,
        from_tier: bool,
        deferrals: u32,
        ordered: bool,
    ) -> Result<Admitted, Sent> {
        let state = self.endpoints.get(endpoint_id);
        let probe = match state.admit(from_tier) {
            Admission::Allowed { probe } => probe,
            Admission::Refused => match on_refusal(deferrals, self.breaker_waits(ordered)) {
                Refusal::Defer => return Err(Sent::Deferred("circuit_open")),
                Refusal::Expire => {
                    self.metrics
                        .attempts
                        .with_label_values(&["circuit_open"])
                        .inc();
                    let total = self.schedule.total();
                    let attempt = Attempt {
                        result: AttemptResult::Terminal {
                            code: CIRCUIT_OPEN_TOO_LONG.into(),
                            message: format!(
                                "not sent: the endpoint's circuit breaker stayed open for longer \
                                 than the retry schedule ({} s in all)",
                                total.as_secs()
                            ),
                            status: None,
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
    fn an_open_breaker_defers_until_the_schedule_is_used_up() {
        assert_eq!(on_refusal(0, 1), Refusal::Defer);
        assert_eq!(on_refusal(5460, 5461), Refusal::Defer);
        assert_eq!(on_refusal(5461, 5461), Refusal::Expire);
        assert_eq!(on_refusal(9999, 5461), Refusal::Expire);
    }
}
