//! Emit: a batch through plan and map, then every output written in record order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

use erp_runtime::{ConfigView, kafka};
use erp_schemas::inbound::InboundEventRecord;
use erp_schemas::monitoring::MonitoringSpan;

use super::guard::*;
use super::map::*;
use super::pipeline::*;
use super::plan::*;
use crate::error::ProcessorError;
use crate::outcome::{self, Outcome, PlatformHead};
use crate::state::{DedupOverlay, PendingState};

impl Worker {
    /// Decides, maps and hands to the producer everything a batch writes (outputs, then the
    /// changelog batch records), taking the dedup keys of the batch still in flight into account.
    pub(super) async fn write_batch(
        &self,
        view: &ConfigView,
        cache: &mut MappingCache,
        batch: &[Input],
        in_flight: Option<&Arc<DedupOverlay>>,
    ) -> Result<Written, ProcessorError> {
        let config = view.snapshot();
        let mut pending = PendingState::with_overlay(in_flight.cloned());
        let mut plans = Vec::with_capacity(batch.len());
        let platform_topic = self.topics.platform_events();
        let mut set_aside = Vec::new();
        for input in batch {
            let at = record_at(&input.source);
            if self.poison.is_poison(&at)? {
                // Crashed the process too often: not read, not mapped, dead-lettered.
                set_aside.push(at);
                plans.push(Plan::Done(poison_outcome(self.poison.threshold())));
                continue;
            }
            if input.source.topic == platform_topic {
                let head = serde_json::from_slice::<serde_json::Value>(
                    input.message.payload().unwrap_or_default(),
                )
                .ok()
                .and_then(PlatformHead::read);
                plans.push(match head {
                    Some(head) => plan_platform(&config, cache, head, self.settings.mapping_timeout),
                    None => Plan::Done(Outcome::Poison {
                        reason: "not a core event: JSON with _event_id, _event_name and _org_id expected".into(),
                    }),
                });
                continue;
            }
            let record: InboundEventRecord = match erp_schemas::error::decode(
                "inbound event",
                input.message.payload().unwrap_or_default(),
            ) {
                Ok(record) => record,
                Err(error) => {
                    plans.push(Plan::Done(Outcome::Poison {
                        reason: error.to_string(),
                    }));
                    continue;
                }
            };
            plans.push(self.plan(&config, cache, &mut pending, record, input.source.partition)?);
        }

        // Mapping is CPU work: run it off the async threads, all of the batch in one task,
        // under the per-record guard.
        let mut work = Vec::new();
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(plans.len());
        for ((index, plan), input) in plans.into_iter().enumerate().zip(batch) {
            let at = record_at(&input.source);
            match plan {
                Plan::Done(outcome) => outcomes.push(Some(outcome)),
                Plan::Map {
                    record,
                    use_case,
                    compiled,
                } => {
                    work.push((index, at, Work::Inbound(record, use_case, compiled)));
                    outcomes.push(None);
                }
                Plan::Outbound { head, use_cases } => {
                    work.push((index, at, Work::Outbound(Box::new(head), use_cases)));
                    outcomes.push(None);
                }
            }
        }
        let shared = Shared {
            timeout: self.settings.mapping_timeout,
            file_proxy_base_url: self.settings.file_proxy_base_url.clone(),
            config: Arc::clone(&config),
            limits: self.settings.payload_limits,
            poison: Arc::clone(&self.poison),
        };
        // On a mapping thread (a pool with large stacks), off the async threads: values a mapping builds can nest deeper
        // than any payload, and are dropped recursively (see `erp_mapping::jsonata`).
        let mapped = erp_mapping::jsonata::run_on_mapping_stack(move || map_all(&shared, work))
            .await
            .map_err(ProcessorError::Task)??;
        for (index, outcome) in mapped {
            if let Some(slot) = outcomes.get_mut(index) {
                *slot = Some(outcome);
            }
        }

        // Write every output in record order, then wait for all acknowledgements.
        let mut deliveries = Vec::new();
        let mut counts: Vec<&'static str> = Vec::with_capacity(outcomes.len());
        let mut batch_spans = Vec::new();
        for (input, outcome) in batch.iter().zip(outcomes.iter()) {
            let Some(outcome) = outcome else { continue };
            counts.push(outcome.label());
            self.write(input, outcome, &mut deliveries, &mut batch_spans)
                .await?;
        }
        self.write_spans(&batch_spans, &mut deliveries).await?;
        let mut firsts: HashMap<i32, i64> = HashMap::new();
        for input in batch {
            pending.advance(
                &input.source.topic,
                input.source.partition,
                input.source.offset + 1,
            );
            if input.source.topic != platform_topic {
                let first = firsts
                    .entry(input.source.partition)
                    .or_insert(input.source.offset);
                *first = (*first).min(input.source.offset);
            }
        }
        let changelog = self.write_changelog(&mut pending, &firsts).await?;
        // Set-aside records are written as dead letters now; a crash before the batch commits
        // only sets them aside again.
        self.poison.forget(&set_aside)?;
        Ok(Written {
            deliveries,
            changelog,
            pending,
            counts,
        })
    }

