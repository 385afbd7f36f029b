//! The market's settings: which symbols are followed, the signal thresholds, and SSI
//! FastConnect's credentials and stream (`FEED=ssi`, `marketcast ssi-check`).
//!
//! Each builds the settings type the component defines (`ProcessorConfig`, `AlertConfig`,
//! `SsiSettings`); the components never read these arguments themselves.

use std::time::Duration;

use clap::Args;

use super::values::{boolean, float, http_url, integer, list, minutes, seconds, secret};
use crate::base::time::Timestamp;
use crate::base::Secret;
use crate::market::contracts::futures_symbols;
use crate::market::watchlist::{vn30_or_default, Watchlist};
use crate::market::ProcessorConfig;

/// Which symbols the processor follows.
#[derive(Debug, Clone, Args)]
pub struct MarketArgs {
    /// Follow only this VN30 futures contract (e.g. VN30F2612); empty: the most traded.
    #[arg(long, env = "FUTURES_OVERRIDE", default_value = "")]
    pub futures_override: String,
    /// VN30 constituents, comma-separated; empty: the built-in list (with `FEED=ssi`, the
    /// list SSI's IndexComponents returns, and this one only if that fails).
    #[arg(long, env = "VN30_SYMBOLS", default_value = "")]
    pub vn30_symbols: String,
    /// Extra symbols (or indices) to keep besides VN30, comma-separated.
    #[arg(long, env = "EXTRA_SYMBOLS", default_value = "")]
    pub extra_symbols: String,
    #[command(flatten)]
    pub alerts: AlertArgs,
}

/// Signal thresholds (`/ws/alerts`); the defaults are the original's.
#[derive(Debug, Clone, Args)]
pub struct AlertArgs {
    /// A trade is a volume spike above this many times the window's average volume.
    #[arg(long, env = "ALERT_VOLUME_SPIKE_RATIO", default_value = "3.0", value_parser = float("ALERT_VOLUME_SPIKE_RATIO", 1.0, 1000.0))]
    pub volume_spike_ratio: f64,
    /// The volume-spike averaging window, minutes.
    #[arg(long = "volume-window-minutes", env = "ALERT_VOLUME_WINDOW_MINUTES", default_value = "20", value_parser = minutes("ALERT_VOLUME_WINDOW_MINUTES", 0.1, 360.0))]
    pub volume_window: Duration,
    /// Earlier trades needed in the window before a spike can be called.
    #[arg(long, env = "ALERT_VOLUME_MIN_TRADES", default_value_t = 10, value_parser = integer("ALERT_VOLUME_MIN_TRADES", 1, 10_000))]
    pub volume_min_trades: u64,
    /// Foreign acceleration: the net value's change over the window, as a fraction (0.30: 30 %).
    #[arg(long, env = "ALERT_FOREIGN_CHANGE", default_value = "0.30", value_parser = float("ALERT_FOREIGN_CHANGE", 0.0, 1000.0))]
    pub foreign_change: f64,
    /// Foreign acceleration: the smallest earlier net value (VND, absolute) worth comparing.
    #[arg(long, env = "ALERT_FOREIGN_MIN_NET_VALUE", default_value = "1000000000", value_parser = float("ALERT_FOREIGN_MIN_NET_VALUE", 0.0, 1e15))]
    pub foreign_min_net_value: f64,
    /// The foreign acceleration window, minutes.
    #[arg(long = "foreign-window-minutes", env = "ALERT_FOREIGN_WINDOW_MINUTES", default_value = "5", value_parser = minutes("ALERT_FOREIGN_WINDOW_MINUTES", 0.1, 360.0))]
    pub foreign_window: Duration,
    /// Seconds during which a second alert of the same type and symbol is dropped.
    #[arg(long = "cooldown-seconds", env = "ALERT_COOLDOWN_SECONDS", default_value = "60", value_parser = seconds("ALERT_COOLDOWN_SECONDS", 0.0, 86_400.0))]
    pub cooldown: Duration,
}

impl AlertArgs {
    /// The detector's thresholds.
    pub fn config(&self) -> crate::market::alerts::AlertConfig {
        crate::market::alerts::AlertConfig {
            volume_spike_ratio: self.volume_spike_ratio,
            volume_window_secs: whole_seconds(self.volume_window),
            volume_min_samples: self.volume_min_trades as usize,
            foreign_change: self.foreign_change,
            foreign_min_net: self.foreign_min_net_value,
            foreign_window_secs: whole_seconds(self.foreign_window),
            cooldown_secs: whole_seconds(self.cooldown),
            ..Default::default()
        }
    }
}

/// A duration in whole seconds, rounded (the detector counts in seconds of event time).
fn whole_seconds(d: Duration) -> i64 {
    d.as_secs_f64().round() as i64
}

