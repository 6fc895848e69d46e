//! The one redaction helper behind every recording point of a delivery (spans, dead letters,
//! error messages): the secret values an endpoint's request carried are replaced by
//! `[redacted]` in whatever is recorded about it.
//!
//! Receivers and token endpoints may echo what we sent them (a debugging endpoint answers 500
//! with our headers in the body; a token endpoint repeats the form it was given), and errors may
//! name what was sent. Masking by field cannot catch that: the values themselves are searched
//! for, in the forms they travel in (as is, form/percent-encoded, JSON-escaped; a Basic header's
//! base64 credentials are added by whoever builds that header).

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// What a secret value is replaced by.
pub const REDACTED: &str = "[redacted]";

/// A truncated excerpt ending in at least this many characters of a secret loses that tail:
/// shorter tails are too likely to be ordinary text to be worth the mangling.
const MIN_TAIL: usize = 3;

/// The secret values of one delivery (or of one endpoint), in every form they are searched for.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    /// Longest first, so a value containing another is replaced whole.
    needles: Vec<String>,
}

impl Redactor {
    /// A redactor that knows no secret yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a secret value and its encoded forms. Empty values are ignored.
    pub fn add(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let json = serde_json::to_string(secret).unwrap_or_default();
        let json = json
            .strip_prefix('"')
            .and_then(|j| j.strip_suffix('"'))
            .unwrap_or(secret)
            .to_owned();
        // `+` for a space is the form encoding; the percent encoding of URLs uses `%20`.
        let percent = form.replace('+', "%20");
        // A value used as a host name comes back lowercased in resolver and connect errors.
        let lower = secret.to_lowercase();
        for needle in [secret.to_owned(), form, percent, json, lower] {
            self.insert(needle);
        }
    }

    /// Adds the credentials of an HTTP Basic header value (`Basic <base64>`): the header as
    /// sent, its base64 part, and the password in clear.
    pub fn add_basic(&mut self, header: &str) {
        let Some(encoded) = header.strip_prefix("Basic ") else {
            self.add(header);
            return;
        };
        self.add(header);
        self.add(encoded);
        if let Ok(decoded) = STANDARD.decode(encoded)
            && let Ok(pair) = String::from_utf8(decoded)
            && let Some((_, password)) = pair.split_once(':')
        {
            self.add(password);
        }
    }

    /// Adds every secret of `other`.
    pub fn extend(&mut self, other: &Redactor) {
        for needle in &other.needles {
            self.insert(needle.clone());
        }
    }

    fn insert(&mut self, needle: String) {
        if needle.is_empty() || self.needles.contains(&needle) {
            return;
        }
        let at = self
            .needles
            .iter()
            .position(|n| n.len() < needle.len())
            .unwrap_or(self.needles.len());
        self.needles.insert(at, needle);
    }

    /// Whether no secret is known (redaction is then the identity).
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `text` with every known secret replaced by [`REDACTED`].
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = Cow::Owned(out.replace(needle.as_str(), REDACTED));
            }
        }
        out
    }

    /// Like [`Redactor::redact`] for an excerpt cut off at a size cap: a secret the cut split
    /// leaves its start at the end, which is redacted too.
    pub fn redact_excerpt(&self, text: &str, truncated: bool) -> String {
        let mut out = self.redact(text).into_owned();
        if !truncated {
            return out;
        }
        let tail = self
            .needles
            .iter()
            .filter_map(|needle| {
                // The longest proper prefix of the needle the text ends with.
                let mut ends: Vec<usize> = needle.char_indices().map(|(i, _)| i).skip(1).collect();
                ends.reverse();
                ends.into_iter()
                    .find(|&end| end >= MIN_TAIL.min(needle.len()) && out.ends_with(&needle[..end]))
            })
            .max();
        if let Some(len) = tail {
            out.truncate(out.len() - len);
            out.push_str(REDACTED);
        }
        out
    }

    /// Redacts every string in a JSON value (object keys included), in place.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(text) => {
                if let Cow::Owned(clean) = self.redact(text) {
                    *text = clean;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            Value::Object(map) => {
                let keys: Vec<String> = map.keys().cloned().collect();
                for key in keys {
                    let Some(mut inner) = map.remove(&key) else {
                        continue;
                    };
                    self.redact_json(&mut inner);
                    map.insert(self.redact(&key).into_owned(), inner);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_values_in_every_form_they_travel_in() {
        let mut redactor = Redactor::new();
        redactor.add("s3 cr&t\"x");
        let text = r#"raw s3 cr&t"x form s3+cr%26t%22x url s3%20cr%26t%22x json "s3 cr&t\"x""#;
        let clean = redactor.redact(text);
        assert!(!clean.contains("s3"), "{clean}");
        assert_eq!(clean.matches(REDACTED).count(), 4, "{clean}");
        assert_eq!(Redactor::new().redact("as is"), "as is");
    }

    #[test]
    fn basic_credentials_are_redacted_encoded_and_in_clear() {
        let mut redactor = Redactor::new();
        let header = format!("Basic {}", STANDARD.encode("erp:pa55word"));
        redactor.add_basic(&header);
        let echoed = format!(
            "authorization: {header}; base64 {}; clear pa55word",
            &header[6..]
        );
        let clean = redactor.redact(&echoed);
        assert!(
            !clean.contains("pa55word") && !clean.contains(&header[6..]),
            "{clean}"
        );
    }

    #[test]
    fn a_secret_cut_by_the_cap_loses_its_start_too() {
        let mut redactor = Redactor::new();
        redactor.add("topsecretvalue");
        assert_eq!(
            redactor.redact_excerpt("echo: topsec", true),
            format!("echo: {REDACTED}")
        );
        assert_eq!(
            redactor.redact_excerpt("echo: topsec", false),
            "echo: topsec"
        );
        assert_eq!(redactor.redact_excerpt("echo: to", true), "echo: to");
    }

    #[test]
    fn json_strings_and_keys_are_redacted() {
        let mut redactor = Redactor::new();
        redactor.add("k3y");
        let mut value = serde_json::json!({"a": ["x k3y"], "k3y": 1, "n": 2});
        redactor.redact_json(&mut value);
        assert_eq!(
            value,
            serde_json::json!({"a": ["x [redacted]"], "[redacted]": 1, "n": 2})
        );
    }
}
