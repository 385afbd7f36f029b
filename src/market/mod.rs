//! Market data: the session's state and the snapshot it produces.
//!
//! Pure domain logic: no I/O, no async, no clock of its own (time is passed in). Its types
//! define the wire format. The feed layer turns the outside world into [`event::MarketEvent`]s;
//! the [`processor::MarketProcessor`] applies them and answers
//! [`processor::MarketProcessor::snapshot`].

pub mod alerts;
pub mod board;
pub mod board_message;
pub mod classifier;
pub mod contracts;
pub mod derivatives;
pub mod event;
pub mod foreign;
pub mod history;
pub mod index;
pub mod phase;
pub mod processor;
pub mod quotes;
pub mod route_state;
pub mod session;
pub mod shared;
pub mod snapshot;
pub mod watchlist;

pub use event::MarketEvent;
pub use processor::{Applied, MarketProcessor, ProcessorConfig};
pub use shared::SharedMarket;
pub use snapshot::MarketSnapshot;
pub use watchlist::Watchlist;
