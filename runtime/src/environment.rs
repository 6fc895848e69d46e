//! Organisation environments: the values `{{env.<key>}}` references and `env_var_ref` mappings
//! read. Values are folded from `erp.config` like everything else; `SecretString` values stay
//! encrypted in the fold and are decrypted only where a reference is resolved (the dispatcher,
//! at send time), with the deployment's [`Keyring`].

use crate::secrets::{Keyring, SecretsError};
use erp_schemas::config::{EnvValueType, valid_env_key};

/// One stored environment value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvEntry {
    pub value_type: EnvValueType,
    /// Clear for `String`, the ciphertext for `SecretString`.
    pub stored: String,
    pub updated_at: String,
}

/// The associated data a secret of `org_id`'s variable `key` is encrypted for.
pub fn secret_context(org_id: &str, key: &str) -> String {
    format!("env/{org_id}/{key}")
}

/// Why a reference could not be resolved. Names the variable, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable {0:?} is not set")]
    Unknown(String),
    #[error("environment variable {key:?} cannot be read: {source}")]
    Secret { key: String, source: SecretsError },
    #[error(
        "environment variable {0:?} is a secret and this process has no secrets key \
         (--secrets-key-file)"
    )]
    NoKeyring(String),
}

impl EnvError {
    /// The machine-readable code of dead letters and spans.
    pub fn code(&self) -> &'static str {
        match self {
            EnvError::Unknown(_) => "ENV_VAR_NOT_FOUND",
            EnvError::Secret { .. } | EnvError::NoKeyring(_) => "ENV_VAR_UNREADABLE",
        }
    }
}

/// The clear value of an entry.
pub fn reveal(
    org_id: &str,
    key: &str,
    entry: &EnvEntry,
    keyring: Option<&Keyring>,
) -> Result<String, EnvError> {
    match entry.value_type {
        EnvValueType::String => Ok(entry.stored.clone()),
        EnvValueType::SecretString => keyring
            .ok_or_else(|| EnvError::NoKeyring(key.to_owned()))?
            .decrypt(&entry.stored, &secret_context(org_id, key))
            .map_err(|source| EnvError::Secret {
                key: key.to_owned(),
                source,
            }),
    }
}

/// Whether `text` holds a `{{env.<key>}}` reference.
pub fn has_reference(text: &str) -> bool {
    let mut found = false;
    let _ = render(text, |_| {
        found = true;
        Ok(String::new())
    });
    found
}

/// Replaces every `{{env.<key>}}` (spaces allowed inside the braces) in `text` with
/// `lookup(key)`. Other `{{…}}` are left as they are. The first failing lookup fails the whole.
pub fn render(
    text: &str,
    mut lookup: impl FnMut(&str) -> Result<String, EnvError>,
) -> Result<String, EnvError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        let inner = rest[start + 2..start + 2 + len].trim();
        out.push_str(&rest[..start]);
        match inner.strip_prefix("env.") {
            Some(key) if valid_env_key(key) => out.push_str(&lookup(key)?),
            _ => out.push_str(&rest[start..start + 2 + len + 2]),
        }
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_env_references_only() {
        let lookup = |key: &str| match key {
            "erp.host" => Ok("erp.example".to_owned()),
            other => Err(EnvError::Unknown(other.to_owned())),
        };
        assert_eq!(
            render("https://{{ env.erp.host }}/x/{{params.id}}", lookup).expect("renders"),
            "https://erp.example/x/{{params.id}}"
        );
        assert_eq!(
            render("{{env.nope}}", lookup),
            Err(EnvError::Unknown("nope".into()))
        );
        assert!(has_reference("a {{env.k}}"));
        assert!(!has_reference("a {{k}} {{"));
    }
}
