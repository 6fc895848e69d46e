//! Per-endpoint isolation: a concurrency cap, a circuit breaker and a rate limit
//! ([`crate::rate_limit`]) for every webhook endpoint,
//! shared by the main path and the retry tiers of one dispatcher process. Both exist so that one
//! slow or dead endpoint costs the others nothing: its excess deliveries are deferred to a retry
//! tier instead of waiting, and once it has failed often enough in a row nobody waits for it at
//! all until a probe shows it is back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Requests are refused until the cooldown has passed.
    Open,
    /// One probe request is allowed to find out whether the endpoint is back.
    HalfOpen,
}

impl BreakerState {
    /// The value of the `erp_dispatcher_breaker_state` gauge.
    pub fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

/// Whether a request may go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Yes; `probe` when it is the half-open probe.
    Allowed { probe: bool },
    /// No: the breaker is open (or half-open with its probe already out).
    Refused,
}

/// A consecutive-failure circuit breaker. Pure state: the caller passes the time, so the rules
/// are testable without waiting.
#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    probe_out: bool,
}

impl Breaker {
    /// A closed breaker that opens after `threshold` consecutive failures and lets a probe
    /// through `cooldown` after opening.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            consecutive_failures: 0,
            opened_at: None,
            probe_out: false,
        }
    }

    /// The state at `now`.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.opened_at {
            None => BreakerState::Closed,
            Some(at) if now.duration_since(at) >= self.cooldown => BreakerState::HalfOpen,
            Some(_) => BreakerState::Open,
        }
    }

    /// Asks to send a request. `may_probe` is false on the main path: probing costs up to one
    /// request timeout, which only the retry tiers may spend, so the main path never waits for
    /// an endpoint that has been failing.
    pub fn admit(&mut self, now: Instant, may_probe: bool) -> Admission {
        match self.state(now) {
            BreakerState::Closed => Admission::Allowed { probe: false },
            BreakerState::HalfOpen if may_probe && !self.probe_out => {
                self.probe_out = true;
                Admission::Allowed { probe: true }
            }
            _ => Admission::Refused,
        }
    }

    /// A probe that was admitted but not sent (the endpoint was saturated).
    pub fn abandon_probe(&mut self) {
        self.probe_out = false;
    }

    /// Records an attempt: `failed` for retryable failures (5xx, 429, timeouts, connection
    /// errors). Any answer that shows the endpoint works closes the breaker.
    pub fn record(&mut self, now: Instant, failed: bool) {
        self.probe_out = false;
        if failed {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            let half_open = self.state(now) == BreakerState::HalfOpen;
            if half_open || self.consecutive_failures >= self.threshold {
                self.opened_at = Some(now);
            }
        } else {
            self.consecutive_failures = 0;
            self.opened_at = None;
        }
    }
}

/// What one endpoint's deliveries share.
#[derive(Debug)]
pub struct EndpointState {
    /// Requests in flight to this endpoint, at most the cap.
    pub permits: Arc<Semaphore>,
    /// The endpoint's circuit breaker.
    pub breaker: Mutex<Breaker>,
    /// The endpoint's rate limit bucket (`rateLimit`, or the dispatcher-wide default).
    pub throttle: crate::rate_limit::Throttle,
}

impl EndpointState {
    /// Asks the breaker (see [`Breaker::admit`]).
    pub fn admit(&self, may_probe: bool) -> Admission {
        self.with_breaker(|b| b.admit(Instant::now(), may_probe))
    }

    /// Records an attempt's result; returns the breaker's state before and after.
    pub fn record(&self, failed: bool) -> (BreakerState, BreakerState) {
        self.with_breaker(|b| {
            let now = Instant::now();
            let before = b.state(now);
            b.record(now, failed);
            (before, b.state(now))
        })
    }

    /// Gives back an unused probe admission.
    pub fn abandon_probe(&self) {
        self.with_breaker(Breaker::abandon_probe);
    }

    fn with_breaker<T>(&self, f: impl FnOnce(&mut Breaker) -> T) -> T {
        // A panic while holding the lock cannot leave the breaker inconsistent (every update is
        // a few assignments), so a poisoned lock is used as it is.
        let mut guard = match self.breaker.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }
}

/// The isolation state of every endpoint seen by this process, created on first use.
#[derive(Debug)]
pub struct Endpoints {
    cap: usize,
    threshold: u32,
    cooldown: Duration,
    states: Mutex<HashMap<String, Arc<EndpointState>>>,
}

impl Endpoints {
    /// Endpoints with at most `cap` requests in flight each and breakers opening after
    /// `threshold` consecutive failures for `cooldown`.
    pub fn new(cap: usize, threshold: u32, cooldown: Duration) -> Self {
        Self {
            cap: cap.max(1),
            threshold,
            cooldown,
            states: Mutex::new(HashMap::new()),
        }
    }

    /// The state of endpoint `id`.
    pub fn get(&self, id: &str) -> Arc<EndpointState> {
        let mut states = match self.states.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        Arc::clone(states.entry(id.to_owned()).or_insert_with(|| {
            Arc::new(EndpointState {
                permits: Arc::new(Semaphore::new(self.cap)),
                breaker: Mutex::new(Breaker::new(self.threshold, self.cooldown)),
                throttle: crate::rate_limit::Throttle::default(),
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_probes_after_the_cooldown() {
        let start = Instant::now();
        let cooldown = Duration::from_secs(30);
        let mut breaker = Breaker::new(3, cooldown);
        breaker.record(start, true);
        breaker.record(start, true);
        breaker.record(start, false);
        assert_eq!(
            breaker.state(start),
            BreakerState::Closed,
            "a success resets"
        );
        for _ in 0..3 {
            breaker.record(start, true);
        }
        assert_eq!(breaker.state(start), BreakerState::Open);
        assert_eq!(breaker.admit(start, true), Admission::Refused);

        let later = start + cooldown;
        assert_eq!(breaker.state(later), BreakerState::HalfOpen);
        assert_eq!(
            breaker.admit(later, false),
            Admission::Refused,
            "the main path never probes"
        );
        assert_eq!(
            breaker.admit(later, true),
            Admission::Allowed { probe: true }
        );
        assert_eq!(
            breaker.admit(later, true),
            Admission::Refused,
            "one probe at a time"
        );
        breaker.record(later, true);
        assert_eq!(
            breaker.state(later),
            BreakerState::Open,
            "a failed probe reopens"
        );

        let again = later + cooldown;
        assert_eq!(
            breaker.admit(again, true),
            Admission::Allowed { probe: true }
        );
        breaker.record(again, false);
        assert_eq!(breaker.state(again), BreakerState::Closed);
        assert_eq!(
            breaker.admit(again, false),
            Admission::Allowed { probe: false }
        );
    }

    #[test]
    fn an_abandoned_probe_can_be_retaken() {
        let start = Instant::now();
        let mut breaker = Breaker::new(1, Duration::ZERO);
        breaker.record(start, true);
        assert_eq!(
            breaker.admit(start, true),
            Admission::Allowed { probe: true }
        );
        breaker.abandon_probe();
        assert_eq!(
            breaker.admit(start, true),
            Admission::Allowed { probe: true }
        );
    }
}
