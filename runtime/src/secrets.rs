//! Encryption at rest of secrets written to the configuration log (`SecretString` environment
//! values): AES-256-GCM from `ring`, a random 96-bit nonce per value, and the id of the key in
//! the stored form so keys can rotate.
//!
//! The key comes from the deployment (`--secrets-key-file`, a file mounted from a secret), never
//! from the log: whoever can read `erp.config` sees only ciphertext. The file holds one key per
//! line, 32 bytes in base64 or hex; the first encrypts, all of them decrypt (rotation: put the new
//! key first, keep the old one below it until nothing encrypted with it is in use).
//!
//! Stored form: `erpenc:v1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`. The key id is the
//! first 8 bytes of the key's SHA-256, in hex: it names the key without revealing it. Every value
//! is bound to where it belongs (the associated data, e.g. `env/<org>/<key>`), so a ciphertext
//! copied to another organisation or variable does not decrypt.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// The prefix of an encrypted value.
pub const PREFIX: &str = "erpenc:v1:";

/// Why a key file or a value could not be used. Never carries a secret or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    #[error("secrets key file {path}: {message}")]
    KeyFile { path: String, message: String },
    #[error(
        "a secret is encrypted with key {key_id}, which the deployment's secrets key file does \
         not hold (keys: {known})"
    )]
    UnknownKey { key_id: String, known: String },
    #[error("a secret does not decrypt (wrong key, or the value was altered)")]
    Decrypt,
    #[error("a stored secret is malformed")]
    Malformed,
    #[error("encryption failed")]
    Encrypt,
}

struct Key {
    id: String,
    key: LessSafeKey,
}

/// The deployment's secrets keys: the first encrypts, every one decrypts.
pub struct Keyring {
    keys: Vec<Key>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key ids only, never key material.
        f.debug_struct("Keyring")
            .field("keys", &self.key_ids())
            .finish()
    }
}

fn decode_key(line: &str) -> Option<[u8; 32]> {
    let line = line.trim();
    let bytes = if line.len() == 64 && line.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(line.get(2 * i..2 * i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?
    } else {
        STANDARD
            .decode(line)
            .or_else(|_| URL_SAFE_NO_PAD.decode(line.trim_end_matches('=')))
            .ok()?
    };
    bytes.try_into().ok()
}

fn key_id(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Keyring {
    /// A keyring of raw 32-byte keys, the first one encrypting.
    pub fn from_keys(keys: &[[u8; 32]]) -> Result<Self, SecretsError> {
        let invalid = |message: &str| SecretsError::KeyFile {
            path: "(in memory)".into(),
            message: message.into(),
        };
        if keys.is_empty() {
            return Err(invalid("holds no key"));
        }
        let keys = keys
            .iter()
            .map(|bytes| {
                UnboundKey::new(&AES_256_GCM, bytes)
                    .map(|key| Key {
                        id: key_id(bytes),
                        key: LessSafeKey::new(key),
                    })
                    .map_err(|_| invalid("has an unusable key"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            keys,
            rng: SystemRandom::new(),
        })
    }

    /// Reads a key file: one key per line (32 bytes, base64 or hex), blank lines and `#`
    /// comments ignored.
    pub fn load(path: &Path) -> Result<Self, SecretsError> {
        let failed = |message: String| SecretsError::KeyFile {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.push(decode_key(line).ok_or_else(|| {
                failed(format!(
                    "line {} is not a 32-byte key in base64 or hex",
                    n + 1
                ))
            })?);
        }
        Self::from_keys(&keys).map_err(|_| failed("holds no key".into()))
    }

    /// A new random key in the key file format (base64 of 32 bytes).
    pub fn generate_key_line() -> Result<String, SecretsError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SecretsError::Encrypt)?;
        Ok(STANDARD.encode(bytes))
    }

    /// The ids of the keys, the encrypting one first.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.id.clone()).collect()
    }

    /// Encrypts `plain` for the place `context` names (associated data).
    pub fn encrypt(&self, plain: &str, context: &str) -> Result<String, SecretsError> {
        let key = self.keys.first().ok_or(SecretsError::Encrypt)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| SecretsError::Encrypt)?;
        let mut sealed = plain.as_bytes().to_vec();
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| SecretsError::Encrypt)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!(
            "{PREFIX}{}:{}",
            key.id,
            URL_SAFE_NO_PAD.encode(out)
        ))
    }

    /// The key id a stored value was encrypted with (`None`: not an encrypted value).
    pub fn key_id_of(stored: &str) -> Option<&str> {
        stored
            .strip_prefix(PREFIX)?
            .split_once(':')
            .map(|(id, _)| id)
    }

    /// Whether this keyring holds the key of an encrypted value.
    pub fn check(&self, stored: &str) -> Result<(), SecretsError> {
        match Self::key_id_of(stored) {
            None => Err(SecretsError::Malformed),
            Some(id) if self.keys.iter().any(|k| k.id == id) => Ok(()),
            Some(id) => Err(SecretsError::UnknownKey {
                key_id: id.to_owned(),
                known: self.key_ids().join(", "),
            }),
        }
    }

    /// Decrypts a value encrypted for `context`.
    pub fn decrypt(&self, stored: &str, context: &str) -> Result<String, SecretsError> {
        let rest = stored.strip_prefix(PREFIX).ok_or(SecretsError::Malformed)?;
        let (id, data) = rest.split_once(':').ok_or(SecretsError::Malformed)?;
        self.check(stored)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(SecretsError::Decrypt)?;
        let mut data = URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|_| SecretsError::Malformed)?;
        if data.len() < NONCE_LEN {
            return Err(SecretsError::Malformed);
        }
        let mut sealed = data.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&data).map_err(|_| SecretsError::Malformed)?;
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut sealed)
            .map_err(|_| SecretsError::Decrypt)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretsError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_binds_to_its_context() {
        let ring = Keyring::from_keys(&[[7u8; 32]]).expect("keyring");
        let a = ring.encrypt("s3cr3t", "env/org/k").expect("encrypts");
        let b = ring.encrypt("s3cr3t", "env/org/k").expect("encrypts");
        assert_ne!(a, b, "random nonce per value");
        assert!(a.starts_with(PREFIX) && !a.contains("s3cr3t"));
        assert_eq!(ring.decrypt(&a, "env/org/k").expect("decrypts"), "s3cr3t");
        assert_eq!(ring.decrypt(&a, "env/other/k"), Err(SecretsError::Decrypt));
    }

    #[test]
    fn rotation_keeps_old_values_readable_and_a_wrong_key_is_named() {
        let old = Keyring::from_keys(&[[1u8; 32]]).expect("keyring");
        let stored = old.encrypt("v", "c").expect("encrypts");
        let rotated = Keyring::from_keys(&[[2u8; 32], [1u8; 32]]).expect("keyring");
        assert_eq!(rotated.decrypt(&stored, "c").expect("decrypts"), "v");
        let wrong = Keyring::from_keys(&[[3u8; 32]]).expect("keyring");
        assert!(matches!(
            wrong.decrypt(&stored, "c"),
            Err(SecretsError::UnknownKey { .. })
        ));
    }

    #[test]
    fn key_lines_in_base64_or_hex() {
        let line = Keyring::generate_key_line().expect("key");
        assert!(decode_key(&line).is_some());
        assert_eq!(decode_key(&"ab".repeat(32)), Some([0xab; 32]));
        assert!(decode_key("short").is_none());
    }
}
