//! marketcast: real-time VN30 market data over WebSocket.
//!
//! Data flows one way, and each layer knows only the one below it:
//!
//! ```text
//! feed  ->  market  ->  broadcast  ->  clients
//! (SSI-shaped messages)  (session state, snapshot)  (encode once, fan out bytes)  (one task each)
//! ```
//!
//! * [`feed`] turns the outside world into processor events, all through the one SSI parser:
//!   the built-in simulator, a replay file, the live SSI FastConnect stream, and the ingest
//!   endpoints for feeds that run elsewhere (`FEED=static` serves a fixed snapshot and runs no
//!   feed).
//! * [`market`] is pure domain logic: the processor and the snapshot types that define the
//!   wire format. No I/O, no clock of its own.
//! * [`broadcast`] moves bytes, not market types: each tick's snapshot is serialised, stamped
//!   and framed once, and the same frame (plain or compressed) goes to every client.
//! * [`bridge`] carries the ticks' bytes between nodes through Redis; [`history`] keeps the
//!   market's records in a database; [`checkpoint`] keeps the session's state on disk across
//!   restarts; [`tls`] terminates TLS when a certificate is configured.
//! * [`base`] holds the small values every layer shares (time, secrets, backoff, shutdown
//!   phases), knowing none of them.
//! * [`config`], [`http`] and [`node`] sit at the edge: settings, routes, and the composition
//!   root that wires the parts for the node's role and stops them in order.
//!
//! `ARCHITECTURE.md` at the repository's root is the map: every module, the arrows between
//! them, and the rules that keep them one way.

pub mod assets;
pub mod base;
pub mod bridge;
pub mod broadcast;
pub mod checkpoint;
pub mod config;
pub mod feed;
pub mod history;
pub mod http;
pub mod market;
pub mod metrics;
pub mod node;
pub mod query;
pub mod tls;
pub mod watch;
