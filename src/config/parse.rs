//! The checks and conversions of single option values, shared by the flags,
//! their variables and the `--config` file.

use crate::broker::destination::MAX_NODE_ID_LEN;

pub(super) fn as_usize(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

pub(super) fn parse_ws_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
        return Err("must be a URL path starting with '/', without query or fragment".to_owned());
    }
    match path.trim_end_matches('/') {
        "" => Err("'/' is where the web demo is served; choose a path such as /ws".to_owned()),
        trimmed => Ok(trimmed.to_owned()),
    }
}

/// One pattern of `--history-topics`: a `/topic/` destination, `*` for a
/// word and `#` or `**` for any number of them.
pub(super) fn parse_history_topic(pattern: &str) -> Result<String, String> {
    let pattern = pattern.trim();
    crate::history::HistoryTopics::parse(&[pattern.to_owned()])?;
    Ok(pattern.to_owned())
}

/// The URLs of a list flag, trimmed, without empty ones.
pub(super) fn listed(urls: Vec<String>) -> Vec<String> {
    urls.into_iter()
        .map(|url| url.trim().to_owned())
        .filter(|url| !url.is_empty())
        .collect()
}

/// Braces would give the keys a hash tag of the prefix's, and every user's
/// keys one Redis Cluster slot.
pub(super) fn parse_redis_prefix(prefix: &str) -> Result<String, String> {
    if prefix.contains(['{', '}']) {
        Err("must not contain '{' or '}' (Redis Cluster hash tags)".to_owned())
    } else {
        Ok(prefix.to_owned())
    }
}

/// Node ids appear in Redis keys, AMQP queue names and session keys, so
/// they are kept to characters that are safe in all three.
pub(super) fn parse_node_id(id: &str) -> Result<String, String> {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !id.is_empty() && id.len() <= MAX_NODE_ID_LEN && id.chars().all(safe) {
        Ok(id.to_owned())
    } else {
        Err("must be 1 to 64 characters of A-Z, a-z, 0-9, '-', '_' or '.'".to_owned())
    }
}
