//! What a run cost: records written per topic (from the brokers' high watermarks, before and
//! after) and CPU time of this process by thread name (from `/proc`), so each throughput change
//! shows what it saved, not only how fast it went.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use erp_runtime::KafkaSettings;

/// The summed high watermark of every partition, per topic (internal `__` topics left out).
pub type Watermarks = BTreeMap<String, i64>;

/// A client that reads the brokers' high watermarks.
pub fn watermark_reader(brokers: &str) -> anyhow::Result<BaseConsumer> {
    Ok(KafkaSettings::new(brokers)
        .group_consumer_config("loadgen-counter", "loadgen-counter")
        .create()?)
}

/// Reads the high watermarks of every topic. Blocking (librdkafka round trips): call it from a
/// blocking thread.
pub fn watermarks(consumer: &BaseConsumer) -> anyhow::Result<Watermarks> {
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(None, timeout)?;
    let mut totals = Watermarks::new();
    for topic in metadata.topics() {
        if topic.name().starts_with("__") {
            continue;
        }
        let mut total = 0;
        for partition in topic.partitions() {
            let (_, high) = consumer.fetch_watermarks(topic.name(), partition.id(), timeout)?;
            total += high;
        }
        totals.insert(topic.name().to_owned(), total);
    }
    Ok(totals)
}

/// Reads the watermarks until they have not moved for `quiet`: the records a stage writes
/// after the last delivery (its attempt span, index traffic) belong to the run too.
pub async fn settled_watermarks(
    consumer: &Arc<BaseConsumer>,
    quiet: Duration,
    limit: Duration,
) -> anyhow::Result<Watermarks> {
    let started = Instant::now();
    let read = || {
        let consumer = Arc::clone(consumer);
        async move { tokio::task::spawn_blocking(move || watermarks(&consumer)).await? }
    };
    let mut last = read().await?;
    let mut unchanged_since = Instant::now();
    while started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = read().await?;
        if now != last {
            last = now;
            unchanged_since = Instant::now();
        } else if unchanged_since.elapsed() >= quiet {
            break;
        }
    }
    Ok(last)
}

/// Records written between `before` and `after`, per topic with any.
pub fn written(before: &Watermarks, after: &Watermarks) -> BTreeMap<String, i64> {
    after
        .iter()
        .map(|(topic, high)| {
            let low = before.get(topic).copied().unwrap_or(0);
            (topic.clone(), high - low)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// `/proc` reports CPU time in USER_HZ, which Linux fixes at 100 per second for user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user + system) of this process and of its live threads grouped by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuTime {
    /// The whole process, threads that have exited included.
    pub process: f64,
    /// Live threads by name, with digits dropped (`rdk:broker1` and `rdk:broker2` are one).
    pub by_thread: BTreeMap<String, f64>,
}

/// Name and CPU seconds from the text of a `/proc/…/stat` file (the name is in parentheses
/// and may hold spaces; utime and stime are the 14th and 15th fields).
fn parse_stat(text: &str) -> Option<(String, f64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) is index 11 here and stime index 12.
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((name, (user + system) / TICKS_PER_SECOND))
}

/// This process's CPU time now; `None` where there is no `/proc` (not Linux).
pub fn cpu_time() -> Option<CpuTime> {
    let (_, process) = parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let mut by_thread = BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("stat")) else {
            continue; // the thread exited meanwhile
        };
        if let Some((name, seconds)) = parse_stat(&text) {
            let name: String = name.chars().filter(|c| !c.is_ascii_digit()).collect();
            *by_thread.entry(name).or_insert(0.0) += seconds;
        }
    }
    Some(CpuTime { process, by_thread })
}

/// CPU seconds spent between `before` and `after`, the threads sorted by most first.
pub fn spent(before: &CpuTime, after: &CpuTime) -> (f64, Vec<(String, f64)>) {
    let mut threads: Vec<(String, f64)> = after
        .by_thread
        .iter()
        .map(|(name, seconds)| {
            let earlier = before.by_thread.get(name).copied().unwrap_or(0.0);
            (name.clone(), seconds - earlier)
        })
        .filter(|(_, seconds)| *seconds > 0.0)
        .collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    (after.process - before.process, threads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_name_and_seconds() {
        let line = "4242 (rdk:broker 1) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 12 0 100";
        assert_eq!(parse_stat(line), Some(("rdk:broker 1".into(), 3.0)));
    }

    #[test]
    fn written_counts_only_topics_that_grew() {
        let before = Watermarks::from([("a".into(), 10), ("b".into(), 5)]);
        let after = Watermarks::from([("a".into(), 40), ("b".into(), 5), ("c".into(), 7)]);
        assert_eq!(
            written(&before, &after),
            BTreeMap::from([("a".into(), 30), ("c".into(), 7)])
        );
    }

    #[test]
    fn this_process_has_cpu_time() {
        let now = cpu_time().expect("/proc is readable on Linux");
        assert!(now.process >= 0.0);
        assert!(!now.by_thread.is_empty());
    }
}
