//! Each organisation's Ed25519 signing key: the `v1a,` signature of Standard Webhooks, which a
//! receiver checks with the public key served at
//! `GET /v1/webhooks/.well-known/public-key?orgId=` (no shared secret to leak or rotate on the
//! receiver's side).
//!
//! The deployment key is a PKCS#8 document in a PEM file (`-----BEGIN PRIVATE KEY-----`), as
//! `openssl genpkey -algorithm ed25519` writes it; a Kubernetes secret mounts it into the
//! dispatcher and the API. It is deliberately not in the configuration log, which every role
//! reads. The standalone mode creates one in its data directory on first start. Organisation
//! keys are derived from it ([`SigningKeys`]).

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// The DER prefix of an Ed25519 `SubjectPublicKeyInfo` (RFC 8410): the 32 key bytes follow.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the signing key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the signing key is not a PEM PKCS#8 Ed25519 private key")]
    Invalid,
    #[error("cannot generate a signing key")]
    Generate,
}

/// An organisation's signing key.
pub struct OrgKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for OrgKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrgKey")
            .field(
                "public_key",
                &STANDARD.encode(self.pair.public_key().as_ref()),
            )
            .finish()
    }
}

impl OrgKey {
    /// Reads a key from a PEM file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_pem(&text)
    }

    /// A new key as a PEM document.
    pub fn generate_pem() -> Result<String, KeyError> {
        let document =
            Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError::Generate)?;
        Ok(pem("PRIVATE KEY", document.as_ref()))
    }

    /// Parses a PEM PKCS#8 document (v1 as OpenSSL writes it, or v2).
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let body: String = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("-----"))
            .collect();
        let der = STANDARD.decode(body).map_err(|_| KeyError::Invalid)?;
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|_| KeyError::Invalid)?;
        Ok(Self { pair })
    }

    /// The `v1a,<base64>` signature of a message (same signed content as `v1`).
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut content = Vec::with_capacity(id.len() + body.len() + 24);
        content.extend_from_slice(id.as_bytes());
        content.push(b'.');
        content.extend_from_slice(timestamp.to_string().as_bytes());
        content.push(b'.');
        content.extend_from_slice(body);
        format!("v1a,{}", STANDARD.encode(self.pair.sign(&content).as_ref()))
    }

    /// The public key as a PEM `SubjectPublicKeyInfo` document.
    pub fn public_key_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.pair.public_key().as_ref());
        pem("PUBLIC KEY", &der)
    }
}

/// The start of a PKCS#8 Ed25519 document (v1 or v2: the version byte differs) up to the
/// 32-byte seed: `SEQUENCE { INTEGER v, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET
/// STRING seed } … }`.
const PKCS8_SEED_AT: usize = 16;

/// The seed of a PKCS#8 Ed25519 document.
fn seed_of(der: &[u8]) -> Option<[u8; 32]> {
    let expected_after_length = [0x02, 0x01];
    let algorithm = [
        0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    if der.first() != Some(&0x30)
        || der.get(2..4) != Some(&expected_after_length[..])
        || der.get(5..PKCS8_SEED_AT) != Some(&algorithm[..])
    {
        return None;
    }
    der.get(PKCS8_SEED_AT..PKCS8_SEED_AT + 32)?.try_into().ok()
}

/// The deployment's signing key file, from which each organisation's own Ed25519 key is derived
/// on first use: HKDF-SHA256 of the file's seed with the organisation id as context. Derived
/// rather than stored, so the API (which serves the public key) and every dispatcher (which
/// signs) hold the same key for an organisation without a write racing another, and a key
/// survives as long as the file does. One organisation's key tells nothing about another's.
pub struct SigningKeys {
    seed: [u8; 32],
    derived: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<OrgKey>>>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the seed.
        f.debug_struct("SigningKeys").finish_non_exhaustive()
    }
}

/// The HKDF salt of organisation keys; a new derivation scheme gets a new one.
const ORG_KEY_SALT: &[u8] = b"erp-toolkit organisation signing key v1";

struct SeedLength;

impl ring::hkdf::KeyType for SeedLength {
    fn len(&self) -> usize {
        32
    }
}

