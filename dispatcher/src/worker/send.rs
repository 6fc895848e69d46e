//! Send: one job through admission, the HTTP attempt, and the breaker's bookkeeping.

use std::time::Duration;

use tracing::info;

use erp_runtime::config::WebhookEntry;

use crate::delivery::{self, Attempt, AttemptResult};
use crate::error::DispatcherError;
use crate::isolation::BreakerState;
use erp_webhooks::endpoint::EndpointConfig;

use super::admit::Admitted;
use super::outputs::Outputs;
use super::pipeline::*;

impl Core {
    /// One job: the endpoint's filters and transform, admission (breaker, endpoint slot), one
    /// attempt, and what follows from it.
    pub(super) async fn handle(
        &self,
        job: Job,
        out: &mut Outputs,
    ) -> Result<Outcome, DispatcherError> {
        match self.prepare(job, out).await? {
            Ready::Send(job, config) => self.send_prepared(*job, &config, out).await,
            Ready::Ended(outcome) => Ok(outcome),
        }
    }

    /// Sends a prepared job on its own, and what follows from it.
    pub(super) async fn send_prepared(
        &self,
        job: Job,
        config: &EndpointConfig,
        out: &mut Outputs,
    ) -> Result<Outcome, DispatcherError> {
        let message_id = delivery::webhook_id(&job.head.event_id);
        // A lane's head waits for the endpoint like a tier task does: it may be the half-open
        // probe. An open breaker defers either without spending an attempt.
        let from_tier = job.tier > 0 || job.ordered;
        match self
            .send_once(
                &job.endpoint,
                config,
                &message_id,
                &job.body,
                from_tier,
                job.deferrals,
                job.ordered,
            )
            .await
        {
            Sent::Attempt(attempt) => self.after_attempt(job, attempt, out).await,
            Sent::Deferred(reason) => self.defer(job, reason, out).await,
            Sent::Interrupted => Ok(Outcome::Interrupted),
        }
    }

    /// Admission (breaker, rate limit, endpoint slot, global slot) and one request: what the
    /// main path and the tiers do for a single delivery and for a batch alike. `deferrals` and
    /// `ordered` bound how long an open breaker may hold the delivery back.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn send_once(
        &self,
        endpoint: &WebhookEntry,
        config: &EndpointConfig,
        message_id: &str,
        body: &[u8],
        from_tier: bool,
        deferrals: u32,
        ordered: bool,
    ) -> Sent {
        let endpoint_id = endpoint.webhook.id.clone();
        let Admitted {
            state,
            probe,
            permit,
            global,
        } = match self
            .admit(&endpoint_id, config, from_tier, deferrals, ordered)
            .await
        {
            Ok(admitted) => admitted,
            Err(refused) => return refused,
        };
        self.metrics.in_flight.inc();
        let attempt = tokio::select! {
            _ = self.interrupt.cancelled() => None,
            attempt = self.sender.attempt(endpoint, config, message_id, body) => Some(attempt),
        };
        self.metrics.in_flight.dec();
        drop(global);
        drop(permit);
        let Some(attempt) = attempt else {
            if probe {
                state.abandon_probe();
            }
            return Sent::Interrupted;
        };
        self.metrics
            .attempt_seconds
            .observe(attempt.duration.as_secs_f64());
        let label = match attempt.result {
            AttemptResult::Delivered { .. } => "delivered",
            AttemptResult::Retryable { .. } => "retryable",
            AttemptResult::Gone { .. } => "gone",
            AttemptResult::Terminal { .. } => "terminal",
        };
        self.metrics.attempts.with_label_values(&[label]).inc();
        let failed = matches!(attempt.result, AttemptResult::Retryable { .. });
        let (before, after) = state.record(failed);
        if before != after {
            let name = match after {
                BreakerState::Closed => "closed",
                BreakerState::Open => "open",
                BreakerState::HalfOpen => "half_open",
            };
            info!(
                webhook = endpoint_id,
                state = name,
                "circuit breaker changed"
            );
            self.metrics
                .breaker_transitions
                .with_label_values(&[name])
                .inc();
        }
        self.metrics
            .breaker_state
            .with_label_values(&[&endpoint_id])
            .set(after.gauge());
        Sent::Attempt(attempt)
    }

    /// Ends a job that cannot be sent (its configuration is unusable, a filter or the transform
    /// failed): a dead letter and an error span, like a terminal answer, without a request.
    pub(super) async fn fail_unsent(
        &self,
        job: Job,
        code: &str,
        message: String,
        out: &mut Outputs,
    ) -> Result<Outcome, DispatcherError> {
        self.metrics.attempts.with_label_values(&["terminal"]).inc();
        let attempt = Attempt {
            result: AttemptResult::Terminal {
                code: code.into(),
                message,
                status: None,
            },
            duration: Duration::ZERO,
            response_body: String::new(),
            body_truncated: false,
        };
        self.after_attempt(job, attempt, out).await
    }
}
