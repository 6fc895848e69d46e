//! Identifiers. Ids minted at the edge (`evt_…` for accepted events) are random ULIDs; ids the
//! processor gives its output are *derived* from the input, so a record processed twice (after a
//! crash or a rebalance) yields byte-identical ids and downstream consumers can drop the copy.

use sha2::{Digest, Sha256};
use ulid::Ulid;

/// A new `evt_…` id for an accepted inbound event.
pub fn new_event_id() -> String {
    format!("evt_{}", Ulid::generate())
}

/// A ULID whose time part is `millis` and whose random part is a hash of `parts`.
///
/// Equal inputs give equal ids; ids still sort by time like minted ULIDs.
pub fn derived_ulid(millis: i64, parts: &[&str]) -> Ulid {
    let digest = digest_of(parts);
    let mut random = [0u8; 16];
    random[6..].copy_from_slice(&digest[..10]);
    let millis = u64::try_from(millis).unwrap_or(0) & 0xFFFF_FFFF_FFFF;
    Ulid::from_parts(millis, u128::from_be_bytes(random))
}

/// A UUID (version 8, "custom") derived from `parts`, for fields that must be UUIDs, such as
/// `_ack_id`.
pub fn derived_uuid(parts: &[&str]) -> String {
    let d = digest_of(parts);
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0F) | 0x80;
    b[8] = (b[8] & 0x3F) | 0x80;
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[0],
        b[1],
        b[2],
        b[3],
        b[4],
        b[5],
        b[6],
        b[7],
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}

fn digest_of(parts: &[&str]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        // Length-prefix each part so ("ab","c") and ("a","bc") differ.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let a = derived_ulid(1_700_000_000_000, &["int-1", "dedup-1"]);
        assert_eq!(a, derived_ulid(1_700_000_000_000, &["int-1", "dedup-1"]));
        assert_ne!(a, derived_ulid(1_700_000_000_000, &["int-1", "dedup-2"]));
        assert_ne!(derived_ulid(0, &["ab", "c"]), derived_ulid(0, &["a", "bc"]));
        assert_eq!(a.timestamp_ms(), 1_700_000_000_000);
    }

    #[test]
    fn derived_uuid_is_a_version_8_uuid() {
        let id = derived_uuid(&["x"]);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "8");
        assert_eq!(id, derived_uuid(&["x"]));
    }

    #[test]
    fn minted_event_ids_are_prefixed_ulids() {
        let id = new_event_id();
        assert!(id.starts_with("evt_"));
        assert!(Ulid::from_string(&id[4..]).is_ok());
    }
}
