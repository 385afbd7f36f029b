//! `GET /metrics`: the server's figures in the Prometheus (OpenMetrics) text format, encoded by
//! `prometheus-client`.
//!
//! Why it is its own module: an operator's view is read from counters the server keeps anyway
//! (each client's sent, dropped and byte counts, the hubs' close counts, the feed's and the
//! processor's counters), gathered **at scrape time**. Nothing is counted for metrics' sake on
//! the fan-out's hot path: a tick costs every client the same one write it cost before, and
//! the only observations made per tick (encode and tick time, by the broadcast loop) are two
//! histogram updates per channel, none per client.
//!
//! The families (all prefixed `marketcast_`; counters end in `_total`):
//! - per channel (`channel` = `market`, `foreign`, `index`): `clients`, `deflate_clients`,
//!   `connections_opened`, `connections_closed` (by `reason`: `client`, `heartbeat_timeout`,
//!   `protocol`, `slow_client`, `shutdown`; counted when the client has left), `messages_sent`, `messages_dropped`, `bytes_sent`,
//!   `slow_client_closes`, `heartbeat_timeouts`, `ticks`, `snapshot_bytes` (the latest
//!   message's body), `delta_clients`, and the histograms `encode_seconds`, `tick_seconds` and
//!   `delta_seconds`;
//! - `connections_refused` by `reason` (`per_ip`, `full`, `rate`, `rate_total`, `http_per_ip`:
//!   a connection in its HTTP phase past `HTTP_MAX_CONNECTIONS_PER_IP`, `unauthorized`: a
//!   missing or wrong token, on any guarded route);
//! - the feed: `feed_messages`, `feed_events` by `type`, `feed_skipped`, `feed_errors` by
//!   `reason`, `feed_stale`, `feed_connected` (live feeds), `feed_last_message_age_seconds`,
//!   `feed_reconnects`, `feed_upstream_errors`;
//! - the processor: `processor_out_of_order`, `processor_filtered`, `processor_session_resets`;
//! - ingest (when on): `ingest_messages`, `ingest_events`, `ingest_errors`, `ingest_batches`,
//!   `ingest_refused` by `reason` (`unauthorized`, `too_large`, `busy`);
//! - the Redis bridge (`ROLE=producer` or `edge`), labelled by `role`: `redis_connected`,
//!   `redis_ticks` (published, or received and fanned out), `redis_reconnects`; a producer's
//!   `redis_leader`, `redis_takeovers`, `redis_fenced` (refused by the lease or the seq
//!   check), `redis_dropped` (not sent: queue full or Redis away); an edge's `redis_malformed`
//!   (messages that were not a tick), `redis_unsigned`, `redis_forged`, `redis_replayed`,
//!   `redis_stale` and `redis_foreign` (dropped: see `REDIS_SIGNING_KEY` and
//!   `REDIS_ACCEPT_FOREIGN`), `redis_unverified` (signed, taken unchecked by an edge without
//!   the key), `redis_conflated` (snapshots skipped for a newer one while the edge was behind),
//!   `redis_gaps` and `redis_missed` (seq skipped), `redis_resets` (a channel's count started
//!   again), and the histogram `redis_hop_seconds` (producer `ts` to the edge's fan-out).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::bridge::{BrokerStatus, Role};
use crate::broadcast::admission::Admission;
use crate::broadcast::channels::Channels;
use crate::broadcast::stats::{EndReason, HubTotals};
use crate::feed::ingest::Ingest;
use crate::feed::{FeedStats, FeedStatus};
use crate::market::processor::ProcessorCounters;
use crate::market::SharedMarket;

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the metrics are read from.
pub struct Sources<'a> {
    pub channels: &'a Channels,
    pub admission: &'a Admission,
    pub feed: &'a FeedStats,
    /// This node's processor (none on an edge, which reports zeros).
    pub processor: Option<&'a SharedMarket>,
    pub ingest: Option<&'a Arc<Ingest>>,
    pub broker: Option<&'a Arc<BrokerStatus>>,
}

#[derive(Debug)]
struct BrokerFigures {
    role: Role,
    connected: bool,
    leader: bool,
    ticks: u64,
    reconnects: u64,
    takeovers: u64,
    fenced: u64,
    dropped: u64,
    malformed: u64,
    unsigned: u64,
    forged: u64,
    replayed: u64,
    stale: u64,
    unverified: u64,
    foreign: u64,
    conflated: u64,
    gaps: u64,
    missed: u64,
    resets: u64,
    hop_seconds: Histogram,
}

/// One channel's figures at scrape time.
#[derive(Debug)]
struct ChannelFigures {
    name: &'static str,
    totals: HubTotals,
    snapshot_bytes: i64,
    encode_seconds: Histogram,
    tick_seconds: Histogram,
    delta_seconds: Histogram,
}

