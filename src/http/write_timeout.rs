//! The HTTP phase's write timeout (`HTTP_WRITE_TIMEOUT`): a response the client does not read
//! in time is cut, so a large answer (a snapshot is hundreds of KB late in the session)
//! requested and never read does not hold a socket, and its buffers, forever.
//!
//! Every HTTP connection is served on a [`WriteTimeout`] around its socket (plain or TLS), and
//! [`super::upgrade`] takes the socket back out of it after a WebSocket upgrade: from then on
//! the fan-out's own slow-client rules hold (`WS_SLOW_CLIENT_TIMEOUT`), and nothing of this
//! wrapper is kept.
//!
//! The clock starts when a write first has to wait for the client, and stops only when all the
//! output hyper queued has reached the kernel (a flush that completes). Progress does not restart
//! it: a client that reads a byte now and then cannot stretch a response over hours, which a
//! per-write timeout (as `tokio-io-timeout`'s) would allow. That crate is not used for two more
//! reasons: its stream holds a pinned timer, so it is not `Unpin` and hyper could only serve it
//! boxed and pinned, from which the socket cannot be taken back after an upgrade without
//! `unsafe`; here the timer is boxed on its own and allocated only while a write waits.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// The IO of a plain HTTP connection, as hyper serves it (and as an upgrade hands it back).
pub type PlainIo = hyper_util::rt::TokioIo<WriteTimeout<TcpStream>>;

/// The IO of an HTTPS connection, as hyper serves it (and as an upgrade hands it back).
pub type TlsIo = hyper_util::rt::TokioIo<WriteTimeout<tokio_rustls::server::TlsStream<TcpStream>>>;

/// A stream whose writes fail with [`io::ErrorKind::TimedOut`] once output has waited for the
/// client longer than the timeout. Reads pass through untouched (hyper times the request head).
pub struct WriteTimeout<S> {
    io: S,
    timeout: Duration,
    /// Set while output waits for the client: when it runs out, the connection is cut.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteTimeout<S> {
    /// `io` whose output may wait at most `timeout` for the client.
    pub fn new(io: S, timeout: Duration) -> Self {
        WriteTimeout {
            io,
            timeout,
            deadline: None,
        }
    }

    /// The stream inside, with the timer let go.
    pub fn into_inner(self) -> S {
        self.io
    }

    /// The stream inside.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// After the inner stream answered `Pending` to a write, flush or shutdown: starts the clock
    /// if it is not running, and fails once it has run out. Polling the timer registers the
    /// task's waker with it, so the task wakes to fail even if the client never reads again.
    fn waiting<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timeout = self.timeout;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client did not read the response within {:?} (HTTP_WRITE_TIMEOUT)",
                    timeout
                ),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// A write that waits after the clock ran out still fails: the check above only runs on
    /// `Pending`, so an expired clock is also checked before each write.
    fn expired(&self) -> bool {
        self.deadline.as_ref().is_some_and(|d| d.is_elapsed())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.expired() {
            return this.waiting(cx);
        }
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Pending => this.waiting(cx),
            ready => ready,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.expired() {
            return this.waiting(cx);
        }
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.waiting(cx),
            ready => ready,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.expired() {
            return this.waiting(cx);
        }
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending => this.waiting(cx),
            Poll::Ready(Ok(())) => {
                // Everything queued reached the kernel: the client kept up, the clock stops.
                this.deadline = None;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_shutdown(cx) {
            Poll::Pending => this.waiting(cx),
            ready => ready,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TIMEOUT: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn output_the_client_never_reads_fails_after_the_timeout() {
        // A pipe whose far end never reads: it takes 64 bytes, then waits.
        let (near, _far) = tokio::io::duplex(64);
        let mut io = WriteTimeout::new(near, TIMEOUT);
        let started = tokio::time::Instant::now();
        let err = io.write_all(&[7u8; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("HTTP_WRITE_TIMEOUT"), "{err}");
        assert_eq!(
            started.elapsed(),
            TIMEOUT,
            "paused time: exactly the timeout"
        );
        // And it stays cut.
        assert!(io.write_all(b"x").await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_reader_does_not_restart_the_clock() {
        let (near, mut far) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move {
            // 16 bytes every 10 s: progress, but the 1 KB would take over ten minutes.
            let mut buf = [0u8; 16];
            let mut read = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                match far.read(&mut buf).await {
                    Ok(0) | Err(_) => return read,
                    Ok(n) => read += n,
                }
            }
        });
        let mut io = WriteTimeout::new(near, TIMEOUT);
        let err = io.write_all(&[7u8; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(io);
        let read = reader.await.unwrap();
        assert!(read > 0 && read < 1024, "read {read}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_keeps_up_is_never_cut_and_the_clock_stops_at_each_flush() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut io = WriteTimeout::new(near, TIMEOUT);
        for _ in 0..5 {
            // Each response waits 20 s for the client, then the client reads it all: no single
            // response waited 30 s, though together they waited 100 s.
            let reader = async {
                tokio::time::sleep(Duration::from_secs(20)).await;
                let mut got = vec![0u8; 256];
                far.read_exact(&mut got).await.unwrap();
            };
            let writer = async {
                io.write_all(&[1u8; 256]).await.unwrap();
                io.flush().await.unwrap();
            };
            tokio::join!(reader, writer);
        }
        assert!(io.deadline.is_none());
        let (near, _far) = tokio::io::duplex(8);
        let mut io = WriteTimeout::new(near, TIMEOUT);
        io.write_all(b"fits").await.unwrap();
        assert!(io.deadline.is_none(), "no timer when nothing waits");
    }
}
