//! The retry schedule: which tier a failed or deferred delivery goes to and when it is due.
//!
//! Tier `n` (1-based) waits `delays[n-1]`; epilot's schedule is 5 s, 5 min, 30 min, 2 h, 5 h.
//! After its `a`-th failed attempt a delivery goes to tier `a` (the `a`-th wait), so an endpoint's
//! `retryPolicy.maxAttempts` = `m` allows `m` retries after the first attempt, using the first
//! `m` waits — epilot's rule. A `Retry-After` longer than that wait moves the delivery to the
//! first later tier whose wait is at least as long (capped), because every record in a tier must
//! be due in write order for the tier consumer's wait-on-the-head to be right.

use std::time::Duration;

use rand::Rng;

use erp_schemas::config::RetryPolicy;

/// Most retries an endpoint may ask for (`retryPolicy.maxAttempts` is 1..5).
pub const MAX_RETRIES: u32 = 5;

/// How long, as a share of the tier's wait, jitter may add. Small and only ever added, because a
/// record with a later due time ahead of it in the tier waits for that one: the jitter bounds
/// how late a retry can be.
const JITTER_SHARE: f64 = 0.1;

/// The tiers' waits and the `Retry-After` cap.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    delays: Vec<Duration>,
    max_retry_after: Duration,
}

impl Schedule {
    /// A schedule of 1 to [`erp_schemas::topics::RETRY_TIERS`] waits, each at least as long as
    /// the one before (a later tier with a shorter wait would overtake the earlier one).
    pub fn new(delays: Vec<Duration>, max_retry_after: Duration) -> Result<Self, String> {
        let tiers = erp_schemas::topics::RETRY_TIERS as usize;
        if delays.is_empty() || delays.len() > tiers {
            return Err(format!(
                "the retry schedule needs 1 to {tiers} waits, got {}",
                delays.len()
            ));
        }
        if delays.windows(2).any(|w| w[1] < w[0]) {
            return Err("the retry schedule's waits must not get shorter".into());
        }
        Ok(Self {
            delays,
            max_retry_after,
        })
    }

    /// epilot's schedule: 5 s, 5 min, 30 min, 2 h, 5 h; `Retry-After` capped at 1 h.
    pub fn epilot() -> Self {
        Self {
            delays: [5, 300, 1800, 7200, 18000]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            max_retry_after: Duration::from_secs(3600),
        }
    }

    /// How many tiers there are.
    pub fn tiers(&self) -> u32 {
        self.delays.len() as u32
    }

    /// The waits, first tier first.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// All waits together: how long a delivery that fails every time takes from its first
    /// attempt to its dead letter (without jitter and `Retry-After`).
    pub fn total(&self) -> Duration {
        self.delays.iter().sum()
    }

    /// The wait of `tier` (1-based; out-of-range tiers are clamped).
    pub fn delay(&self, tier: u32) -> Duration {
        let index = (tier.max(1) as usize - 1).min(self.delays.len() - 1);
        self.delays[index]
    }

    /// Retries an endpoint's policy allows after the first attempt: `maxAttempts` clamped to
    /// 1..5 and to the tiers there are; none when the policy is disabled. Endpoints without a
    /// policy get the default (3).
    pub fn retries_allowed(&self, policy: Option<RetryPolicy>) -> u32 {
        let policy = policy.unwrap_or_default();
        if !policy.enabled {
            return 0;
        }
        policy.max_attempts.clamp(1, MAX_RETRIES).min(self.tiers())
    }

    /// The tier for a delivery after `attempts` failed attempts (at least tier 1, so a deferred
    /// delivery without attempts goes to the first), moved later for a `Retry-After`.
    pub fn tier_for(&self, attempts: u32, retry_after: Option<Duration>) -> u32 {
        let base = attempts.clamp(1, self.tiers());
        let Some(wanted) = retry_after.map(|r| r.min(self.max_retry_after)) else {
            return base;
        };
        (base..=self.tiers())
            .find(|&tier| self.delay(tier) >= wanted)
            .unwrap_or(self.tiers())
    }

