//! Reading an HTTP answer from a receiver or a token endpoint without trusting its size.

/// The start of a response body, read no further than `cap` bytes: a huge or endless body
/// costs neither memory nor time beyond that.
pub async fn read_capped(mut response: reqwest::Response, cap: usize) -> (String, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    // A body that breaks off is still an answer: the status decides.
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = cap.saturating_sub(kept.len());
        if chunk.len() > room {
            kept.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        kept.extend_from_slice(&chunk);
    }
    (String::from_utf8_lossy(&kept).into_owned(), truncated)
}
