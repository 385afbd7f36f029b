//! marketcast: real-time VN30 market data over WebSocket.
pub mod market;
