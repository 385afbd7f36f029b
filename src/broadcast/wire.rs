//! A client's socket as the fan-out and the client's task see it: plain TCP, or TLS over TCP.
//!
//! The fan-out writes a shared frame with one non-blocking write per client, and a client's task
//! reads what the client sends without blocking (see [`super::outbox`] and
//! [`super::connection`]). Both go through [`Wire`], so the outbox's drop-oldest and
//! slow-client rules hold for a `wss://` client exactly as for a `ws://` one.
//!
//! **Plain** is the socket itself: [`Wire::try_write`] is `TcpStream::try_write`, one branch
//! away from what it was before TLS existed.
//!
//! **TLS** keeps the connection's rustls state beside the socket. Ciphertext cannot be shared:
//! every TLS client encrypts its own copy of a tick, which is the price of terminating TLS in
//! this process (a proxy pays the same price on its own cores). To keep a slow TLS client's
//! memory bounded like a plain one's, plaintext is handed to rustls [`TLS_CHUNK`] bytes at a
//! time and only while rustls has nothing left to send: a client whose socket is full holds at
//! most one chunk of ciphertext of its own, and the rest of the frame stays in its outbox as a
//! shared reference. `try_write` reports the plaintext taken, as a socket reports bytes
//! written; [`Wire::has_buffered_output`] tells the outbox that ciphertext still waits for the
//! socket even though the frame was taken whole.
//!
//! Reads decrypt through the same state; `try_read` returns `WouldBlock` only once rustls holds
//! no plaintext and the socket had nothing more, so a task that waits on the socket's readiness
//! after `WouldBlock` never sleeps on data rustls already decrypted.

use std::io::{self, Read, Write};
use std::sync::{Mutex, MutexGuard};

use rustls::ServerConnection;
use tokio::net::TcpStream;

/// Plaintext handed to rustls at a time: one TLS record's worth (the protocol's maximum).
pub const TLS_CHUNK: usize = 16 * 1024;

/// A client's socket: plain, or TLS (boxed, so a plain client's slot stays small).
pub enum Wire {
    /// `ws://`: the socket itself.
    Plain(TcpStream),
    /// `wss://`: the socket and the TLS connection state.
    Tls(Box<TlsWire>),
}

/// The socket and its rustls state; the state is locked for each read or write.
pub struct TlsWire {
    tcp: TcpStream,
    conn: Mutex<ServerConnection>,
}

/// `std::io` reads and writes on a Tokio socket without blocking (what rustls's
/// `read_tls`/`write_tls` need).
struct NonBlocking<'a>(&'a TcpStream);

impl Read for NonBlocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for NonBlocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Wire {
    /// A TLS client whose handshake is done (`conn` as tokio-rustls hands it over).
    pub fn tls(tcp: TcpStream, mut conn: ServerConnection) -> Self {
        // Bounded by how plaintext is handed over (see the module docs), not by rustls.
        conn.set_buffer_limit(None);
        Wire::Tls(Box::new(TlsWire {
            tcp,
            conn: Mutex::new(conn),
        }))
    }

    /// The TCP socket underneath (readiness, socket options, half-close).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Wire::Plain(tcp) => tcp,
            Wire::Tls(t) => &t.tcp,
        }
    }

    /// Whether this is a TLS connection.
    pub fn is_tls(&self) -> bool {
        matches!(self, Wire::Tls(_))
    }

    /// Writes what the socket takes now, without blocking: the number of bytes of `buf` taken,
    /// or `WouldBlock` when none could be.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Wire::Plain(tcp) => tcp.try_write(buf),
            Wire::Tls(t) => t.try_write(buf),
        }
    }

    /// Reads what the client sent, without blocking: `Ok(0)` at the end of the stream.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Wire::Plain(tcp) => tcp.try_read(buf),
            Wire::Tls(t) => t.try_read(buf),
        }
    }

    /// True while bytes taken by [`Wire::try_write`] still wait for the socket (TLS only).
    pub fn has_buffered_output(&self) -> bool {
        match self {
            Wire::Plain(_) => false,
            Wire::Tls(t) => t.conn().wants_write(),
        }
    }

    /// Sends what waits for the socket; `Ok(true)` when nothing is left.
    pub fn flush_buffered(&self) -> io::Result<bool> {
        match self {
            Wire::Plain(_) => Ok(true),
            Wire::Tls(t) => t.send_pending(&mut t.conn()),
        }
    }

    /// Queues a TLS close_notify (TLS only): it goes out with what waits, through
    /// [`Wire::flush_buffered`], so a caller that flushes until nothing waits sends it whole.
    pub fn close_notify(&self) {
        if let Wire::Tls(t) = self {
            t.conn().send_close_notify();
        }
    }

    /// Ends our side of the TCP stream (after [`Wire::close_notify`] went out, for TLS).
    pub fn shutdown_write(&self) -> io::Result<()> {
        socket2::SockRef::from(self.tcp()).shutdown(std::net::Shutdown::Write)
    }
}

