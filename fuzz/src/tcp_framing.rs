//! Fuzz target (c): TCP framing. An arbitrary byte stream, split into
//! writes at fuzzer-chosen points, goes through the real connection code
//! (`meshdns::dns::tcp::serve_stream`) over an in-memory duplex. The
//! replies and the reason the connection closes must equal those for the
//! same stream sent in one write, and those a reading of the stream frame
//! by frame predicts from what `tcp.rs` documents: each whole message is
//! answered through `Handler::respond_tcp`, in order; a message shorter
//! than a header (a length of 0 included) closes the connection after the
//! replies before it; a response gets no reply; bytes left over at the end
//! are a truncated message. The read buffer's bound is a debug assertion
//! in `tcp.rs` itself, which fuzz builds keep.
//!
//! Input: a flags byte (the per-connection query cap), a count `k`, `k % 16`
//! chunk sizes (each byte + 1), then the stream; the sizes are used in turn,
//! and what is left goes in one last write.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use meshdns::admin::Readiness;
use meshdns::dns::Handler;
use meshdns::dns::metrics::{DnsMetrics, TcpClose};
use meshdns::dns::tcp::{TcpLimits, serve_stream};
use meshdns::index::testing::{mk_entry, mk_host_entry, mk_index};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::input::Input;

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    static HANDLER: Handler = mk_handler();
}

/// A small table: one name, and one whose answer is large (40 KiB or so
/// over TCP), so replies come in several sizes.
fn mk_handler() -> Handler {
    let index = Arc::new(mk_index());
    let big = (0..2500u32).map(|i| std::net::Ipv4Addr::from(0xf000_0000 + i).into());
    index.apply(mk_entry("foo/httpbin", None, &[("httpbin.bar.global", &["240.0.0.2"])]));
    index.apply(mk_host_entry("foo", "big", "big.bar.global", big));
    let registry = prometheus::Registry::new();
    let ready = Readiness::register(&registry).expect("fresh registry");
    ready.set_synced();
    Handler::new(index, ready, DnsMetrics::register(&registry).expect("fresh registry"))
}

fn peer() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], 5300))
}

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let max_queries = [None, Some(1), Some(2), Some(5)][input.below(4)].and_then(NonZeroU32::new);
    let k = input.below(16);
    let sizes: Vec<usize> = (0..k).map(|_| usize::from(input.u8()) + 1).collect();
    let stream = input.rest();
    let limits = TcpLimits {
        max_connections: 1,
        // Never reached: the client writes everything at once and closes.
        idle_timeout: Duration::from_secs(60),
        stall_timeout: Duration::from_secs(60),
        max_queries,
    };
    let mut chunks = Vec::new();
    let mut rest = stream;
    for &size in &sizes {
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    chunks.push(rest);

    HANDLER.with(|handler| {
        let want = predict(handler, stream, max_queries);
        let whole = converse(handler, &limits, &[stream]);
        let split = converse(handler, &limits, &chunks);
        assert_eq!(whole, want, "sent in one write");
        assert_eq!(split, want, "sent in {} writes", chunks.len());
    });
}

/// The replies to `stream`, and why the connection closes, frame by frame.
fn predict(handler: &Handler, mut stream: &[u8], max_queries: Option<NonZeroU32>) -> (Vec<u8>, TcpClose) {
    let mut replies = Vec::new();
    let mut answered = 0;
    let mut reply = Vec::new();
    loop {
        let Some(len) = stream.get(..2).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]]))) else {
            let close = if stream.is_empty() {
                TcpClose::Eof
            } else {
                TcpClose::Truncated
            };
            return (replies, close);
        };
        let Some(message) = stream.get(2..2 + len) else {
            return (replies, TcpClose::Truncated);
        };
        stream = &stream[2 + len..];
        if !handler.respond_tcp(message, peer(), &mut reply) {
            assert!(len < 12, "a {len}-byte message closed the connection");
            return (replies, TcpClose::Malformed);
        }
        if reply.is_empty() {
            assert_ne!(message[2] & 0x80, 0, "a query got no reply");
            continue;
        }
        assert!(len >= 12 && message[2] & 0x80 == 0);
        assert_eq!(reply[..2], message[..2], "reply ID");
        replies.extend_from_slice(&u16::try_from(reply.len()).expect("fits a frame").to_be_bytes());
        replies.extend_from_slice(&reply);
        answered += 1;
        if max_queries.is_some_and(|max| answered >= max.get()) {
            return (replies, TcpClose::QueryLimit);
        }
    }
}

/// Writes `chunks` to a connection one by one, yielding between them so
/// the server reads each apart, then closes; returns everything read back
/// and why the server closed.
fn converse(handler: &Handler, limits: &TcpLimits, chunks: &[&[u8]]) -> (Vec<u8>, TcpClose) {
    RUNTIME.with(|rt| {
        rt.block_on(async {
            let (client, server) = tokio::io::duplex(64 << 10);
            let (mut rd, mut wr) = tokio::io::split(client);
            let writer = async {
                for chunk in chunks {
                    // The server may have closed already.
                    if wr.write_all(chunk).await.is_err() {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
                let _ = wr.shutdown().await;
            };
            let reader = async {
                let mut got = Vec::new();
                let _ = rd.read_to_end(&mut got).await;
                got
            };
            let (close, (), got) = tokio::join!(serve_stream(server, peer(), handler, limits), writer, reader);
            (got, close)
        })
    })
}
