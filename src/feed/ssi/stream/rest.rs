//! The one REST call besides the token: the VN30 constituents (`IndexComponents`), and reading
//! its reply in every shape SSI has used.
//!
//! SSI's JSON is loose (keys in any case, `status` as a number or a string, several shapes of
//! the same reply over the years), so the reply is read as `serde_json::Value` with
//! case-insensitive lookups rather than typed structs that would break on the next spelling.

use serde_json::Value;

use super::client::SsiClient;
use super::http::{get_ci, network, read_json, show_status};
use super::SsiStreamError;

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

impl SsiClient {
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
}
