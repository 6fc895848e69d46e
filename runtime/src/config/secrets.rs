//! Encryption at rest of the webhook secrets in the configuration log: an endpoint's signing
//! secret, the secrets of a rotation still in their grace period, and the credentials inside its
//! `auth` object (basic password, API key value, OAuth2 client secret).
//!
//! [`seal`] runs in [`crate::ConfigWriter::append`], just before a record is written; [`reveal`]
//! runs in the configuration view's fold, just after a record is read. Everything in between —
//! the in-memory state, the dispatcher signing a request, the API masking a field — sees clear
//! values, so no other code changes when encryption is switched on. The ciphertext is the form of
//! [`crate::secrets`], bound to the organisation, the endpoint and the field, so a value copied
//! to another endpoint does not decrypt.
//!
//! A process without a secrets key writes clear values, and records written in clear before
//! encryption was switched on still load: a value without the `erpenc:` prefix is taken as is.

use serde_json::{Map, Value};

use crate::secrets::{Keyring, PREFIX, SecretsError};
use erp_schemas::config::{AUTH_SECRET_FIELDS, ConfigChange, ConfigRecord};

/// A webhook whose secrets this process could not decrypt, and why (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub webhook_id: String,
    pub error: SecretsError,
}

fn signing_context(org_id: &str, webhook_id: &str) -> String {
    format!("webhook/{org_id}/{webhook_id}/signing")
}

fn auth_context(org_id: &str, webhook_id: &str, object: &str, field: &str) -> String {
    format!("webhook/{org_id}/{webhook_id}/auth/{object}.{field}")
}

/// Encrypts every webhook secret of `record` not encrypted yet.
pub fn seal(record: &mut ConfigRecord, keyring: &Keyring) -> Result<(), SecretsError> {
    let org_id = record.org_id.clone();
    let mut failed = None;
    each_secret(&mut record.change, &org_id, &mut |value, context| {
        if failed.is_none() && !value.starts_with(PREFIX) {
            match keyring.encrypt(value, context) {
                Ok(sealed) => *value = sealed,
                Err(error) => failed = Some(error),
            }
        }
    });
    failed.map_or(Ok(()), Err)
}

/// Decrypts every encrypted webhook secret of `record`. A value that cannot be decrypted (no
/// keyring, a key the keyring lacks, an altered value) stays sealed, and its webhook is listed.
pub fn reveal(record: &mut ConfigRecord, keyring: Option<&Keyring>) -> Vec<Unreadable> {
    let org_id = record.org_id.clone();
    let mut unreadable: Vec<Unreadable> = Vec::new();
    visit_webhooks(&mut record.change, &mut |webhook_id, secrets| {
        let mut first_error = None;
        for_each_secret(secrets, &org_id, webhook_id, &mut |value, context| {
            if !value.starts_with(PREFIX) {
                return;
            }
            let opened = match keyring {
                Some(keyring) => keyring.decrypt(value, context),
                None => Err(SecretsError::KeyFile {
                    path: "(none)".into(),
                    message: "the configuration holds encrypted webhook secrets; give this \
                              process the deployment's --secrets-key-file"
                        .into(),
                }),
            };
            match opened {
                Ok(clear) => *value = clear,
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        });
        if let Some(error) = first_error {
            unreadable.push(Unreadable {
                webhook_id: webhook_id.to_owned(),
                error,
            });
        }
    });
    unreadable
}

/// The secret-bearing parts of one `WebhookUpserted` change.
struct WebhookSecrets<'a> {
    signing: &'a mut String,
    previous: Vec<&'a mut String>,
    extra: &'a mut Map<String, Value>,
}

