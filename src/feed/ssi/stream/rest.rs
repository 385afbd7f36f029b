//! The handle that talks to SSI ([`SsiClient`]), its HTTP plumbing, and the one REST call
//! besides the token: the VN30 constituents (`IndexComponents`).
//!
//! SSI's JSON is loose (keys in any case, `status` as a number or a string, several shapes of
//! the same reply over the years), so replies are read as `serde_json::Value` with
//! case-insensitive lookups rather than typed structs that would break on the next spelling.
//! URLs that carry a connection token are cut at the query before they reach an error.

use std::time::Duration;

use serde_json::Value;

use super::auth::Token;
use super::session::HUB_PATH;
use super::{SsiSettings, SsiStreamError};

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

/// The VN30 symbols in an `IndexComponents` reply, in any of the shapes SSI has used
/// (`data[0].IndexComponent[*].StockSymbol`, the 2020 `dataList`/`indexcomponentList`, or flat).
pub fn parse_index_components(body: &Value) -> Vec<String> {
    let rows = get_ci(body, "data")
        .or_else(|| get_ci(body, "dataList"))
        .and_then(Value::as_array);
    let mut out = Vec::new();
    for row in rows.into_iter().flatten() {
        let members = get_ci(row, "IndexComponent")
            .or_else(|| get_ci(row, "indexcomponentList"))
            .and_then(Value::as_array);
        match members {
            Some(members) => out.extend(
                members
                    .iter()
                    .filter_map(|m| get_ci(m, "StockSymbol").and_then(Value::as_str)),
            ),
            None => out.extend(get_ci(row, "StockSymbol").and_then(Value::as_str)),
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.into_iter()
        .map(|s| s.trim().to_ascii_uppercase())
        .filter(|s| !s.is_empty() && seen.insert(s.clone()))
        .collect()
}

/// Talks to SSI: tokens, REST, stream sessions. Cheap to share behind an `Arc`.
pub struct SsiClient {
    pub(super) http: reqwest::Client,
    pub(super) settings: SsiSettings,
    pub(super) token: tokio::sync::Mutex<Option<Token>>,
}

impl SsiClient {
    /// A client for `settings` (no request is made yet).
    pub fn new(settings: SsiSettings) -> Result<SsiClient, SsiStreamError> {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("marketcast/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SsiStreamError::Network {
                what: "HTTP client",
                url: settings.base_url.clone(),
                detail: e.to_string(),
            })?;
        Ok(SsiClient {
            http,
            settings,
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &SsiSettings {
        &self.settings
    }

    pub(super) fn rest_url(&self, path: &str) -> String {
        join_url(&self.settings.base_url, path)
    }

    /// The hub URL, `<SSI_STREAM_URL>v2.0/signalr`.
    pub fn hub_url(&self) -> String {
        join_url(&self.settings.stream_url, HUB_PATH)
    }

    /// The VN30 constituents from `IndexComponents`.
    pub async fn vn30_components(&self) -> Result<Vec<String>, SsiStreamError> {
        const WHAT: &str = "VN30 constituents";
        let token = self.token().await?;
        let url = self.rest_url("api/v2/Market/IndexComponents");
        let reply = self
            .http
            .get(&url)
            .query(&[
                ("indexCode", "VN30"),
                ("pageIndex", "1"),
                ("pageSize", "100"),
            ])
            .bearer_auth(&token)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| network(WHAT, &url, &e))?;
        if matches!(reply.status().as_u16(), 401 | 403) {
            self.forget_token().await;
            return Err(SsiStreamError::TokenRefused {
                what: WHAT,
                status: reply.status().as_u16(),
            });
        }
        let v = read_json(WHAT, &url, reply).await?;
        let symbols = parse_index_components(&v);
        if symbols.is_empty() {
            return Err(SsiStreamError::BadReply {
                what: WHAT,
                detail: format!(
                    "no symbols in the reply (status {}, message {:?})",
                    show_status(get_ci(&v, "status")),
                    get_ci(&v, "message").and_then(Value::as_str).unwrap_or("")
                ),
            });
        }
        Ok(symbols)
    }
}

fn install_crypto_provider() {
    // reqwest and tungstenite both build their TLS config from the process-wide provider; an
    // `Err` means one is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn join_url(base: &str, path: &str) -> String {
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
    fn index_components_in_every_known_shape() {
        let current: Value = serde_json::from_str(r#"{"data":[{"IndexCode":"VN30","IndexComponent":[{"Isin":"ACB","StockSymbol":"ACB"},{"Isin":"BCM","StockSymbol":"bcm"}]}],"message":"Success","status":"Success","totalRecord":1}"#).unwrap();
        assert_eq!(parse_index_components(&current), ["ACB", "BCM"]);
        let old: Value = serde_json::from_str(r#"{"dataList":[{"indexcode":"VN30","indexcomponentList":[{"isin":"FPT","stocksymbol":"FPT"}]}]}"#).unwrap();
        assert_eq!(parse_index_components(&old), ["FPT"]);
        let flat: Value =
            serde_json::from_str(r#"{"data":[{"StockSymbol":"VNM"},{"StockSymbol":"VNM"}]}"#)
                .unwrap();
        assert_eq!(parse_index_components(&flat), ["VNM"]);
        assert!(parse_index_components(&serde_json::json!({"data": null})).is_empty());
    }

    #[test]
    fn status_may_be_a_number_or_a_string() {
        assert!(status_ok(Some(&serde_json::json!(200))));
        assert!(status_ok(Some(&serde_json::json!("Success"))));
        assert!(!status_ok(Some(&serde_json::json!(401))));
        assert!(!status_ok(None));
    }
}
