//! The TCP transport: our own accept loop and one task per connection, so
//! that every connection is under [`TcpLimits`]. A connection reads
//! length-prefixed messages, answers each through [`Handler::respond_tcp`]
//! (pipelined queries are answered in order, the replies written together),
//! and is closed when it idles, stalls mid-message, stops reading our
//! replies, or reaches its query cap. At the connection cap, the connection
//! that has been quiet longest is closed to admit the new client, as Knot
//! does: a flood of idle connections can never lock clients out, and
//! nothing queues without bound. Every close is counted by reason.
//!
//! All of it runs on the caller's (single-threaded) runtime, apart from the
//! UDP threads, so TCP can take at most one core from UDP.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::timeout_at;
use tracing::{debug, warn};

use super::handler::Handler;
use super::metrics::{DnsMetrics, TcpClose};

/// Bytes read per system call once a message has started; a larger message
/// grows the buffer to its own size only.
const READ_CHUNK: usize = 512;
/// Replies to pipelined queries are written together up to this size.
const WRITE_BATCH: usize = 16 << 10;
/// A buffer grown for a large message is given back after it.
const KEEP_CAPACITY: usize = 4 << 10;
/// The most the input buffer can hold: it only grows while it is short of
/// one whole message (at most 2 + 65535 bytes) plus a read chunk, and `Vec`
/// at most doubles when it grows.
#[doc(hidden)]
pub const MAX_READ_BUFFER: usize = 2 * (2 + u16::MAX as usize + READ_CHUNK);
/// How long the accept loop rests after an error such as EMFILE, so that it
/// does not spin while the process is out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Limits on TCP clients. See `meshdns serve --help` for the defaults.
#[derive(Clone, Debug)]
pub struct TcpLimits {
    /// Open connections at most; at the cap, the quietest one is closed
    /// to admit a new client.
    pub max_connections: usize,
    /// A connection with no message in progress is closed after this long.
    pub idle_timeout: Duration,
    /// A message (its length prefix included) must arrive whole within
    /// this long of its first byte, and each reply write must finish within
    /// it; otherwise the connection is closed.
    pub stall_timeout: Duration,
    /// Queries answered per connection before it is closed; `None` for no
    /// cap.
    pub max_queries: Option<NonZeroU32>,
}

impl Default for TcpLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(1),
            max_queries: None,
        }
    }
}

/// Accepts connections until the listener fails for good.
pub async fn serve(listener: TcpListener, handler: Arc<Handler>, limits: TcpLimits) -> io::Result<()> {
    let conns = Arc::new(Conns::new(handler.metrics().clone()));
    let limits = Arc::new(limits);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors or memory, or a client that left
                // before we took it: none of these is the listener's end.
                warn!(%error, "TCP accept failed");
                handler.metrics().tcp_accept_error();
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = conns.admit(limits.max_connections);
        let (handler, limits, conns) = (handler.clone(), limits.clone(), conns.clone());
        tokio::spawn(async move {
            let close = tokio::select! {
                close = session(stream, peer, &handler, &limits, &conn) => close,
                () = conn.reclaimed.notified() => TcpClose::Reclaimed,
            };
            if close != TcpClose::Reclaimed {
                conns.remove(conn.id);
            }
            debug!(%peer, reason = close.label(), "TCP connection closed");
            handler.metrics().tcp_closed(close);
        });
    }
}

/// The open connections, for the cap.
struct Conns {
    epoch: Instant,
    open: Mutex<Open>,
    metrics: DnsMetrics,
}

#[derive(Default)]
struct Open {
    next_id: u64,
    by_id: HashMap<u64, Arc<Conn>>,
}

struct Conn {
    id: u64,
    epoch: Instant,
    /// Milliseconds since [`Conns::epoch`] of the last byte read or written.
    last_active: AtomicU64,
    /// Notified once, when the connection is closed to admit another.
    reclaimed: Notify,
}

impl Conns {
    fn new(metrics: DnsMetrics) -> Self {
        Self {
            epoch: Instant::now(),
            open: Mutex::default(),
            metrics,
        }
    }

    /// Registers a new connection; at the cap, first evicts the one quiet
    /// longest. Its task sees the notification and closes the socket; it is
    /// out of the count already, so the count never exceeds the cap.
    fn admit(&self, max: usize) -> Arc<Conn> {
        let now = self.epoch.elapsed().as_millis() as u64;
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while open.by_id.len() >= max.max(1) {
            let Some(quietest) = open
                .by_id
                .values()
                .min_by_key(|c| (c.last_active.load(Ordering::Relaxed), c.id))
                .map(|c| c.id)
            else {
                break;
            };
            if let Some(victim) = open.by_id.remove(&quietest) {
                victim.reclaimed.notify_one();
            }
        }
        let conn = Arc::new(Conn {
            id: open.next_id,
            epoch: self.epoch,
            last_active: AtomicU64::new(now),
            reclaimed: Notify::new(),
        });
        open.next_id += 1;
        open.by_id.insert(conn.id, conn.clone());
        self.metrics.tcp_open(open.by_id.len());
        conn
    }

    fn remove(&self, id: u64) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.by_id.remove(&id);
        self.metrics.tcp_open(open.by_id.len());
    }
}

