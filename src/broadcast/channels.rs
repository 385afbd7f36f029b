//! The channels a server publishes (`/ws/market`, `/ws/foreign`, `/ws/index`, `/ws/alerts`,
//! `/ws/board`), one hub each.
//!
//! Each channel has its own hub: its own clients, its own latest message and its own `seq`, so
//! a channel's tick is encoded once for its clients only, and a channel with no clients (and no
//! broker to feed) costs nothing: its loop sees nobody to publish to and builds nothing. The
//! hubs share one phase of shutdown for their client tasks: ending it closes every client of
//! every channel.
//!
//! The names are strings, not market types: what a channel carries is decided where it is
//! created (the composition root, `crate::node`), through a [`super::ticker::SnapshotSource`] for a snapshot channel
//! ([`super::ticker::run`]) or the events an events channel takes
//! ([`super::ticker::run_events`]).

use super::hub::Hub;
use super::settings::HubSettings;
use super::stats::HubTotals;
use crate::base::shutdown::Phase;

/// The hubs of a server's channels, by name; cheap to clone.
#[derive(Clone)]
pub struct Channels {
    list: std::sync::Arc<Vec<(&'static str, Hub)>>,
}

impl Channels {
    /// One hub per name, with `settings_of(name)`, their client tasks all in `clients`; the
    /// first is the primary.
    pub fn new(
        names: &[&'static str],
        clients: &Phase,
        settings_of: impl Fn(&str) -> HubSettings,
    ) -> Channels {
        let list = names
            .iter()
            .map(|name| (*name, Hub::with_phase(settings_of(name), clients.clone())))
            .collect();
        Channels {
            list: std::sync::Arc::new(list),
        }
    }

    /// The hub of a channel.
    pub fn get(&self, name: &str) -> Option<&Hub> {
        self.list.iter().find(|(n, _)| *n == name).map(|(_, h)| h)
    }

    /// The first channel's hub (the server's main channel).
    pub fn primary(&self) -> &Hub {
        &self.list[0].1
    }

    /// Every channel, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Hub)> {
        self.list.iter().map(|(n, h)| (*n, h))
    }

    /// Sends one text message (a feed status) to every client of every channel.
    pub fn announce(&self, text: &[u8]) {
        for (_, hub) in self.iter() {
            if hub.client_count() > 0 {
                hub.announce(text);
            }
        }
    }

    /// Totals over every channel.
    pub fn totals(&self) -> HubTotals {
        let mut sum = HubTotals::default();
        for (_, hub) in self.iter() {
            let t = hub.totals();
            sum.clients += t.clients;
            sum.deflate_clients += t.deflate_clients;
            sum.connections_total += t.connections_total;
            sum.messages_sent += t.messages_sent;
            sum.messages_dropped += t.messages_dropped;
            sum.bytes_sent += t.bytes_sent;
            for (all, one) in sum.closed.iter_mut().zip(t.closed) {
                *all += one;
            }
            sum.heartbeat_timeouts += t.heartbeat_timeouts;
            sum.protocol_closes += t.protocol_closes;
            sum.slow_client_closes += t.slow_client_closes;
            sum.ticks += t.ticks;
        }
        sum
    }
}
