//! The HTTP plumbing every step of the stream shares: the request timeout, reading a reply's
//! text or JSON into [`SsiStreamError`]s, and looking into SSI's loose JSON.
//!
//! It sits below the client, the token, the REST call and the session, and imports none of
//! them, so each of those can use it without importing the others. SSI's JSON is loose (keys
//! in any case, `status` as a number or a string, several shapes of the same reply over the
//! years), so replies are read as `serde_json::Value` with case-insensitive lookups rather than
//! typed structs that would break on the next spelling. URLs that carry a connection token are
//! cut at the query before they reach an error.

use std::time::Duration;

use serde_json::Value;

use super::SsiStreamError;

/// Time allowed for one REST call or handshake.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A status that is a number (200) or a string ("Success").
pub(super) fn status_ok(status: Option<&Value>) -> bool {
    match status {
        Some(Value::Number(n)) => n.as_u64() == Some(200),
        Some(Value::String(s)) => s.eq_ignore_ascii_case("success") || s == "200",
        _ => false,
    }
}

pub(super) fn show_status(status: Option<&Value>) -> String {
    match status {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "none".into(),
    }
}

/// A key read case-insensitively from a JSON object.
pub(super) fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

pub(super) fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// A URL without its query (which holds the connection token).
pub(super) fn redact_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

pub(super) fn network(what: &'static str, url: &str, e: &reqwest::Error) -> SsiStreamError {
    // reqwest's messages include the URL already; keep the cause chain for the user.
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    SsiStreamError::Network {
        what,
        url: redact_query(url),
        detail,
    }
}

pub(super) async fn read_text(
    what: &'static str,
    url: &str,
    reply: reqwest::Response,
) -> Result<String, SsiStreamError> {
    let status = reply.status();
    let body = reply.text().await.map_err(|e| network(what, url, &e))?;
    if !status.is_success() {
        return Err(SsiStreamError::Http {
            what,
            url: redact_query(url),
            status: status.as_u16(),
            body: body.chars().take(200).collect(),
        });
    }
    Ok(body)
}

pub(super) async fn read_json(
    what: &'static str,
    url: &str,
    reply: reqwest::Response,
) -> Result<Value, SsiStreamError> {
    let body = read_text(what, url, reply).await?;
    serde_json::from_str(&body).map_err(|e| SsiStreamError::BadReply {
        what,
        detail: format!(
            "not JSON ({e}): {}",
            body.chars().take(120).collect::<String>()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_may_be_a_number_or_a_string() {
        assert!(status_ok(Some(&serde_json::json!(200))));
        assert!(status_ok(Some(&serde_json::json!("Success"))));
        assert!(!status_ok(Some(&serde_json::json!(401))));
        assert!(!status_ok(None));
    }
}
