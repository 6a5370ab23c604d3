//! Accepting connections, with the limits `axum::serve` does not expose.
//!
//! - A deadline for a request's headers: without one, a client that sends a
//!   header line now and then holds a connection (and a task) forever, no token
//!   needed. Hyper's timer starts whenever it waits for a request head, so the
//!   same deadline closes idle keep-alive connections.
//! - A cap on open connections: past it, new ones wait in the kernel's backlog
//!   instead of each costing memory and a task.
//! - A write deadline: a client that stops reading a response fills the socket
//!   buffer, and hyper then waits to flush for ever, never polling the body
//!   again, so nothing else ends the connection (or frees its slot). A write
//!   that makes no progress for the deadline fails with `TimedOut` instead,
//!   and hyper closes the connection (this also bounds a graceful shutdown).
//!
//! Slow bodies are bounded by the request timeout (the body is read inside it).

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, Sleep};

#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    /// How long a write may make no progress before the connection is closed.
    pub write_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open
/// connections finish their current request.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let max = limits.max_connections.clamp(1, u32::MAX as usize / 2);
    let slots = Arc::new(Semaphore::new(max));
    let (stop, stopped) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let mut conn = pin!(builder.serve_connection(
                TokioIo::new(WriteDeadline::new(stream, limits.write_timeout)),
                service,
            ));
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!("connection ended: {e}");
                    }
                    return;
                }
                _ = stopped.changed() => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection gives its slot back when it is done.
    let _ = slots.acquire_many(max as u32).await;
}

/// An IO whose writes fail with `TimedOut` once they have made no progress for
/// `timeout`; reads pass through untouched.
struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    /// Reused rather than allocated at each stall.
    sleep: Pin<Box<Sleep>>,
    /// Whether `sleep` runs for the current stall.
    armed: bool,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, timeout: Duration) -> Self {
        WriteDeadline {
            inner,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            armed: false,
        }
    }

    /// Arms the deadline when `poll` is pending, disarms it on any outcome.
    fn check<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.armed = false;
            return poll;
        }
        if !self.armed {
            self.sleep.as_mut().reset(Instant::now() + self.timeout);
            self.armed = true;
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.armed = false;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the client read nothing for {:?}", self.timeout),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tokio::net::TcpStream;

    const BIG: usize = 64 << 20;

    /// Serves a large and a small route on a loopback port with one slot.
    async fn start(write_timeout: Duration, big: usize) -> std::net::SocketAddr {
        let app = Router::new()
            .route(
                "/big",
                get(move || async move { Body::from(vec![0u8; big]) }),
            )
            .route("/small", get(|| async { "ok" }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnectionLimits {
            header_timeout: Duration::from_secs(60),
            max_connections: 1,
            write_timeout,
        };
        tokio::spawn(serve(listener, app, limits, std::future::pending()));
        addr
    }

    async fn send(stream: &TcpStream, bytes: &[u8]) {
        let mut sent = 0;
        while sent < bytes.len() {
            stream.writable().await.unwrap();
            match stream.try_write(&bytes[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("write failed: {e}"),
            }
        }
    }

    async fn read_some(stream: &TcpStream, buf: &mut [u8]) -> usize {
        loop {
            stream.readable().await.unwrap();
            match stream.try_read(buf) {
                Ok(n) => return n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    async fn get_request(addr: std::net::SocketAddr, path: &str) -> TcpStream {
        let stream = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        send(&stream, request.as_bytes()).await;
        stream
    }

    /// Reads a `Connection: close` response to its end, pausing `pause` between reads.
    async fn read_response(stream: &TcpStream, pause: Duration) -> Vec<u8> {
        let mut response = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = read_some(stream, &mut buf).await;
            if n == 0 {
                return response;
            }
            response.extend_from_slice(&buf[..n]);
            tokio::time::sleep(pause).await;
        }
    }

    fn split(response: &[u8]) -> (String, &[u8]) {
        let end = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete head");
        (
            String::from_utf8_lossy(&response[..end]).into_owned(),
            &response[end + 4..],
        )
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_frees_its_slot() {
        let addr = start(Duration::from_millis(300), BIG).await;
        // Takes the only slot and never reads its 64 MiB answer.
        let stalled = get_request(addr, "/big").await;
        let other = async {
            let stream = get_request(addr, "/small").await;
            read_response(&stream, Duration::ZERO).await
        };
        let response = tokio::time::timeout(Duration::from_secs(20), other)
            .await
            .expect("the stalled connection still holds the only slot");
        let (head, body) = split(&response);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, b"ok");
        drop(stalled);
    }

    #[tokio::test]
    async fn a_slow_but_steady_reader_gets_the_whole_body() {
        let size = 16 << 20;
        let addr = start(Duration::from_secs(1), size).await;
        let stream = get_request(addr, "/big").await;
        // Pauses well under the deadline; the whole transfer takes longer than it.
        let response = read_response(&stream, Duration::from_millis(100)).await;
        let (head, body) = split(&response);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body.len(), size);
        assert!(body.iter().all(|&b| b == 0));
    }
}
