//! The live SSI FastConnect feed (`FEED=ssi`): access token, VN30 constituents, the SignalR
//! session, and reconnects. Everything here follows `shared/reference/ssi-fastconnect-streaming.md`.
//!
//! **Token.** `POST <SSI_BASE_URL>api/v2/Market/AccessToken` with the consumer id and secret.
//! SSI answers refusals with HTTP 200 and a `status` in the body, so the body is what counts. The
//! JWT's `exp` says when it expires; the token is renewed in the background a margin before that
//! (an hour for SSI's 8 h tokens, a quarter of the lifetime for short ones), so a reconnect always
//! has a valid token at hand, and fetched again at once when the hub refuses it.
//!
//! **Session.** Negotiate, connect the WebSocket (the bearer on both), wait for the init frame,
//! call `start` (failure tolerated: SSI's Python client never calls it), then `SwitchChannels`.
//! How several channels are subscribed is an open question about SSI's server (reference §2.8),
//! so it is a setting ([`SubscribeMode`]): one call per channel on one connection (the default:
//! it keeps trades and quotes in arrival order, which trade classification relies on, and two
//! production clients use it), one comma-joined call, or one connection per channel. The
//! server's answer to each call is logged.
//!
//! **Reading.** Each `Broadcast` argument is SSI's envelope as a JSON string; it is decoded once
//! by the SignalR layer and once more (its `Content`) by the SSI parser. `Error` calls are logged
//! with their text and counted. A frame that cannot be read is counted and skipped. No frame at
//! all for the idle timeout (the negotiated `KeepAliveTimeout`, else 60 s) ends the session.
//!
//! **Reconnects.** Any end of a session (drop, idle, `"T":1`, refusal) is followed by a full
//! restart with exponential backoff and jitter; the channels stay the same. The link's state
//! goes to [`crate::feed::FeedStats`], which the server turns into status messages for
//! clients. After a reconnect the foreign tracker re-seeds its baselines (unless turned off),
//! so the flows missed during the gap do not count as one burst.
//!
//! Secrets never reach a log line: the consumer secret is a [`crate::base::Secret`], and the
//! bearer token is only ever put in an `Authorization` header.
//!
//! The stream is laid out by step: [`settings`] (what the feed is told, and the channel list),
//! [`error`] (what went wrong and what to do), `http` (the shared HTTP plumbing), `token` (the
//! token as a value), `client` (the handle, [`SsiClient`]), `auth` (fetching and renewing the
//! token), `rest` (the VN30 list), [`session`] (one SignalR connection), and [`supervisor`] (the
//! running feed and its reconnects). Each step can be read, and tested, without the ones after
//! it: imports among these files run one way, in that order.

mod auth;
mod client;
pub mod error;
mod http;
mod rest;
pub mod session;
pub mod settings;
pub mod supervisor;
mod token;

pub use client::SsiClient;
pub use error::SsiStreamError;
pub use rest::parse_index_components;
pub use session::{Session, SessionEvent, HUB, HUB_PATH};
pub use settings::{
    channels_or_default, default_channels, plan_connections, SsiSettings, SubscribeMode,
};
pub use supervisor::{run, SsiFeed};
pub use token::jwt_expiry;
