//! Broadcast: encode each snapshot once, fan the bytes out to every client.
//!
//! This layer moves bytes, not market types: the tick loop takes a JSON body from a
//! [`ticker::SnapshotSource`] (the local processor, a fixed file), stamps it
//! with `seq` and `ts`, frames it once ([`frame`]), and publishes it through the [`hub::Hub`],
//! whose fan-out writes the shared frame to every socket; each client's task ([`connection`])
//! handles what the client sends, its heartbeat, and any frame its socket could not take at once.
//! Who may connect, and how many, is decided once per upgrade ([`admission`]). A producer also
//! hands each tick to the broker ([`relay`]); an edge publishes the ticks it receives from it
//! through the same hub, byte for byte.

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