    /// When a record written to `tier` at `now_ms` is due: the tier's wait plus up to 10 %
    /// jitter, so retries of many deliveries that failed together do not arrive together.
    pub fn due_at(&self, tier: u32, now_ms: i64) -> i64 {
        let wait = self.delay(tier);
        let jitter = wait.mul_f64(rand::rng().random_range(0.0..JITTER_SHARE));
        now_ms.saturating_add((wait + jitter).as_millis() as i64)
    }
}

/// How many waits of `wait` (at least 1 ms) fit in `total`; at least one.
pub fn waits_within(total: Duration, wait: Duration) -> u32 {
    let wait = wait.max(Duration::from_millis(1)).as_millis();
    u32::try_from(total.as_millis() / wait)
        .unwrap_or(u32::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &[u64]) -> Vec<Duration> {
        s.iter().copied().map(Duration::from_secs).collect()
    }

    #[test]
    fn policies_use_the_first_waits() {
        let schedule = Schedule::epilot();
        assert_eq!(schedule.retries_allowed(None), 3);
        let policy = |enabled, max_attempts| {
            Some(RetryPolicy {
                enabled,
                max_attempts,
            })
        };
        assert_eq!(schedule.retries_allowed(policy(true, 5)), 5);
        assert_eq!(schedule.retries_allowed(policy(true, 9)), 5);
        assert_eq!(schedule.retries_allowed(policy(true, 0)), 1);
        assert_eq!(schedule.retries_allowed(policy(false, 5)), 0);
        let short = Schedule::new(secs(&[1, 2]), Duration::from_secs(60)).expect("valid");
        assert_eq!(short.retries_allowed(policy(true, 5)), 2);
    }

    #[test]
    fn failures_walk_the_tiers_and_retry_after_moves_later() {
        let schedule = Schedule::epilot();
        assert_eq!(
            schedule.tier_for(0, None),
            1,
            "a deferral goes to the first tier"
        );
        assert_eq!(schedule.tier_for(1, None), 1);
        assert_eq!(schedule.tier_for(3, None), 3);
        assert_eq!(schedule.tier_for(1, Some(Duration::from_secs(2))), 1);
        assert_eq!(schedule.tier_for(1, Some(Duration::from_secs(60))), 2);
        assert_eq!(schedule.tier_for(2, Some(Duration::from_secs(2000))), 4);
        assert_eq!(
            schedule.tier_for(1, Some(Duration::from_secs(99_999))),
            4,
            "capped at one hour, which the 2 h tier covers"
        );
    }

    #[test]
    fn due_times_add_the_wait_and_a_little_jitter() {
        let schedule = Schedule::new(secs(&[10]), Duration::from_secs(60)).expect("valid");
        for _ in 0..100 {
            let due = schedule.due_at(1, 1_000);
            assert!((11_000..=12_000).contains(&due), "{due}");
        }
    }

    #[test]
    fn the_total_bounds_how_often_a_delivery_may_wait() {
        let schedule = Schedule::epilot();
        assert_eq!(schedule.total(), Duration::from_secs(27_305));
        assert_eq!(waits_within(schedule.total(), schedule.delay(1)), 5_461);
        assert_eq!(waits_within(Duration::from_secs(1), Duration::ZERO), 1_000);
        assert_eq!(waits_within(Duration::ZERO, Duration::from_secs(5)), 1);
    }

    #[test]
    fn rejects_unusable_schedules() {
        assert!(Schedule::new(vec![], Duration::ZERO).is_err());
        assert!(Schedule::new(secs(&[1, 2, 3, 4, 5, 6]), Duration::ZERO).is_err());
        assert!(Schedule::new(secs(&[5, 1]), Duration::ZERO).is_err());
    }
}
