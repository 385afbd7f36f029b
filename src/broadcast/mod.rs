//! Broadcast: encode each message once, fan the bytes out to every client.
//!
//! This layer moves bytes, not market types, so the same fan-out serves the local processor,
//! a fixed file and the ticks an edge receives from the broker. Data flows one way:
//!
//! * **Making a message.** A channel's loop ([`ticker`]) takes a JSON body: a snapshot from a
//!   [`ticker::SnapshotSource`] every interval or on change, or each event as it happens
//!   ([`ticker::run_events`]). Its [`publisher::Publisher`] numbers it, stamps it with `seq`
//!   and `ts` ([`stamp`]), frames it once ([`frame`]; compressed once on demand, and made a
//!   delta once for the clients that take them, [`delta`]), hands it to the broker on a
//!   producer ([`relay`]) and publishes it to the channel's hub. An edge publishes the ticks it
//!   receives from the broker through the same hub, byte for byte.
//! * **Fanning it out.** The [`hub::Hub`] keeps the latest message and the registry of
//!   clients, and its fan-out offers the shared frame to every client; each client's
//!   [`outbox`] writes it at once or applies the queue policy (drop-oldest, slow-client,
//!   delta or full). What is counted is in [`stats`], the limits in [`settings`]; a server's
//!   hubs, one per channel, are its [`channels`].
//! * **One client.** Who may connect, and how many, is decided once per upgrade
//!   ([`admission`]); the opening handshake is [`handshake`]; each client's task
//!   ([`connection`]) handles what the client sends, its heartbeat, its close, and any frame
//!   its socket could not take at once, over a plain or TLS socket ([`wire`]).
//!
//! It depends only on `crate::base` (time, shutdown phases) beneath it, never on `market`,
//! `config`, `node` or `http`.

pub mod admission;
pub mod channels;
pub mod connection;
pub mod delta;
pub mod frame;
pub mod handshake;
pub mod hub;
pub mod outbox;
pub mod publisher;
pub mod relay;
pub mod settings;
pub mod stamp;
pub mod stats;
pub mod ticker;
pub mod wire;

#[cfg(test)]
mod testing;
