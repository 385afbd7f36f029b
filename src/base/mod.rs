//! Small values every layer shares, knowing none of them: the exchange's clock and time stamps,
//! settings that must never be printed, the reconnect backoff, the phases of shutdown, how
//! client addresses are grouped for per-address limits, and the backlog a feed that can wait
//! waits on.
//!
//! It exists so that the layers above (`market`, `broadcast`, `feed`, `bridge`, `history`) can
//! agree on these types without importing each other or the edges (`config`, `node`,
//! `http`): an arrow into `base` never runs against the flow. Nothing here does I/O of its own.

pub mod addr;
pub mod backlog;
pub mod backoff;
pub mod secret;
pub mod shutdown;
pub mod time;

pub use backoff::Backoff;
pub use secret::{redact_url, Secret};
pub use shutdown::Phase;
