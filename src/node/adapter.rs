//! The adapter from the market's state to the channels' bytes.
//!
//! The processor is a plain synchronous value behind a lock ([`SharedMarket`]); the broadcast
//! layer asks a [`SnapshotSource`] for bytes and knows no market types. This adapter takes what
//! a channel carries under the lock (a snapshot, the foreign summary, the indices) and
//! serialises it outside, so the feed is held up only for the copy. The board is built the same
//! way: its rows copied under the lock, its message built and serialised outside.

use bytes::Bytes;

use crate::base::time::Timestamp;
use crate::broadcast::ticker::SnapshotSource;
use crate::market::board::Board;
use crate::market::snapshot::ForeignSummary;
use crate::market::SharedMarket;

/// What a channel carries from the processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The trader's board with this many book levels a side (`/ws/board`).
    Board { depth: usize },
    /// The whole `MarketSnapshot` (`/ws/market`).
    Snapshot,
    /// The `ForeignSummary` (`/ws/foreign`).
    Foreign,
    /// Every index's `IndexData`, by index id (`/ws/index`; the compact JSON of every other
    /// payload, not the original's Python-encoder text).
    Indices,
}

impl View {
    /// The view a channel of this name carries (`/ws/market`'s for any other name);
    /// `board_depth`: the board's levels a side.
    pub fn of(channel: &str, board_depth: usize) -> View {
        match channel {
            "foreign" => View::Foreign,
            "index" => View::Indices,
            super::ticks::BOARD => View::Board { depth: board_depth },
            _ => View::Snapshot,
        }
    }
}

/// The processor as a snapshot source: take the view under the lock, serialise outside it.
pub struct ProcessorSource(pub SharedMarket, pub View);

impl SnapshotSource for ProcessorSource {
    fn snapshot_json(&self, now: Timestamp) -> Bytes {
        enum Taken {
            Snapshot(Box<crate::market::snapshot::MarketSnapshot>),
            Foreign(ForeignSummary),
            Indices(indexmap::IndexMap<String, crate::market::snapshot::IndexData>),
            Board(Box<Board>, usize),
        }
        let taken = self.0.with(|p| {
            p.advance_to(now);
            match self.1 {
                View::Snapshot => Taken::Snapshot(Box::new(p.snapshot())),
                View::Foreign => Taken::Foreign(p.foreign_summary()),
                View::Indices => Taken::Indices(p.indices()),
                // A copy of the rows under the lock; the message is built outside it.
                View::Board { depth } => Taken::Board(Box::new(p.board().clone()), depth),
            }
        });
        let json = match taken {
            Taken::Snapshot(s) => s.to_json_vec(),
            Taken::Board(b, depth) => b.message(depth, now).to_json_vec(),
            // serde_json fails only on non-string map keys or a failing writer: neither here.
            Taken::Foreign(f) => serde_json::to_vec(&f).unwrap_or_default(),
            Taken::Indices(i) => serde_json::to_vec(&i).unwrap_or_default(),
        };
        Bytes::from(json)
    }
}
