//! What the SSI feed is told: credentials, endpoints, how channels are subscribed, reconnect
//! bounds, and which channels to follow.
//!
//! These types belong to the feed and are built by `config` (from `SSI_*` settings) or by a
//! test directly, so the feed never reads a setting itself. The channel list is decided here,
//! once, for both the server and `ssi-check`: the configured channels, else the channels the
//! processor needs for what it keeps: the VN30, the futures contracts followed and the
//! `EXTRA_SYMBOLS`.
//!
//! A channel is `TYPE:SYM-SYM-...` (reference §2.8). The reference documents no limit on a
//! channel string's length or on its number of symbols, and recommends one string per type
//! for the VN30 over `ALL`; so the default is one string per type, whatever the extras add.
//! Symbols are never repeated in a string (an extra that is already followed is left out).

use std::time::Duration;

use crate::base::Secret;
use crate::market::event::is_futures;
use crate::market::watchlist::{index_id, DEFAULT_INDICES};

/// How the channels are subscribed (reference §2.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SubscribeMode {
    /// One connection, one `SwitchChannels` call per channel, in order.
    Calls,
    /// One connection, one call with every channel joined by commas.
    Combined,
    /// One connection per channel, one call each (arrival order across channels is lost).
    Connections,
}

/// Everything the SSI feed needs to know.
#[derive(Debug, Clone)]
pub struct SsiSettings {
    pub consumer_id: String,
    pub consumer_secret: Secret,
    /// REST and token base, e.g. `https://fc-data.ssi.com.vn/`.
    pub base_url: String,
    /// Stream base; the hub is at `<stream_url>v2.0/signalr`.
    pub stream_url: String,
    pub subscribe_mode: SubscribeMode,
    /// No frame for this long ends a session; `None`: the negotiated value, else 60 s.
    pub idle_timeout: Option<Duration>,
    /// Backoff bounds between reconnect attempts.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Re-seed the foreign tracker's baselines after a reconnect.
    pub reseed_foreign: bool,
}

/// The channels the processor needs for what it keeps: trades and quotes of the VN30 stocks,
/// the `extra` securities and the futures contracts; foreign room of the stocks (futures have
/// none); and the VN30 and VNINDEX indices with the `extra` indices. An `extra` entry is an
/// index when [`index_id`] knows it (subscribed as SSI spells it), a futures contract when it
/// starts with `VN30F`, and a security otherwise (upper-cased, as the watchlist keeps it).
pub fn default_channels(vn30: &[String], futures: &[String], extra: &[String]) -> Vec<String> {
    let mut stocks: Vec<String> = Vec::new();
    let mut contracts: Vec<String> = Vec::new();
    let mut indices: Vec<String> = DEFAULT_INDICES.iter().map(|s| s.to_string()).collect();
    let add = |list: &mut Vec<String>, symbol: String| {
        if !symbol.is_empty() && !list.contains(&symbol) {
            list.push(symbol);
        }
    };
    for symbol in vn30 {
        add(&mut stocks, symbol.trim().to_ascii_uppercase());
    }
    for symbol in futures {
        add(&mut contracts, symbol.trim().to_ascii_uppercase());
    }
    for entry in extra {
        match index_id(entry) {
            Some(id) => add(&mut indices, id.to_string()),
            None => {
                let symbol = entry.trim().to_ascii_uppercase();
                if is_futures(&symbol) {
                    add(&mut contracts, symbol);
                } else {
                    add(&mut stocks, symbol);
                }
            }
        }
    }
    let traded = [stocks.as_slice(), contracts.as_slice()].concat().join("-");
    vec![
        format!("X-TRADE:{traded}"),
        format!("X-QUOTE:{traded}"),
        format!("R:{}", stocks.join("-")),
        format!("MI:{}", indices.join("-")),
    ]
}

/// How channels are grouped into connections, and calls on each.
pub fn plan_connections(channels: &[String], mode: SubscribeMode) -> Vec<Vec<String>> {
    match mode {
        SubscribeMode::Calls => vec![channels.to_vec()],
        SubscribeMode::Combined => vec![vec![channels.join(",")]],
        SubscribeMode::Connections => channels.iter().map(|c| vec![c.clone()]).collect(),
    }
}

/// The channels to subscribe: `configured` (`SSI_CHANNELS`, already split) when it names any,
/// else [`default_channels`] for `vn30`, `futures` and `extra`.
pub fn channels_or_default(
    configured: Vec<String>,
    vn30: &[String],
    futures: &[String],
    extra: &[String],
) -> Vec<String> {
    if configured.is_empty() {
        default_channels(vn30, futures, extra)
    } else {
        configured
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn channels_and_plans() {
        let vn30 = strings(&["ACB", "FPT"]);
        let ch = default_channels(&vn30, &strings(&["VN30F2612", "VN30F2701"]), &[]);
        assert_eq!(
            ch,
            [
                "X-TRADE:ACB-FPT-VN30F2612-VN30F2701",
                "X-QUOTE:ACB-FPT-VN30F2612-VN30F2701",
                "R:ACB-FPT",
                "MI:VN30-VNINDEX"
            ]
        );
        assert_eq!(
            plan_connections(&ch, SubscribeMode::Calls),
            vec![ch.clone()]
        );
        assert_eq!(
            plan_connections(&ch, SubscribeMode::Combined),
            vec![vec![ch.join(",")]]
        );
        assert_eq!(plan_connections(&ch, SubscribeMode::Connections).len(), 4);
    }

    #[test]
    fn extra_symbols_go_to_the_channels_that_fit_them() {
        let vn30 = strings(&["ACB", "FPT"]);
        let futures = strings(&["VN30F2612", "VN30F2701"]);
        // A stock, an index in SSI's spelling and in capitals, a fund certificate, a futures
        // contract, and entries already followed (a VN30 stock, a default index, a contract).
        let extra = strings(&[
            " hpx ",
            "VN100",
            "HNXINDEX",
            "E1VFVN30",
            "VN30F2703",
            "fpt",
            "VNINDEX",
            "VN30F2612",
            "",
        ]);
        assert_eq!(
            default_channels(&vn30, &futures, &extra),
            [
                "X-TRADE:ACB-FPT-HPX-E1VFVN30-VN30F2612-VN30F2701-VN30F2703",
                "X-QUOTE:ACB-FPT-HPX-E1VFVN30-VN30F2612-VN30F2701-VN30F2703",
                "R:ACB-FPT-HPX-E1VFVN30",
                "MI:VN30-VNINDEX-VN100-HNXIndex"
            ]
        );
    }

    #[test]
    fn configured_channels_win() {
        let vn30 = strings(&["ACB"]);
        let configured = strings(&["X:ALL", "MI:ALL"]);
        assert_eq!(
            channels_or_default(configured.clone(), &vn30, &[], &strings(&["HPX"])),
            configured
        );
        assert_eq!(
            channels_or_default(Vec::new(), &vn30, &[], &strings(&["HPX"]))[0],
            "X-TRADE:ACB-HPX"
        );
    }
}
