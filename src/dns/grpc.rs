//! DNS over CoreDNS's gRPC protocol (`--grpc-addr`), so that CoreDNS's
//! `grpc` plugin can send a zone to meshdns as it sent it to istiocoredns.
//! This module owns that listener: the protobuf message and the service of
//! CoreDNS's `pb/dns.proto` (`coredns.dns.DnsService`, one unary method
//! `Query(DnsPacket) returns (DnsPacket)`), written by hand over tonic so the
//! build needs no `protoc`; optional TLS (rustls with ring); and its limits.
//! The answer comes from [`Handler::respond_whole`], as over TCP: the whole
//! answer, never truncated.
//!
//! It runs on a thread of its own with its own runtime, like TCP, so gRPC
//! clients can take at most one core and never delay the admin endpoint or
//! the Kubernetes watch.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};
use tracing::{debug, warn};

use super::handler::Handler;
use super::metrics::Proto;

/// The service's full name, from CoreDNS's `pb/dns.proto`.
pub const SERVICE: &str = "coredns.dns.DnsService";
/// The HTTP/2 path of its one method.
pub const QUERY_PATH: &str = "/coredns.dns.DnsService/Query";
/// The largest `DnsPacket` accepted or sent, encoded: a field key (1 byte),
/// the length (3 bytes for 65535) and a DNS message of at most 65535 bytes.
/// A larger request gets a gRPC error (`OUT_OF_RANGE`) before it is parsed.
pub const MAX_MESSAGE: usize = 1 + 3 + u16::MAX as usize;
/// Concurrent streams per connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS)
/// by default; see `--grpc-max-streams`.
pub const DEFAULT_MAX_STREAMS: u32 = 128;
/// Open connections at most; further clients wait in the kernel's backlog
/// until one closes.
pub const MAX_CONNECTIONS: usize = 256;
/// A request must arrive whole and be answered within this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A TLS handshake must finish within this long.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The most header bytes a request may carry (HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE).
pub const MAX_HEADER_LIST: u32 = 16 << 10;
/// Pings on a quiet connection, to find peers that have gone.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the accept loop rests after an error such as EMFILE.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// `message DnsPacket { bytes msg = 1; }`: one whole DNS message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DnsPacket {
    #[prost(bytes = "vec", tag = "1")]
    pub msg: Vec<u8>,
}

/// How to serve gRPC.
#[derive(Clone, Debug)]
pub struct GrpcConfig {
    /// Concurrent streams per connection.
    pub max_streams: u32,
    /// A PEM certificate chain and its PEM private key; `None` for plaintext.
    pub tls: Option<TlsPem>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            max_streams: DEFAULT_MAX_STREAMS,
            tls: None,
        }
    }
}

#[derive(Clone)]
pub struct TlsPem {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsPem { .. }")
    }
}

pub struct GrpcServer {
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    server: Server,
    handler: Arc<Handler>,
}

