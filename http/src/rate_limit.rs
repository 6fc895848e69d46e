//! The per-organisation request budget of the API: a token bucket per organisation, held in
//! memory by each API instance.
//!
//! The bucket holds one minute's budget and refills continuously, so a client may burst up to
//! the whole budget and then proceeds at the steady rate. With several API instances behind a
//! load balancer each keeps its own buckets: the effective limit is the budget times the
//! instances a client reaches (stated in the README).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
use actix_web::{HttpResponse, ResponseError};

/// The 429 answer: epilot's error shape plus `Retry-After`. Its own type rather than an
/// [`crate::ApiError`] field, so every other error stays small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    /// Seconds until a request fits the budget again.
    pub retry_after_secs: u64,
    /// The budget that was spent.
    pub per_minute: u32,
}

impl std::fmt::Display for RateLimited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the organisation's budget of {} requests per minute is spent; retry in {} s",
            self.per_minute, self.retry_after_secs
        )
    }
}

impl ResponseError for RateLimited {
    fn status_code(&self) -> StatusCode {
        StatusCode::TOO_MANY_REQUESTS
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::TooManyRequests()
            .insert_header((RETRY_AFTER, self.retry_after_secs.to_string()))
            .json(serde_json::json!({"code": "RATE_LIMITED", "message": self.to_string()}))
    }
}

/// Token buckets keyed by organisation id.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Tokens are counted in integer units so refills and waits are exact: one request costs
/// [`UNITS_PER_REQUEST`], and every millisecond adds `per_minute` units (60,000 ms × per_minute
/// units = per_minute requests a minute).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    units: u64,
    refilled_at: Instant,
}

const UNITS_PER_REQUEST: u64 = 60_000;

impl RateLimiter {
    /// A limiter allowing `per_minute` requests per organisation and minute (0: no limit).
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The budget per minute (0: no limit).
    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Takes one request from `org_id`'s budget; the 429 answer when it is spent.
    pub fn check(&self, org_id: &str) -> Result<(), RateLimited> {
        self.check_at(org_id, Instant::now())
            .map_err(|retry_after_secs| RateLimited {
                retry_after_secs,
                per_minute: self.per_minute,
            })
    }

    fn check_at(&self, org_id: &str, now: Instant) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let rate = u64::from(self.per_minute);
        let capacity = rate * UNITS_PER_REQUEST;
        // A poisoned lock only means another request panicked mid-update; the counts stay
        // usable.
        let mut buckets = match self.buckets.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let bucket = buckets.entry(org_id.to_owned()).or_insert(Bucket {
            units: capacity,
            refilled_at: now,
        });
        let elapsed_ms = now
            .saturating_duration_since(bucket.refilled_at)
            .as_millis();
        let elapsed_ms = u64::try_from(elapsed_ms).unwrap_or(u64::MAX);
        if elapsed_ms > 0 {
            bucket.units = bucket
                .units
                .saturating_add(elapsed_ms.saturating_mul(rate))
                .min(capacity);
            // Advance by whole milliseconds only, so sub-millisecond remainders are not lost.
            bucket.refilled_at += std::time::Duration::from_millis(elapsed_ms);
        }
        if bucket.units >= UNITS_PER_REQUEST {
            bucket.units -= UNITS_PER_REQUEST;
            Ok(())
        } else {
            let wait_ms = (UNITS_PER_REQUEST - bucket.units).div_ceil(rate);
            // Whole seconds (the header's unit), rounded up so a retry at that time fits.
            Err(wait_ms.div_ceil(1000).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn spends_the_budget_then_refills() {
        let limiter = RateLimiter::new(3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check_at("a", start), Ok(()));
        }
        // One request per 20 s at 3 a minute.
        assert_eq!(limiter.check_at("a", start), Err(20));
        assert_eq!(limiter.check_at("b", start), Ok(()), "per organisation");
        assert_eq!(
            limiter.check_at("a", start + Duration::from_secs(15)),
            Err(5)
        );
        assert_eq!(
            limiter.check_at("a", start + Duration::from_secs(20)),
            Ok(())
        );
        // Never more than one minute's budget, however long the pause.
        let later = start + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(limiter.check_at("a", later), Ok(()));
        }
        assert!(limiter.check_at("a", later).is_err());
    }

    #[test]
    fn zero_is_no_limit() {
        let limiter = RateLimiter::new(0);
        let now = Instant::now();
        assert!((0..10_000).all(|_| limiter.check_at("a", now).is_ok()));
    }
}
