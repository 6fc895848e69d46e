//! Position markers on the processor's changelog (`erp.processor.state`): where the processor
//! resumes each input partition. The processor writes a marker after every committed batch;
//! a consumer-group reset of the control plane writes a *reset* marker (the processor must be
//! stopped), which a restore applies as it stands instead of keeping the furthest position.
//!
//! Both share one key per input topic and changelog partition, so compaction keeps only the
//! newest, and a restore that reads both in log order ends where the newest one says.

use serde::{Deserialize, Serialize};

/// Key prefix of position markers (a legacy per-key dedup record never starts with a NUL byte).
pub const POSITION_PREFIX: &[u8] = b"\0position\0";

/// The value of a position marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionMarker {
    /// The next input offset to process.
    pub next_offset: i64,
    /// Set by a group reset: the position replaces the stored one, even one further ahead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset: bool,
}

/// The key of the marker of `topic` (the changelog partition is the input partition's number).
pub fn position_key(topic: &str) -> Vec<u8> {
    let mut key = POSITION_PREFIX.to_vec();
    key.extend_from_slice(topic.as_bytes());
    key
}

/// The input topic a changelog key is the marker of, if it is one.
pub fn marker_topic(key: &[u8]) -> Option<String> {
    key.strip_prefix(POSITION_PREFIX)
        .map(|topic| String::from_utf8_lossy(topic).into_owned())
}

/// Where a partition resumes after applying `markers` (in log order) to `stored`: an ordinary
/// marker never moves a position back (a lagging one is from a batch already superseded), a
/// reset marker sets it.
pub fn fold_positions(
    stored: Option<i64>,
    markers: impl IntoIterator<Item = PositionMarker>,
) -> Option<i64> {
    markers.into_iter().fold(stored, |at, marker| {
        if marker.reset {
            Some(marker.next_offset)
        } else {
            Some(at.map_or(marker.next_offset, |at| at.max(marker.next_offset)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(next_offset: i64) -> PositionMarker {
        PositionMarker {
            next_offset,
            reset: false,
        }
    }

    #[test]
    fn the_furthest_ordinary_marker_wins_and_a_reset_replaces() {
        assert_eq!(fold_positions(Some(10), [marker(7), marker(12)]), Some(12));
        let reset = PositionMarker {
            next_offset: 3,
            reset: true,
        };
        assert_eq!(fold_positions(Some(10), [marker(12), reset]), Some(3));
        // The processor's markers after a reset count again.
        assert_eq!(fold_positions(Some(10), [reset, marker(5)]), Some(5));
        assert_eq!(fold_positions(None, []), None);
    }

    #[test]
    fn markers_written_before_resets_existed_still_read() {
        let old: PositionMarker = serde_json::from_str(r#"{"next_offset":77}"#).expect("reads");
        assert_eq!(old, marker(77));
        assert_eq!(
            serde_json::to_string(&marker(77)).expect("writes"),
            r#"{"next_offset":77}"#
        );
        assert_eq!(
            marker_topic(&position_key("erp.inbound.events")).as_deref(),
            Some("erp.inbound.events")
        );
    }
}