    /// Writes the spans of a batch: one record per integration (an array where there are
    /// several), instead of one record per span, since each record costs a broker write.
    pub(super) async fn write_spans(
        &self,
        spans: &[MonitoringSpan],
        deliveries: &mut Vec<rdkafka::producer::DeliveryFuture>,
    ) -> Result<(), ProcessorError> {
        let topic = self.topics.monitoring();
        for record in erp_schemas::monitoring::batch_records(spans)? {
            deliveries
                .push(kafka::enqueue(&self.producer, &topic, &record.key, &record.value).await?);
        }
        Ok(())
    }

    /// Encodes `value` in its topic's wire format (JSON, or Avro where chosen) and hands it to
    /// the producer; its delivery is awaited with the rest of the batch.
    pub(super) async fn enqueue<T: serde::Serialize>(
        &self,
        what: &'static str,
        topic: &str,
        key: &str,
        value: &T,
        deliveries: &mut Vec<rdkafka::producer::DeliveryFuture>,
    ) -> Result<(), ProcessorError> {
        let bytes = self.wire.encode(what, topic, value).await?;
        deliveries.push(kafka::enqueue(&self.producer, topic, key, &bytes).await?);
        Ok(())
    }

    /// Writes one record's outputs: its core events, poll items, ACK rows and dead letter; its
    /// spans join `batch_spans`, written per batch by [`Self::write_spans`].
    pub(super) async fn write(
        &self,
        input: &Input,
        outcome: &Outcome,
        deliveries: &mut Vec<rdkafka::producer::DeliveryFuture>,
        batch_spans: &mut Vec<MonitoringSpan>,
    ) -> Result<(), ProcessorError> {
        let key = input
            .message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        if let Outcome::Mapped {
            record,
            use_case,
            result,
            ..
        } = outcome
        {
            let event = outcome::core_event(record, use_case, result, &input.source);
            self.enqueue(
                "core event",
                &self.topics.core_events(),
                &record.key(),
                &event,
                deliveries,
            )
            .await?;
        }
        if let Outcome::InvalidEvent {
            head,
            error,
            use_cases,
        } = outcome
        {
            let value = String::from_utf8_lossy(input.message.payload().unwrap_or_default());
            let (spans, letter) = crate::platform_check::invalid_event_records(
                head,
                error,
                use_cases,
                &input.source,
                key.as_deref(),
                &value,
            );
            batch_spans.extend(spans);
            self.count_dead_letter(&letter);
            let event_key = key.clone().unwrap_or_else(|| head.event_id.clone());
            return self
                .enqueue(
                    "dead letter",
                    &self.topics.dlq(),
                    &event_key,
                    &letter,
                    deliveries,
                )
                .await;
        }
        if let Outcome::Outbound { head, results } = outcome {
            let value = String::from_utf8_lossy(input.message.payload().unwrap_or_default());
            let outcome::OutboundRecords {
                events,
                poll_items,
                spans,
                letters,
                ack,
            } = outcome::outbound_records(head, results, &input.source, key.as_deref(), &value);
            if let Some(ack) = ack {
                self.enqueue(
                    "ACK tracking record",
                    &self.topics.acks(),
                    &ack.key(),
                    &ack,
                    deliveries,
                )
                .await?;
            }
            // Keyed like the platform event (its trigger entity), so per-entity order holds.
            let event_key = key.clone().unwrap_or_else(|| head.event_id.clone());
            for event in events {
                self.enqueue(
                    "core event",
                    &self.topics.core_events(),
                    &event_key,
                    &event,
                    deliveries,
                )
                .await?;
            }
            // Keyed by integration: one integration's stream is one ordered partition.
            for item in poll_items {
                self.enqueue(
                    "poll item",
                    &self.topics.outbound_poll(),
                    &item.integration_id,
                    &item,
                    deliveries,
                )
                .await?;
            }
            batch_spans.extend(spans);
            for letter in letters {
                self.count_dead_letter(&letter);
                self.enqueue(
                    "dead letter",
                    &self.topics.dlq(),
                    &event_key,
                    &letter,
                    deliveries,
                )
                .await?;
            }
            return Ok(());
        }
        let wanted = self.settings.success_spans || !matches!(outcome, Outcome::Mapped { .. });
        batch_spans.extend(outcome::span(outcome, &input.source).filter(|_| wanted));
        batch_spans.extend(outcome::schema_warning_span(outcome, &input.source));
        let value =
            String::from_utf8_lossy(input.message.payload().unwrap_or_default()).into_owned();
        if let Some(letter) =
            outcome::dead_letter(outcome, input.source.clone(), key.clone(), value)
        {
            self.count_dead_letter(&letter);
            self.enqueue(
                "dead letter",
                &self.topics.dlq(),
                key.as_deref().unwrap_or_default(),
                &letter,
                deliveries,
            )
            .await?;
        }
        Ok(())
    }
}

impl Worker {
    /// Counts a dead letter as it is handed to the producer (a batch written again after a
    /// failure counts its letters again, as it writes them again).
    fn count_dead_letter(&self, letter: &erp_schemas::dead_letter::DeadLetter) {
        self.metrics
            .dead_letters
            .with_label_values(&[letter.stage.as_str(), letter.code.as_str()])
            .inc();
    }
}

/// Hands a record to the producer, waiting while its queue is full.
pub(super) async fn send_now<'a>(
    producer: &FutureProducer,
    mut record: FutureRecord<'a, [u8], [u8]>,
) -> Result<rdkafka::producer::DeliveryFuture, ProcessorError> {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((error, _)) => return Err(ProcessorError::Kafka(error)),
        }
    }
}