impl Conn {
    fn touch(&self) {
        self.last_active
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// Serves one connection on `stream` as [`serve`] does, but alone: no
/// accept loop and no connection cap. For driving the framing over
/// in-memory streams (the TCP framing fuzz target and its corpus replay).
#[doc(hidden)]
pub async fn serve_stream(
    stream: impl AsyncRead + AsyncWrite + Unpin,
    peer: SocketAddr,
    handler: &Handler,
    limits: &TcpLimits,
) -> TcpClose {
    let conn = Conn {
        id: 0,
        epoch: Instant::now(),
        last_active: AtomicU64::new(0),
        reclaimed: Notify::new(),
    };
    session(stream, peer, handler, limits, &conn).await
}

/// Serves one connection; returns why it ended. Generic over the stream
/// only for [`serve_stream`]; the server runs it on a `TcpStream`.
async fn session(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    peer: SocketAddr,
    handler: &Handler,
    limits: &TcpLimits,
    conn: &Conn,
) -> TcpClose {
    // Unconsumed input is buf[start..].
    let mut buf: Vec<u8> = Vec::new();
    let mut start = 0;
    let mut out: Vec<u8> = Vec::new();
    let mut reply: Vec<u8> = Vec::new();
    let mut answered: u32 = 0;
    // When the first byte of the message now in progress arrived.
    let mut message_began = Instant::now();
    loop {
        // Answer every message that is already here whole.
        while out.len() < WRITE_BATCH {
            let Some(len) = whole_message(&buf[start..]) else {
                break;
            };
            let message = &buf[start + 2..start + 2 + len];
            start += 2 + len;
            message_began = Instant::now();
            if !handler.respond_tcp(message, peer, &mut reply) {
                // Not a query we can answer on this stream (too short to
                // carry an ID): the framing cannot be trusted either.
                if !out.is_empty() {
                    let _ = write(&mut stream, &out, limits).await;
                }
                return TcpClose::Malformed;
            }
            if reply.is_empty() {
                continue;
            }
            out.extend_from_slice(&(reply.len() as u16).to_be_bytes());
            out.extend_from_slice(&reply);
            answered += 1;
            if limits.max_queries.is_some_and(|max| answered >= max.get()) {
                let _ = write(&mut stream, &out, limits).await;
                let _ = stream.shutdown().await;
                return TcpClose::QueryLimit;
            }
        }
        if !out.is_empty() {
            if let Err(close) = write(&mut stream, &out, limits).await {
                return close;
            }
            conn.touch();
            out.clear();
            // Let other connections have a turn between batches, so that a
            // client pipelining thousands of queries delays nobody.
            tokio::task::yield_now().await;
            if whole_message(&buf[start..]).is_some() {
                continue;
            }
        }

        buf.drain(..start);
        start = 0;
        if buf.is_empty() && buf.capacity() > KEEP_CAPACITY {
            buf = Vec::new();
        }
        let (deadline, on_timeout) = match buf.is_empty() {
            true => (Instant::now() + limits.idle_timeout, TcpClose::Idle),
            false => (message_began + limits.stall_timeout, TcpClose::Stalled),
        };
        // Room for the rest of this message, and for a few more.
        let want = match buf.len() {
            n if n >= 2 => (2 + u16::from_be_bytes([buf[0], buf[1]]) as usize).saturating_sub(n),
            _ => 2,
        };
        buf.reserve(want.max(READ_CHUNK));
        debug_assert!(
            buf.capacity() <= MAX_READ_BUFFER,
            "TCP read buffer grew to {}",
            buf.capacity()
        );
        let was_empty = buf.is_empty();
        match timeout_at(deadline.into(), stream.read_buf(&mut buf)).await {
            Err(_elapsed) => return on_timeout,
            Ok(Ok(0)) if was_empty => return TcpClose::Eof,
            Ok(Ok(0)) => return TcpClose::Truncated,
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                debug!(%peer, %error, "TCP read failed");
                return TcpClose::Error;
            }
        }
        if was_empty {
            message_began = Instant::now();
        }
        conn.touch();
    }
}

/// The length of the first message if `buf` holds all of it.
fn whole_message(buf: &[u8]) -> Option<usize> {
    let len = u16::from_be_bytes([*buf.first()?, *buf.get(1)?]) as usize;
    (buf.len() >= 2 + len).then_some(len)
}

async fn write(stream: &mut (impl AsyncWrite + Unpin), out: &[u8], limits: &TcpLimits) -> Result<(), TcpClose> {
    match tokio::time::timeout(limits.stall_timeout, stream.write_all(out)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(TcpClose::Error),
        Err(_elapsed) => Err(TcpClose::WriteStalled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_message_needs_prefix_and_body() {
        assert_eq!(whole_message(&[]), None);
        assert_eq!(whole_message(&[0]), None);
        assert_eq!(whole_message(&[0, 3, 1, 2]), None);
        assert_eq!(whole_message(&[0, 3, 1, 2, 3]), Some(3));
        assert_eq!(whole_message(&[0, 3, 1, 2, 3, 0]), Some(3));
        assert_eq!(whole_message(&[0, 0]), Some(0));
    }

    fn mk_conns() -> Conns {
        Conns::new(DnsMetrics::register(&prometheus::Registry::new()).unwrap())
    }

    #[test]
    fn the_cap_evicts_the_quietest() {
        let conns = mk_conns();
        let a = conns.admit(2);
        let b = conns.admit(2);
        a.last_active.store(5, Ordering::Relaxed);
        b.last_active.store(3, Ordering::Relaxed);
        let c = conns.admit(2);
        let open = conns.open.lock().unwrap();
        assert_eq!(open.by_id.len(), 2);
        assert!(open.by_id.contains_key(&a.id) && open.by_id.contains_key(&c.id));
        drop(open);
        // b's task is told, even though nobody waits yet.
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let notified = std::pin::pin!(b.reclaimed.notified());
        assert!(notified.poll(&mut cx).is_ready());
    }

    #[test]
    fn removal_frees_a_slot() {
        let conns = mk_conns();
        let a = conns.admit(1);
        conns.remove(a.id);
        let _b = conns.admit(1);
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let notified = std::pin::pin!(a.reclaimed.notified());
        assert!(notified.poll(&mut cx).is_pending());
    }
}