#[derive(Debug)]
struct IngestFigures {
    status: FeedStatus,
    batches: u64,
    unauthorized: u64,
    too_large: u64,
    busy: u64,
}

/// Every figure, read once per scrape.
#[derive(Debug)]
struct Scrape {
    channels: Vec<ChannelFigures>,
    refused: [(&'static str, u64); 6],
    feed: FeedStatus,
    events_by_type: Vec<(&'static str, u64)>,
    processor: ProcessorCounters,
    ingest: Option<IngestFigures>,
    broker: Option<BrokerFigures>,
}

/// The metrics text (OpenMetrics, ending in `# EOF`).
pub fn render(src: &Sources<'_>) -> String {
    let channels = src
        .channels
        .iter()
        .map(|(name, hub)| {
            let timings = hub.timings();
            ChannelFigures {
                name,
                totals: hub.totals(),
                snapshot_bytes: hub.latest().map_or(0, |t| t.payload_len as i64),
                encode_seconds: timings.encode_seconds.clone(),
                tick_seconds: timings.tick_seconds.clone(),
                delta_seconds: timings.delta_seconds.clone(),
            }
        })
        .collect();
    let refused = src.admission.refused();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let scrape = Scrape {
        channels,
        refused: [
            ("per_ip", load(&refused.per_ip)),
            ("full", load(&refused.full)),
            ("rate", load(&refused.rate)),
            ("rate_total", load(&refused.rate_total)),
            ("http_per_ip", load(&refused.http_per_ip)),
            ("unauthorized", load(&refused.unauthorized)),
        ],
        feed: src.feed.status(),
        events_by_type: src.feed.events_by_type().collect(),
        processor: src
            .processor
            .map(|m| m.with(|p| p.counters()))
            .unwrap_or_default(),
        ingest: src.ingest.map(|i| {
            let c = i.counters();
            IngestFigures {
                status: i.stats().status(),
                batches: load(&c.batches),
                unauthorized: load(&c.rejected_unauthorized),
                too_large: load(&c.rejected_too_large),
                busy: load(&c.rejected_busy),
            }
        }),
        broker: src.broker.map(|b| BrokerFigures {
            role: b.role,
            connected: b.is_connected(),
            leader: b.is_leader(),
            ticks: load(&b.ticks),
            reconnects: load(&b.reconnects),
            takeovers: load(&b.takeovers),
            fenced: load(&b.fenced),
            dropped: load(&b.dropped),
            malformed: load(&b.malformed),
            unsigned: load(&b.unsigned),
            forged: load(&b.forged),
            replayed: load(&b.replayed),
            stale: load(&b.stale),
            unverified: load(&b.unverified),
            foreign: load(&b.foreign),
            conflated: load(&b.conflated),
            gaps: load(&b.gaps),
            missed: load(&b.missed),
            resets: load(&b.resets),
            hop_seconds: b.hop_seconds.clone(),
        }),
    };
    let mut registry = Registry::with_prefix("marketcast");
    registry.register_collector(Box::new(scrape));
    let mut out = String::with_capacity(8 * 1024);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels<'_>, u64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        ConstCounter::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    ConstCounter::new(value).encode(enc.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauges<N: prometheus_client::encoding::EncodeGaugeValue + Copy>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels<'_>, N)],
) -> Result<(), std::fmt::Error> {
    let mut metric = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

impl Scrape {
    /// One labelled row per channel.
    fn per_channel<T>(&self, f: impl Fn(&ChannelFigures) -> T) -> Vec<(Labels<'_>, T)> {
        self.channels
            .iter()
            .map(|c| (vec![("channel", c.name)], f(c)))
            .collect()
    }
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut enc;
        gauges(
            e,
            "clients",
            "WebSocket clients connected.",
            &self.per_channel(|c| c.totals.clients as i64),
        )?;
        gauges(
            e,
            "deflate_clients",
            "Clients receiving compressed frames.",
            &self.per_channel(|c| c.totals.deflate_clients as i64),
        )?;
        gauges(
            e,
            "delta_clients",
            "Clients taking delta messages (?delta=fossil).",
            &self.per_channel(|c| c.totals.delta_clients as i64),
        )?;
        counters(
            e,
            "connections_opened",
            "WebSocket connections accepted.",
            &self.per_channel(|c| c.totals.connections_total),
        )?;
        let mut closed = Vec::new();
        for c in &self.channels {
            for (reason, n) in EndReason::ALL.iter().zip(c.totals.closed) {
                closed.push((vec![("channel", c.name), ("reason", reason.as_str())], n));
            }
        }
        counters(
            e,
            "connections_closed",
            "WebSocket connections ended, by reason (client: closed or lost by the client).",
            &closed,
        )?;
        let refused: Vec<_> = self
            .refused
            .iter()
            .map(|(reason, n)| (vec![("reason", *reason)], *n))
            .collect();
        counters(
            e,
            "connections_refused",
            "Connections and requests refused at the door: WebSocket upgrades by an admission limit (429 or 503), connections by the HTTP limits (429 or 503), and any guarded route for a missing or wrong token (401).",
            &refused,
        )?;
        counters(
            e,
            "messages_sent",
            "Messages written whole to clients.",
            &self.per_channel(|c| c.totals.messages_sent),
        )?;
        counters(
            e,
            "messages_dropped",
            "Messages dropped for clients that fell behind (drop-oldest).",
            &self.per_channel(|c| c.totals.messages_dropped),
        )?;
        counters(
            e,
            "bytes_sent",
            "Bytes written to clients' sockets (before TLS).",
            &self.per_channel(|c| c.totals.bytes_sent),
        )?;
        counters(
            e,
            "slow_client_closes",
            "Clients closed with 4008 for staying behind past WS_SLOW_CLIENT_TIMEOUT.",
            &self.per_channel(|c| c.totals.slow_client_closes),
        )?;
        counters(
            e,
            "heartbeat_timeouts",
            "Clients closed for not answering a Ping within WS_HEARTBEAT_TIMEOUT.",
            &self.per_channel(|c| c.totals.heartbeat_timeouts),
        )?;
        counters(
            e,
            "ticks",
            "Messages published (each encoded once).",
            &self.per_channel(|c| c.totals.ticks),
        )?;
        gauges(
            e,
            "snapshot_bytes",
            "Size of the latest message's body, in bytes.",
            &self.per_channel(|c| c.snapshot_bytes),
        )?;
        for (name, help, pick) in [
            (
                "encode_seconds",
                "Time to build a message: serialise, stamp and frame.",
                (|c: &ChannelFigures| &c.encode_seconds) as fn(&ChannelFigures) -> &Histogram,
            ),
            (
                "tick_seconds",
                "Time of a whole tick: build it and write it to every client.",
                |c: &ChannelFigures| &c.tick_seconds,
            ),
            (
                "delta_seconds",
                "Time to make a tick's delta message, once for every delta client (ticks with delta clients only).",
                |c: &ChannelFigures| &c.delta_seconds,
            ),
        ] {
            let mut metric = e.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for c in &self.channels {
                let labels: Labels<'_> = vec![("channel", c.name)];
                pick(c).encode(metric.encode_family(&labels)?)?;
            }
        }

        let f = &self.feed;
        let kind: Labels<'_> = vec![("feed", f.kind)];
        counters(
            e,
            "feed_messages",
            "Feed messages received.",
            &[(kind.clone(), f.messages)],
        )?;
        let events: Vec<_> = self
            .events_by_type
            .iter()
            .map(|(t, n)| (vec![("feed", f.kind), ("type", *t)], *n))
            .collect();
        counters(
            e,
            "feed_events",
            "Feed messages applied as market events, by type.",
            &events,
        )?;
        counters(
            e,
            "feed_skipped",
            "Well-formed feed messages of types marketcast does not use.",
            &[(kind.clone(), f.skipped)],
        )?;
        let errors: Vec<_> = f
            .malformed_by_reason
            .iter()
            .map(|(reason, n)| (vec![("feed", f.kind), ("reason", *reason)], *n))
            .collect();
        counters(
            e,
            "feed_errors",
            "Feed messages refused, by reason.",
            &errors,
        )?;
        gauges(
            e,
            "feed_stale",
            "1 while no feed message came for FEED_STALE_AFTER.",
            &[(kind.clone(), i64::from(f.stale))],
        )?;
        if let Some(connected) = f.connected {
            gauges(
                e,
                "feed_connected",
                "1 while the live feed's upstream link is up.",
                &[(kind.clone(), i64::from(connected))],
            )?;
        }
        if let Some(age) = f.last_message_age_ms {
            gauges(
                e,
                "feed_last_message_age_seconds",
                "Seconds since the feed's last message.",
                &[(kind.clone(), age as f64 / 1000.0)],
            )?;
        }
        counters(
            e,
            "feed_reconnects",
            "Times the live feed's upstream link came back.",
            &[(kind.clone(), f.reconnects)],
        )?;
        counters(
            e,
            "feed_upstream_errors",
            "Errors the upstream feed reported.",
            &[(kind, f.upstream_errors)],
        )?;

        let p = &self.processor;
        counter(
            e,
            "processor_out_of_order",
            "Trades skipped as older than one already applied.",
            p.out_of_order,
        )?;
        counter(
            e,
            "processor_filtered",
            "Events outside the watchlist.",
            p.filtered,
        )?;
        counter(
            e,
            "processor_session_resets",
            "Daily session resets.",
            p.session_resets,
        )?;

        if let Some(i) = &self.ingest {
            counter(
                e,
                "ingest_messages",
                "Messages pushed to the ingest endpoints.",
                i.status.messages,
            )?;
            counter(
                e,
                "ingest_events",
                "Ingested messages applied as market events.",
                i.status.events,
            )?;
            counter(
                e,
                "ingest_errors",
                "Ingested messages refused.",
                i.status.malformed,
            )?;
            counter(
                e,
                "ingest_batches",
                "Ingest batches (requests and WebSocket messages).",
                i.batches,
            )?;
            counters(
                e,
                "ingest_refused",
                "Ingest requests refused, by reason.",
                &[
                    (vec![("reason", "unauthorized")], i.unauthorized),
                    (vec![("reason", "too_large")], i.too_large),
                    (vec![("reason", "busy")], i.busy),
                ],
            )?;
        }
        if let Some(b) = &self.broker {
            let role: Labels<'_> = vec![("role", b.role.as_str())];
            let row = |v: u64| [(role.clone(), v)];
            gauges(
                e,
                "redis_connected",
                "1 while this node reaches Redis.",
                &[(role.clone(), i64::from(b.connected))],
            )?;
            counters(
                e,
                "redis_ticks",
                "Ticks published to Redis (producer) or received and fanned out (edge).",
                &row(b.ticks),
            )?;
            counters(
                e,
                "redis_reconnects",
                "Times the connection to Redis came back after a failure.",
                &row(b.reconnects),
            )?;
            match b.role {
                Role::Producer => {
                    gauges(
                        e,
                        "redis_leader",
                        "1 while this producer holds the lease and publishes.",
                        &[(role.clone(), i64::from(b.leader))],
                    )?;
                    counters(
                        e,
                        "redis_takeovers",
                        "Times this producer took the lease.",
                        &row(b.takeovers),
                    )?;
                    counters(
                        e,
                        "redis_fenced",
                        "Ticks Redis refused: the lease was another's, or the seq was not above the last.",
                        &row(b.fenced),
                    )?;
                    counters(
                        e,
                        "redis_dropped",
                        "Ticks not sent to Redis (its queue was full, or Redis was away).",
                        &row(b.dropped),
                    )?;
                }
                Role::Standalone => {}
                Role::Edge => {
                    counters(
                        e,
                        "redis_malformed",
                        "Messages on a channel that were not a tick, dropped.",
                        &row(b.malformed),
                    )?;
                    counters(
                        e,
                        "redis_unsigned",
                        "Messages without a signature while REDIS_SIGNING_KEY is set, dropped.",
                        &row(b.unsigned),
                    )?;
                    counters(
                        e,
                        "redis_forged",
                        "Envelopes and state documents whose signature is not REDIS_SIGNING_KEY's, dropped.",
                        &row(b.forged),
                    )?;
                    counters(
                        e,
                        "redis_replayed",
                        "Rightly signed ticks and state documents older than what the edge already took (put back in Redis), dropped.",
                        &row(b.replayed),
                    )?;
                    counters(
                        e,
                        "redis_stale",
                        "Rightly signed ticks and state documents more than 5 minutes older than the edge's clock, dropped.",
                        &row(b.stale),
                    )?;
                    counters(
                        e,
                        "redis_unverified",
                        "Signed ticks and state documents taken unchecked (the producers sign; this edge has no REDIS_SIGNING_KEY).",
                        &row(b.unverified),
                    )?;
                    counters(
                        e,
                        "redis_foreign",
                        "JSON bodies from a publisher other than a producer, dropped (REDIS_ACCEPT_FOREIGN is off).",
                        &row(b.foreign),
                    )?;
                    counters(
                        e,
                        "redis_conflated",
                        "Snapshots not sent because a newer one of the channel was already waiting (the edge was behind).",
                        &row(b.conflated),
                    )?;
                    counters(
                        e,
                        "redis_gaps",
                        "Times a seq was skipped on a channel (a lost or unpublished tick).",
                        &row(b.gaps),
                    )?;
                    counters(
                        e,
                        "redis_missed",
                        "Ticks skipped in those gaps.",
                        &row(b.missed),
                    )?;
                    counters(
                        e,
                        "redis_resets",
                        "Times a channel's seq count started again (producers restarted on an empty Redis; without a key, a seq published out of the producer's count).",
                        &row(b.resets),
                    )?;
                    let mut metric = e.encode_descriptor(
                        "redis_hop_seconds",
                        "Producer ts to this edge handing the tick to its fan-out.",
                        None,
                        MetricType::Histogram,
                    )?;
                    b.hop_seconds.encode(metric.encode_family(&role)?)?;
                }
            }
        }
        Ok(())
    }
}
