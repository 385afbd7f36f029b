//! Broadcast: encode each snapshot once, fan the bytes out to every client.
//!
//! This layer moves bytes, not market types: the tick loop takes a JSON body from a
//! [`ticker::SnapshotSource`] (the local processor, a fixed file, later a Redis stream), stamps it
//! with `seq` and `ts`, frames it once ([`frame`]), and publishes it through the [`hub::Hub`];
//! each client's task ([`connection`]) writes the shared frame to its socket.

pub mod connection;
pub mod frame;
pub mod handshake;
pub mod hub;
pub mod ticker;