/// SSI FastConnect Data settings (`FEED=ssi` and `marketcast ssi-check`).
#[derive(Debug, Clone, Args)]
pub struct SsiArgs {
    /// FastConnect Data consumer ID (iBoard, API service management).
    #[arg(
        long,
        env = "SSI_CONSUMER_ID",
        default_value = "",
        hide_env_values = true
    )]
    pub ssi_consumer_id: String,
    /// FastConnect Data consumer secret; never logged.
    #[arg(long, env = "SSI_CONSUMER_SECRET", default_value = "", hide_env_values = true, hide_default_value = true, value_parser = secret)]
    pub ssi_consumer_secret: Secret,
    /// REST and token base URL.
    #[arg(long, env = "SSI_BASE_URL", default_value = "https://fc-data.ssi.com.vn/", value_parser = http_url("SSI_BASE_URL"))]
    pub ssi_base_url: String,
    /// Streaming base URL; the SignalR hub is at `<this>v2.0/signalr`.
    #[arg(long, env = "SSI_STREAM_URL", default_value = "https://fc-datahub.ssi.com.vn/", value_parser = http_url("SSI_STREAM_URL"))]
    pub ssi_stream_url: String,
    /// How channels are subscribed: `calls` (one connection, one SwitchChannels call per
    /// channel), `combined` (one call, channels joined by commas) or `connections` (one
    /// connection per channel).
    #[arg(long, env = "SSI_SUBSCRIBE_MODE", value_enum, default_value_t = crate::feed::ssi::stream::SubscribeMode::Calls)]
    pub ssi_subscribe_mode: crate::feed::ssi::stream::SubscribeMode,
    /// Channels to subscribe, comma-separated (e.g. `X:ALL,R:ALL,MI:ALL`); empty: X-TRADE and
    /// X-QUOTE for the VN30, the extra securities and the futures, R for the stocks, MI for
    /// VN30, VNINDEX and the extra indices.
    #[arg(long, env = "SSI_CHANNELS", default_value = "")]
    pub ssi_channels: String,
    /// Seconds without any frame before the stream counts as dead; 0: the hub's negotiated
    /// KeepAliveTimeout, else 60.
    #[arg(long, env = "SSI_IDLE_TIMEOUT", default_value = "0", value_parser = seconds("SSI_IDLE_TIMEOUT", 0.0, 3600.0))]
    pub ssi_idle_timeout: Duration,
    /// First wait before reconnecting, in seconds (doubles per failure, with jitter).
    #[arg(long, env = "SSI_RECONNECT_MIN", default_value = "2", value_parser = seconds("SSI_RECONNECT_MIN", 0.01, 3600.0))]
    pub ssi_reconnect_min: Duration,
    /// Longest wait between reconnect attempts, in seconds.
    #[arg(long, env = "SSI_RECONNECT_MAX", default_value = "60", value_parser = seconds("SSI_RECONNECT_MAX", 0.01, 86400.0))]
    pub ssi_reconnect_max: Duration,
    /// After a reconnect, take each symbol's next foreign-room message as a new baseline, so
    /// flows missed during the gap do not count as one burst.
    #[arg(long, env = "SSI_RESEED_FOREIGN", default_value = "true", value_parser = boolean("SSI_RESEED_FOREIGN"))]
    pub ssi_reseed_foreign: bool,
}

impl SsiArgs {
    /// Checks that the credentials are there; names the missing setting.
    pub fn require_credentials(&self) -> Result<(), String> {
        if self.ssi_consumer_id.trim().is_empty() {
            return Err("SSI_CONSUMER_ID is not set: FEED=ssi needs FastConnect Data credentials (iBoard > Support > API service management)".into());
        }
        if self.ssi_consumer_secret.is_empty() {
            return Err("SSI_CONSUMER_SECRET is not set: FEED=ssi needs FastConnect Data credentials (iBoard > Support > API service management)".into());
        }
        if self.ssi_reconnect_min > self.ssi_reconnect_max {
            return Err("SSI_RECONNECT_MIN must not be above SSI_RECONNECT_MAX".into());
        }
        Ok(())
    }

    /// The feed's settings.
    pub fn settings(&self) -> crate::feed::ssi::stream::SsiSettings {
        crate::feed::ssi::stream::SsiSettings {
            consumer_id: self.ssi_consumer_id.trim().to_string(),
            consumer_secret: self.ssi_consumer_secret.clone(),
            base_url: self.ssi_base_url.clone(),
            stream_url: self.ssi_stream_url.clone(),
            subscribe_mode: self.ssi_subscribe_mode,
            idle_timeout: (!self.ssi_idle_timeout.is_zero()).then_some(self.ssi_idle_timeout),
            reconnect_min: self.ssi_reconnect_min,
            reconnect_max: self.ssi_reconnect_max,
            reseed_foreign: self.ssi_reseed_foreign,
        }
    }
}

impl MarketArgs {
    /// The VN30 list the settings give (`VN30_SYMBOLS`, else the built-in list).
    pub fn vn30(&self) -> Vec<String> {
        vn30_or_default(&list(&self.vn30_symbols))
    }

    /// The futures contracts to follow at `now`: `FUTURES_OVERRIDE`, else the two nearest
    /// contracts still trading.
    pub fn futures(&self, now: Timestamp) -> Vec<String> {
        futures_symbols(&self.futures_override, now)
    }

    /// The `EXTRA_SYMBOLS` entries, as written (the watchlist and the SSI channels normalise
    /// them each their own way).
    pub fn extra(&self) -> Vec<String> {
        list(&self.extra_symbols)
    }

    /// The processor's set-up for `vn30` and the other market settings.
    pub fn processor_config(&self, vn30: &[String]) -> ProcessorConfig {
        let futures_override =
            Some(self.futures_override.trim().to_ascii_uppercase()).filter(|s| !s.is_empty());
        ProcessorConfig {
            watchlist: Watchlist::new(vn30, &self.extra()),
            futures_override,
            alerts: self.alerts.config(),
        }
    }
}
