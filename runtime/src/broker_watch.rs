//! Whether the Kafka cluster answers, as a readiness check with a reason. While the brokers are
//! unreachable a role cannot do its job (ingest answers 503 `QUEUE_UNAVAILABLE`, the processor and
//! dispatcher wait on delivery reports), and its `/readyz` should say so rather than `ready`:
//! `kafka: broker unreachable for N s`, back to ready on the first answer.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::health::ReadyFlag;
use crate::kafka::KafkaSettings;

/// How often the cluster is asked, and how long one answer may take.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);

/// The readiness check's name.
pub const CHECK: &str = "kafka";

/// The reason `/readyz` gives after the brokers have not answered since `since` (`None`: they
/// answer).
pub fn reason(since: Option<Instant>, now: Instant) -> Option<String> {
    since.map(|since| {
        format!(
            "kafka: broker unreachable for {} s",
            now.saturating_duration_since(since).as_secs()
        )
    })
}

/// Asks the cluster for its metadata every [`PROBE_EVERY`] (on a blocking thread: the request
/// blocks up to its timeout) and reports the answer through `flag`, until `shutdown`.
pub async fn watch(kafka: KafkaSettings, flag: ReadyFlag, shutdown: CancellationToken) {
    let client: BaseConsumer = match kafka.reader_config("erp-toolkit-broker-watch").create() {
        Ok(client) => client,
        Err(error) => {
            // Only a bad setting gets here, and the role's other clients would fail on it too.
            warn!(%error, "cannot create the broker watch; readiness does not track the brokers");
            flag.set(true);
            // Ends with the role only: a supervised task that ends stops the process.
            shutdown.cancelled().await;
            return;
        }
    };
    let client = std::sync::Arc::new(client);
    let mut since: Option<Instant> = None;
    loop {
        let asking = std::sync::Arc::clone(&client);
        let answered = tokio::task::spawn_blocking(move || {
            asking.fetch_metadata(None, PROBE_EVERY).map(|_| ())
        })
        .await;
        let now = Instant::now();
        match answered {
            Ok(Ok(())) => {
                if let Some(down) = since.take() {
                    info!(
                        unreachable_s = now.saturating_duration_since(down).as_secs(),
                        "kafka reachable again"
                    );
                }
                flag.set(true);
            }
            Ok(Err(error)) => {
                if since.is_none() {
                    warn!(%error, "kafka unreachable; not ready until it answers");
                }
                let down = *since.get_or_insert(now);
                if let Some(reason) = reason(Some(down), now) {
                    flag.unready(reason);
                }
            }
            // The probe panicked: a bug; ending lets the supervisor stop the role.
            Err(_) => return,
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_names_how_long_the_brokers_have_been_gone() {
        let start = Instant::now();
        assert_eq!(reason(None, start), None);
        assert_eq!(
            reason(Some(start), start + Duration::from_millis(12_400)).as_deref(),
            Some("kafka: broker unreachable for 12 s")
        );
    }
}