impl SigningKeys {
    /// Reads the deployment key from a PEM file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_pem(&text)
    }

    /// Parses a PEM PKCS#8 Ed25519 document (v1 or v2).
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        // Parsed as a key first, so a document ring refuses is refused here too.
        OrgKey::from_pem(text)?;
        let der = STANDARD
            .decode(pem_body(text))
            .map_err(|_| KeyError::Invalid)?;
        let seed = seed_of(&der).ok_or(KeyError::Invalid)?;
        Ok(Self {
            seed,
            derived: Default::default(),
        })
    }

    /// The organisation's key, derived on its first use and kept.
    pub fn for_org(&self, org_id: &str) -> Result<std::sync::Arc<OrgKey>, KeyError> {
        if let Ok(derived) = self.derived.lock()
            && let Some(key) = derived.get(org_id)
        {
            return Ok(std::sync::Arc::clone(key));
        }
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, ORG_KEY_SALT);
        let info = [org_id.as_bytes()];
        let mut seed = [0u8; 32];
        salt.extract(&self.seed)
            .expand(&info, SeedLength)
            .and_then(|okm| okm.fill(&mut seed))
            .map_err(|_| KeyError::Generate)?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| KeyError::Generate)?;
        let key = std::sync::Arc::new(OrgKey { pair });
        if let Ok(mut derived) = self.derived.lock() {
            derived.insert(org_id.to_owned(), std::sync::Arc::clone(&key));
        }
        Ok(key)
    }
}

fn pem_body(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect()
}

fn pem(label: &str, der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for chunk in encoded.as_bytes().chunks(64) {
        text.push_str(&String::from_utf8_lossy(chunk));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

/// Checks the `v1a,` signatures of a `webhook-signature` header against a PEM public key. For
/// receivers and tests.
pub fn verify_v1a(
    public_key_pem: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> bool {
    let body_b64: String = public_key_pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    let Ok(der) = STANDARD.decode(body_b64) else {
        return false;
    };
    let Some(key) = der.strip_prefix(&SPKI_PREFIX[..]) else {
        return false;
    };
    let key = UnparsedPublicKey::new(&ED25519, key);
    let mut content = Vec::with_capacity(id.len() + body.len() + 24);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.to_string().as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    header
        .split_whitespace()
        .filter_map(|c| c.strip_prefix("v1a,"))
        .filter_map(|s| STANDARD.decode(s).ok())
        .any(|signature| key.verify(&content, &signature).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_with_the_published_public_key_only() {
        let key = OrgKey::from_pem(&OrgKey::generate_pem().expect("generates")).expect("parses");
        let other = OrgKey::from_pem(&OrgKey::generate_pem().expect("generates")).expect("parses");
        let signature = key.sign("msg_1", 1_700_000_000, b"{\"a\":1}");
        let header = format!("{signature} v1,abc");
        let public = key.public_key_pem();
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(verify_v1a(
            &public,
            "msg_1",
            1_700_000_000,
            b"{\"a\":1}",
            &header
        ));
        assert!(!verify_v1a(
            &public,
            "msg_1",
            1_700_000_001,
            b"{\"a\":1}",
            &header
        ));
        assert!(!verify_v1a(
            &other.public_key_pem(),
            "msg_1",
            1_700_000_000,
            b"{\"a\":1}",
            &header
        ));
    }

    #[test]
    fn each_organisation_signs_with_its_own_stable_key() {
        let pem = OrgKey::generate_pem().expect("generates");
        let keys = SigningKeys::from_pem(&pem).expect("parses");
        let a = keys.for_org("org-a").expect("derives");
        let b = keys.for_org("org-b").expect("derives");
        assert_ne!(a.public_key_pem(), b.public_key_pem());
        // The same file gives the same keys in another process.
        let again = SigningKeys::from_pem(&pem).expect("parses");
        assert_eq!(
            again.for_org("org-a").expect("derives").public_key_pem(),
            a.public_key_pem()
        );
        let signature = a.sign("msg_1", 7, b"{}");
        assert!(verify_v1a(
            &a.public_key_pem(),
            "msg_1",
            7,
            b"{}",
            &signature
        ));
        assert!(!verify_v1a(
            &b.public_key_pem(),
            "msg_1",
            7,
            b"{}",
            &signature
        ));
        // RFC 8410's v1 document has its seed at the same place.
        let rfc = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        assert!(SigningKeys::from_pem(rfc).is_ok());
    }

    #[test]
    fn reads_an_openssl_pkcs8_v1_key() {
        // `openssl genpkey -algorithm ed25519` (RFC 8410 test key).
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        let key = OrgKey::from_pem(pem).expect("parses");
        // RFC 8410 §10.3: the matching public key.
        assert!(
            key.public_key_pem()
                .contains("MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=")
        );
        assert!(
            OrgKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .is_err()
        );
    }
}
