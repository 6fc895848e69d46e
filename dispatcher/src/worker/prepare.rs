//! Prepare: an endpoint's parsed configuration (cached per revision), its `{{env.*}}`
//! references resolved, and the request body after filters and transform.

use std::sync::Arc;

use erp_runtime::config::WebhookEntry;

use crate::error::DispatcherError;
use erp_webhooks::endpoint::{EndpointConfig, Prepared};

use super::outputs::Outputs;
use super::pipeline::*;

impl Core {
    /// The parsed configuration of an endpoint revision, from the cache or parsed now. Only for
    /// entries that went through `environment::resolve`: the cache key is the revision, which
    /// does not tell a resolved entry from the stored one.
    pub(super) fn endpoint_config(&self, entry: &WebhookEntry) -> ParsedConfig {
        let Ok(mut configs) = self.configs.lock() else {
            // A poisoned cache only means a panic elsewhere; parse without caching.
            return (
                entry.revision,
                EndpointConfig::parse(&entry.webhook.extra).map(Arc::new),
            );
        };
        if let Some(cached) = configs.get(&entry.webhook.id)
            && cached.0 == entry.revision
        {
            return cached.clone();
        }
        let parsed = (
            entry.revision,
            EndpointConfig::parse(&entry.webhook.extra).map(Arc::new),
        );
        configs.insert(entry.webhook.id.clone(), parsed.clone());
        parsed
    }

    /// The endpoint's environment, configuration, filters and transform applied to a job: ready
    /// to send, or ended (skipped, or failed without a request).
    pub(super) async fn prepare(
        &self,
        mut job: Job,
        out: &mut Outputs,
    ) -> Result<Ready, DispatcherError> {
        // Secrets this process cannot decrypt (a key file without the key they were sealed
        // with) would sign with ciphertext: dead-lettered, recoverable once the key is given.
        if let Some(error) = &job.endpoint.unreadable {
            let message = error.to_string();
            return Ok(Ready::Ended(
                self.fail_unsent(job, "WEBHOOK_SECRET_UNREADABLE", message, out)
                    .await?,
            ));
        }
        // Integration environments: `{{env.*}}` references resolved at send time; a missing
        // variable fails the delivery, naming it (spec §8.2). A job prepared again (the head
        // of a lane) keeps what it recorded the first time: its endpoint is resolved already.
        let first = job.recording.url.is_none();
        let mut secrets = (*job.recording.secrets).clone();
        if first {
            job.recording.url = job.endpoint.webhook.url.clone();
            secrets.add(&job.endpoint.signing_secret);
            for previous in &job.endpoint.previous_secrets {
                secrets.add(&previous.secret);
            }
        }
        match crate::environment::resolve(&self.view, &job.endpoint, &mut secrets) {
            Ok(std::borrow::Cow::Owned(resolved)) => job.endpoint = resolved,
            Ok(std::borrow::Cow::Borrowed(_)) => {}
            Err(error) => {
                job.recording.secrets = Arc::new(secrets);
                let code = error.code();
                return Ok(Ready::Ended(
                    self.fail_unsent(job, code, error.to_string(), out).await?,
                ));
            }
        }
        let parsed = self.endpoint_config(&job.endpoint).1;
        if let Ok(config) = &parsed {
            config.add_secrets(&mut secrets);
        }
        job.recording.secrets = Arc::new(secrets);
        let config = match parsed {
            Ok(config) => config,
            // Stored before the API validated it: nothing can be sent until it is fixed.
            Err(error) => {
                return Ok(Ready::Ended(
                    self.fail_unsent(job, "WEBHOOK_CONFIG_INVALID", error.to_string(), out)
                        .await?,
                ));
            }
        };
        let verbatim = job.replay.as_ref().is_some_and(|r| r.body.is_some());
        if config.inspects_payload() && !verbatim {
            let body = Arc::clone(&job.body);
            let timeout = self.settings.jsonata_timeout;
            let prepare = Arc::clone(&config);
            // JSONata is CPU work bounded only by its time limit: off the async threads, on a
            // thread with the mapping stack (values it builds can nest deep and are dropped
            // recursively). A panic is this job's TRANSFORM_FAILED, never the process's end.
            let prepared =
                erp_mapping::jsonata::run_on_mapping_stack(move || prepare.prepare(&body, timeout))
                    .await;
            match prepared {
                Ok(Prepared::Send(body)) => {
                    job.transformed = body != job.body;
                    job.body = body;
                }
                Ok(Prepared::Filtered) => return Ok(Ready::Ended(self.skip(&job, out).await?)),
                Ok(Prepared::Failed { code, message }) => {
                    return Ok(Ready::Ended(
                        self.fail_unsent(job, code, message, out).await?,
                    ));
                }
                Err(error) => {
                    return Ok(Ready::Ended(
                        self.fail_unsent(job, "TRANSFORM_FAILED", error, out)
                            .await?,
                    ));
                }
            }
        }
        Ok(Ready::Send(Box::new(job), config))
    }
}