fn visit_webhooks(change: &mut ConfigChange, f: &mut dyn FnMut(&str, WebhookSecrets<'_>)) {
    match change {
        ConfigChange::WebhookUpserted {
            webhook,
            signing_secret,
            previous_secrets,
        } => f(
            &webhook.id,
            WebhookSecrets {
                signing: signing_secret,
                previous: previous_secrets.iter_mut().map(|p| &mut p.secret).collect(),
                extra: &mut webhook.extra,
            },
        ),
        ConfigChange::Batch { changes } => {
            for change in changes {
                visit_webhooks(change, f);
            }
        }
        _ => {}
    }
}

fn for_each_secret(
    secrets: WebhookSecrets<'_>,
    org_id: &str,
    webhook_id: &str,
    f: &mut dyn FnMut(&mut String, &str),
) {
    let signing = signing_context(org_id, webhook_id);
    f(secrets.signing, &signing);
    for previous in secrets.previous {
        f(previous, &signing);
    }
    let Some(Value::Object(auth)) = secrets.extra.get_mut("auth") else {
        return;
    };
    for (object, field) in AUTH_SECRET_FIELDS {
        if let Some(Value::Object(inner)) = auth.get_mut(object)
            && let Some(Value::String(value)) = inner.get_mut(field)
        {
            f(value, &auth_context(org_id, webhook_id, object, field));
        }
    }
}

fn each_secret(change: &mut ConfigChange, org_id: &str, f: &mut dyn FnMut(&mut String, &str)) {
    visit_webhooks(change, &mut |webhook_id, secrets| {
        for_each_secret(secrets, org_id, webhook_id, f);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use erp_schemas::config::{PreviousSecret, WebhookEndpoint};
    use serde_json::json;

    fn keyring(byte: u8) -> Keyring {
        Keyring::from_keys(&[[byte; 32]]).expect("keyring")
    }

    fn record(org: &str, id: &str) -> ConfigRecord {
        let extra = json!({"auth": {"authType": "OAUTH_CLIENT_CREDENTIALS",
            "oauthConfig": {"clientId": "erp", "clientSecret": "oauth-secret",
                            "endpoint": "https://idp.example/token"},
            "basicAuthConfig": {"username": "u", "password": "pw"}}});
        ConfigRecord {
            org_id: org.into(),
            at: "t".into(),
            actor: None,
            base_revision: None,
            change: ConfigChange::WebhookUpserted {
                webhook: WebhookEndpoint {
                    id: id.into(),
                    name: "erp".into(),
                    event_name: "TestMessage".into(),
                    url: Some("https://erp.example/hook".into()),
                    http_method: "POST".into(),
                    enabled: true,
                    retry_policy: None,
                    creation_time: "t".into(),
                    updated_time: "t".into(),
                    extra: extra.as_object().cloned().unwrap_or_default(),
                },
                signing_secret: "whsec_current".into(),
                previous_secrets: vec![PreviousSecret {
                    secret: "whsec_old".into(),
                    valid_until: 1,
                }],
            },
        }
    }

    #[test]
    fn sealed_records_hold_no_clear_secret_and_reveal_to_the_original() {
        let keys = keyring(7);
        let original = record("org", "w1");
        let mut sealed = ConfigRecord {
            change: ConfigChange::Batch {
                changes: vec![original.change.clone()],
            },
            ..original.clone()
        };
        seal(&mut sealed, &keys).expect("sealed");
        let text = serde_json::to_string(&sealed).expect("json");
        for secret in ["whsec_current", "whsec_old", "oauth-secret", "\"pw\""] {
            assert!(!text.contains(secret), "{secret} in clear: {text}");
        }
        // Sealing twice does not wrap a ciphertext again.
        let again = sealed.clone();
        seal(&mut sealed, &keys).expect("sealed again");
        assert_eq!(sealed, again);

        assert_eq!(reveal(&mut sealed, Some(&keys)), Vec::new());
        let ConfigChange::Batch { changes } = sealed.change else {
            panic!("batch")
        };
        assert_eq!(changes, vec![original.change]);
    }

    #[test]
    fn clear_records_load_and_unreadable_ones_stay_sealed_and_are_named() {
        let mut clear = record("org", "w1");
        let before = clear.clone();
        assert_eq!(reveal(&mut clear, None), Vec::new());
        assert_eq!(clear, before);

        let mut sealed = record("org", "w1");
        seal(&mut sealed, &keyring(7)).expect("sealed");
        let stored = sealed.clone();
        let unreadable = reveal(&mut sealed, Some(&keyring(8)));
        assert_eq!(unreadable.len(), 1);
        assert_eq!(unreadable[0].webhook_id, "w1");
        assert!(matches!(
            unreadable[0].error,
            SecretsError::UnknownKey { .. }
        ));
        assert_eq!(
            sealed, stored,
            "every value stays sealed under an unknown key"
        );
        assert_eq!(reveal(&mut sealed.clone(), None).len(), 1);
    }

    #[test]
    fn a_ciphertext_moved_to_another_endpoint_does_not_decrypt() {
        let keys = keyring(7);
        let mut a = record("org", "w1");
        seal(&mut a, &keys).expect("sealed");
        let ConfigChange::WebhookUpserted { signing_secret, .. } = &a.change else {
            panic!("webhook")
        };
        let mut b = record("org", "w2");
        if let ConfigChange::WebhookUpserted {
            signing_secret: target,
            ..
        } = &mut b.change
        {
            *target = signing_secret.clone();
        }
        assert_eq!(reveal(&mut b, Some(&keys)).len(), 1);
    }
}
