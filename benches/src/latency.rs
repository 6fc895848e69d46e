//! Latency figures of a fixed-rate run: percentiles of a set of durations, and which reading a
//! delivery carries, so each delivery is matched to the moment its event was accepted.

use std::time::Duration;

use serde_json::Value;

/// p50, p99 and max of a set of durations (nearest-rank percentiles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Percentiles {
    /// The percentiles of `samples`; `None` when there are none.
    pub fn of(mut samples: Vec<Duration>) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let rank = |p: f64| {
            // Nearest rank: the smallest sample with at least p of all samples at or below it.
            let index = (p * samples.len() as f64).ceil() as usize;
            samples[index.clamp(1, samples.len()) - 1]
        };
        Some(Self {
            count: samples.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            max: samples[samples.len() - 1],
        })
    }

    /// One line: `p50 … ms  p99 … ms  max … ms (n samples)`.
    pub fn line(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "p50 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms  ({} samples)",
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.count
        )
    }
}

/// The reading number a delivered core event carries: the workload maps reading `n` to
/// `last_reading = 10000 + n + (n % 10) / 10`, found wherever it sits in the delivered body.
pub fn reading_number(body: &Value) -> Option<usize> {
    match body {
        Value::Object(fields) => {
            if let Some(value) = fields.get("last_reading").and_then(Value::as_f64) {
                let n = value.floor() - 10_000.0;
                if n >= 0.0 {
                    return Some(n as usize);
                }
            }
            fields.values().find_map(reading_number)
        }
        Value::Array(items) => items.iter().find_map(reading_number),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(ms).collect();
        let p = Percentiles::of(samples).expect("samples");
        assert_eq!(
            (p.p50, p.p99, p.max, p.count),
            (ms(50), ms(99), ms(100), 100)
        );
        let one = Percentiles::of(vec![ms(7)]).expect("one sample");
        assert_eq!((one.p50, one.p99, one.max), (ms(7), ms(7), ms(7)));
        assert_eq!(Percentiles::of(Vec::new()), None);
    }

    #[test]
    fn the_reading_number_is_found_in_a_nested_delivery() {
        let body = serde_json::json!({"data": {"updates": [
            {"entity": {"meter_number": "1ESY00000042", "last_reading": 10042.2}}
        ]}});
        assert_eq!(reading_number(&body), Some(42));
        assert_eq!(reading_number(&serde_json::json!({"other": 1})), None);
    }
}