impl TlsWire {
    fn conn(&self) -> MutexGuard<'_, ServerConnection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes rustls's pending ciphertext; `Ok(true)` when all of it went.
    fn send_pending(&self, conn: &mut ServerConnection) -> io::Result<bool> {
        while conn.wants_write() {
            match conn.write_tls(&mut NonBlocking(&self.tcp)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let mut conn = self.conn();
        let mut taken = 0;
        // Hand over a chunk only once the one before is on the socket.
        while self.send_pending(&mut conn)? && taken < buf.len() {
            let end = buf.len().min(taken + TLS_CHUNK);
            taken += conn.writer().write(&buf[taken..end])?;
        }
        if taken == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut conn = self.conn();
        loop {
            match conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if conn.read_tls(&mut NonBlocking(&self.tcp))? == 0 {
                return Ok(0);
            }
            let processed = conn.process_new_packets();
            // Alerts, key updates and session tickets go out with what the socket takes; what
            // it does not take now goes with the next write or flush.
            let _ = self.send_pending(&mut conn);
            if let Err(e) = processed {
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A TLS connection over loopback: the server side as a [`Wire`], the client as tokio-rustls.
    async fn tls_pair() -> (Wire, tokio_rustls::client::TlsStream<TcpStream>) {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::try_from(signing_key.serialize_der()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connect = async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            tokio_rustls::TlsConnector::from(Arc::new(client))
                .connect(name, tcp)
                .await
                .unwrap()
        };
        let accept = async {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio_rustls::TlsAcceptor::from(Arc::new(server))
                .accept(tcp)
                .await
                .unwrap()
        };
        let (client, server) = tokio::join!(connect, accept);
        let (tcp, conn) = server.into_inner();
        (Wire::tls(tcp, conn), client)
    }

    /// Writes all of `data` through the wire, waiting for the socket when it is full.
    async fn write_all(wire: &Wire, mut data: &[u8]) {
        while !data.is_empty() || wire.has_buffered_output() {
            if !data.is_empty() {
                match wire.try_write(data) {
                    Ok(n) => data = &data[n..],
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{e}"),
                }
            }
            if !wire.flush_buffered().unwrap() || (!data.is_empty()) {
                wire.tcp().writable().await.unwrap();
            }
        }
    }

    #[tokio::test]
    async fn bytes_written_through_tls_arrive_whole_and_in_order() {
        let (wire, mut client) = tls_pair().await;
        let frames: Vec<Vec<u8>> = (0..3u8)
            .map(|i| {
                (0..300_000)
                    .map(|j| (j as u8).wrapping_mul(31) ^ i)
                    .collect()
            })
            .collect();
        let expected: Vec<u8> = frames.concat();
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; expected.len()];
            client.read_exact(&mut got).await.unwrap();
            assert!(
                got == expected,
                "the client read other bytes than were written"
            );
            client
        });
        for f in &frames {
            write_all(&wire, f).await;
        }
        let mut client = reader.await.unwrap();

        // And the other way: what the client sends is read back decrypted, then the end.
        client.write_all(b"hello over tls").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4];
        loop {
            wire.tcp().readable().await.unwrap();
            match wire.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, b"hello over tls");
    }

    #[tokio::test]
    async fn a_client_that_does_not_read_holds_at_most_one_chunk_of_ciphertext() {
        let (wire, client) = tls_pair().await;
        let frame = vec![7u8; 1 << 20];
        // Write until the socket takes nothing more (the kernel's buffers are full).
        let mut taken = 0usize;
        for _ in 0..10_000 {
            match wire.try_write(&frame[taken % frame.len()..]) {
                Ok(n) => taken += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(wire.has_buffered_output());
        // What waits in rustls: drained into memory to be measured.
        let Wire::Tls(t) = &wire else { unreachable!() };
        let mut pending = Vec::new();
        let mut conn = t.conn();
        while conn.wants_write() {
            conn.write_tls(&mut pending).unwrap();
        }
        // One record of plaintext plus its header, tag and padding.
        assert!(
            pending.len() <= TLS_CHUNK + 256,
            "{} bytes of ciphertext held for a client that does not read",
            pending.len()
        );
        drop(client);
    }
}
