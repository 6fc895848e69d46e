//! Per-endpoint rate limits: a token bucket per endpoint, shared by the main path and the retry
//! tiers of one dispatcher process.
//!
//! An endpoint sets `rateLimit: {requestsPerSecond, burst?}` (our extension of `WebhookConfig`;
//! epilot's API has no such field), or the dispatcher-wide default applies
//! (`--endpoint-rate-limit`). A request takes one token; tokens come back at
//! `requestsPerSecond` up to `burst`. A request that would wait longer than the endpoint queue
//! wait for its token does not wait at all: it is deferred to a retry tier like a delivery to a
//! saturated endpoint, so a slow endpoint's backlog never holds up the others.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use erp_webhooks::settings::RateLimit;

/// A token bucket. Pure state: the caller passes the time, so the rules are testable without
/// waiting.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: RateLimit,
    /// May go below zero: tokens reserved by requests that are waiting for their turn.
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            at: now,
        }
    }

    /// Reserves a token if one is available within `max_wait`, returning how long the request
    /// has to wait for it; `None` leaves the bucket as it was. Reserving ahead is what bounds
    /// the requests started in any window of length `w` by `burst + per_second × w`, however
    /// many deliveries ask at once.
    pub fn reserve(&mut self, now: Instant, max_wait: Duration) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * self.limit.per_second).min(f64::from(self.limit.burst));
        self.at = now;
        let wait = if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            // A tiny rate gives a wait beyond what `Duration` holds: as good as never.
            Duration::try_from_secs_f64((1.0 - self.tokens) / self.limit.per_second)
                .unwrap_or(Duration::MAX)
        };
        if wait > max_wait {
            return None;
        }
        self.tokens -= 1.0;
        Some(wait)
    }
}

/// One endpoint's bucket, following the endpoint's current limit: a changed limit starts a new,
/// full bucket; no limit, no bucket.
#[derive(Debug, Default)]
pub struct Throttle {
    bucket: Mutex<Option<TokenBucket>>,
}

impl Throttle {
    /// Reserves a token under `limit` (see [`TokenBucket::reserve`]); without a limit the answer
    /// is always "now".
    pub fn reserve(&self, limit: Option<RateLimit>, max_wait: Duration) -> Option<Duration> {
        // Every update is a few assignments, so a poisoned lock is used as it is.
        let mut bucket = match self.bucket.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let Some(limit) = limit else {
            *bucket = None;
            return Some(Duration::ZERO);
        };
        let now = Instant::now();
        match bucket.as_mut() {
            Some(current) if current.limit == limit => current.reserve(now, max_wait),
            _ => bucket
                .insert(TokenBucket::new(limit, now))
                .reserve(now, max_wait),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_the_burst_then_the_rate_and_defers_beyond_the_wait() {
        let start = Instant::now();
        let limit = RateLimit::new(10.0, Some(3)).unwrap_or_else(|e| panic!("{e}"));
        let mut bucket = TokenBucket::new(limit, start);
        let max_wait = Duration::from_millis(250);
        for _ in 0..3 {
            assert_eq!(bucket.reserve(start, max_wait), Some(Duration::ZERO));
        }
        // The next tokens come at 100 ms intervals: reserved ahead, up to the wait allowed.
        let waits: Vec<_> = (0..2).map(|_| bucket.reserve(start, max_wait)).collect();
        assert_eq!(
            waits,
            vec![
                Some(Duration::from_millis(100)),
                Some(Duration::from_millis(200))
            ]
        );
        assert_eq!(bucket.reserve(start, max_wait), None, "beyond the wait");
        // A second later the bucket has refilled to the burst, not beyond.
        let later = start + Duration::from_secs(2);
        for _ in 0..3 {
            assert_eq!(bucket.reserve(later, Duration::ZERO), Some(Duration::ZERO));
        }
        assert_eq!(bucket.reserve(later, Duration::ZERO), None);
    }

    #[test]
    fn a_vanishingly_small_rate_defers_instead_of_overflowing() {
        let start = Instant::now();
        let limit = RateLimit::new(1e-300, Some(1)).unwrap_or_else(|e| panic!("{e}"));
        let mut bucket = TokenBucket::new(limit, start);
        assert_eq!(bucket.reserve(start, Duration::ZERO), Some(Duration::ZERO));
        assert_eq!(bucket.reserve(start, Duration::from_secs(3600)), None);
    }

    #[test]
    fn a_changed_limit_starts_a_new_bucket_and_no_limit_never_waits() {
        let throttle = Throttle::default();
        let one = RateLimit::new(1.0, Some(1)).ok();
        assert_eq!(throttle.reserve(one, Duration::ZERO), Some(Duration::ZERO));
        assert_eq!(throttle.reserve(one, Duration::ZERO), None);
        let two = RateLimit::new(1.0, Some(2)).ok();
        assert_eq!(throttle.reserve(two, Duration::ZERO), Some(Duration::ZERO));
        for _ in 0..10 {
            assert_eq!(throttle.reserve(None, Duration::ZERO), Some(Duration::ZERO));
        }
    }
}