impl GrpcServer {
    /// Binds `addr` and checks the TLS certificate and key, so that a bad
    /// one fails at start-up.
    pub fn bind(addr: SocketAddr, handler: Arc<Handler>, config: GrpcConfig) -> anyhow::Result<Self> {
        let GrpcConfig { max_streams, tls } = config;
        let mut server = Server::builder()
            .max_concurrent_streams(max_streams)
            .concurrency_limit_per_connection(max_streams as usize)
            .http2_max_header_list_size(MAX_HEADER_LIST)
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .timeout(REQUEST_TIMEOUT);
        if let Some(TlsPem { cert, key }) = tls {
            let tls = ServerTlsConfig::new()
                .identity(Identity::from_pem(cert, key))
                .timeout(TLS_HANDSHAKE_TIMEOUT);
            server = server
                .tls_config(tls)
                .map_err(|e| anyhow!("{}", error_chain(&e)))
                .context("invalid gRPC TLS certificate or key")?;
        }
        let listener = super::tcp_listener(addr).with_context(|| format!("cannot bind gRPC {addr}"))?;
        Ok(Self {
            local_addr: listener.local_addr()?,
            listener,
            server,
            handler,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until the listener fails, on a thread of its own; dropping
    /// the future stops accepting and closes the connections as they finish.
    pub async fn run(self) -> anyhow::Result<()> {
        let Self {
            listener,
            local_addr,
            server,
            handler,
        } = self;
        let (failed_tx, failed_rx) = tokio::sync::oneshot::channel();
        // Dropped with this future: the server's shutdown signal.
        let (_stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new().name("dns-grpc".into()).spawn(move || {
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| {
                    rt.block_on(async move {
                        let listener = TcpListener::from_std(listener)?;
                        let service = DnsService { handler };
                        server
                            .serve_with_incoming_shutdown(service, incoming(listener), async {
                                let _ = stop_rx.await;
                            })
                            .await
                            .map_err(|e| anyhow!("{}", error_chain(&e)))
                    })
                });
            let _ = failed_tx.send(served);
        })?;
        match failed_rx.await {
            Ok(Ok(())) => Err(anyhow!("gRPC {local_addr} stopped")),
            Ok(Err(e)) => Err(e.context(format!("gRPC {local_addr} failed"))),
            Err(_) => Err(anyhow!("gRPC {local_addr}: its thread ended")),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(e) = source {
        s.push_str(": ");
        s.push_str(&e.to_string());
        source = e.source();
    }
    s
}

/// Accepted connections, at most [`MAX_CONNECTIONS`] open at once: the
/// next accept waits for a free slot.
fn incoming(listener: TcpListener) -> impl futures::Stream<Item = io::Result<Capped>> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    futures::stream::unfold((listener, slots), |(listener, slots)| async move {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return None;
        };
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = Capped {
                        stream,
                        _permit: permit,
                    };
                    return Some((Ok(conn), (listener, slots)));
                }
                Err(error) => {
                    // Out of descriptors, or a client that left first.
                    warn!(%error, "gRPC accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    })
}

/// A connection holding its slot under [`MAX_CONNECTIONS`] until dropped.
struct Capped {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl Connected for Capped {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Capped {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Capped {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// `coredns.dns.DnsService`, as an HTTP service: `Query` is answered, any
/// other path gets `UNIMPLEMENTED`.
#[derive(Clone)]
struct DnsService {
    handler: Arc<Handler>,
}

impl NamedService for DnsService {
    const NAME: &'static str = SERVICE;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower_service::Service<http::Request<Body>> for DnsService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != QUERY_PATH {
            return Box::pin(async { Ok(Status::unimplemented("meshdns serves only Query").into_http()) });
        }
        let query = Query {
            handler: self.handler.clone(),
        };
        Box::pin(async move {
            let mut grpc = Grpc::new(tonic_prost::ProstCodec::<DnsPacket, DnsPacket>::default())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE);
            Ok(grpc.unary(query, request).await)
        })
    }
}

/// The `Query` method.
struct Query {
    handler: Arc<Handler>,
}

impl UnaryService<DnsPacket> for Query {
    type Response = DnsPacket;
    type Future = std::future::Ready<Result<Response<DnsPacket>, Status>>;

    fn call(&mut self, request: Request<DnsPacket>) -> Self::Future {
        // Unknown only for a transport tonic cannot see into.
        let src = request
            .remote_addr()
            .unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
        std::future::ready(query(&self.handler, &request.into_inner().msg, src).map(Response::new))
    }
}

/// One DNS message in, its answer out: a FORMERR packet for a message that
/// does not parse, and a gRPC error for one that gets no DNS reply at all.
pub fn query(handler: &Handler, packet: &[u8], src: SocketAddr) -> Result<DnsPacket, Status> {
    if packet.len() > usize::from(u16::MAX) {
        // The decode limit stops these first; a DNS message cannot be longer.
        return Err(Status::invalid_argument("a DNS message is at most 65535 bytes"));
    }
    let mut out = Vec::new();
    handler.respond_whole(Proto::Grpc, packet, src, &mut out);
    if out.is_empty() {
        debug!(%src, len = packet.len(), "gRPC query without a reply: shorter than a header, or a response");
        return Err(Status::invalid_argument(
            "not a DNS query: shorter than a DNS header, or QR set",
        ));
    }
    Ok(DnsPacket { msg: out })
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn dns_packet_is_field_1_bytes() {
        let packet = DnsPacket { msg: vec![1, 2, 3] };
        assert_eq!(packet.encode_to_vec(), [0x0a, 3, 1, 2, 3]);
        assert_eq!(DnsPacket::decode(&[0x0a, 3, 1, 2, 3][..]).unwrap(), packet);
        // An empty message encodes to nothing, as proto3 has it.
        assert!(DnsPacket::default().encode_to_vec().is_empty());
    }

    #[test]
    fn the_limit_holds_exactly_the_largest_dns_message() {
        let largest = DnsPacket {
            msg: vec![0; u16::MAX as usize],
        };
        assert_eq!(largest.encoded_len(), MAX_MESSAGE);
        let one_more = DnsPacket {
            msg: vec![0; u16::MAX as usize + 1],
        };
        assert!(one_more.encoded_len() > MAX_MESSAGE);
    }
}
