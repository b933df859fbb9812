//! DNS on the wire: our UDP loops ([`udp`]), one per worker thread, each on
//! its own `SO_REUSEPORT` socket, and our TCP accept loop ([`tcp`]), all
//! answering through [`handler::Handler`] on one address.

pub mod answer;
pub mod edns;
pub mod fast;
pub mod handler;
pub mod metrics;
pub mod tcp;
pub mod udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tracing::debug;

pub use handler::Handler;
pub use tcp::TcpLimits;
/// Absorbs bursts while a worker is busy (the kernel may cap it lower).
const UDP_RECV_BUFFER: usize = 4 << 20;
/// The scheduler slice UDP threads ask for (the kernel's minimum): they
/// run for microseconds per wake-up, and should not wait out a neighbour's
/// slice to do it. See [`crate::sys::sched`].
const UDP_SLICE: Duration = Duration::from_micros(100);

/// How to serve: threads and limits.
#[derive(Clone, Debug)]
pub struct Config {
    /// UDP threads, one socket each.
    pub workers: usize,
    pub tcp: TcpLimits,
}

pub struct DnsServer {
    tcp: TcpListener,
    tcp_limits: TcpLimits,
    /// One per worker thread.
    udp: Vec<std::net::UdpSocket>,
    handler: Arc<Handler>,
    local_addr: SocketAddr,
}

impl DnsServer {
    /// Binds `workers` UDP sockets sharing the address (`SO_REUSEPORT`: the
    /// kernel spreads clients over them), then TCP on the same port (the
    /// port UDP got, for port 0).
    pub async fn bind(addr: SocketAddr, handler: Handler, config: Config) -> anyhow::Result<Self> {
        let Config {
            workers,
            tcp: tcp_limits,
        } = config;
        let first = udp_socket(addr).with_context(|| format!("cannot bind UDP {addr}"))?;
        let local_addr = first.local_addr()?;
        let mut udp = vec![first];
        for _ in 1..workers.max(1) {
            udp.push(
                udp_socket(local_addr).with_context(|| format!("cannot bind another UDP socket to {local_addr}"))?,
            );
        }
        let tcp = TcpListener::bind(local_addr)
            .await
            .with_context(|| format!("cannot bind TCP {local_addr}"))?;
        let handler = Arc::new(handler);
        Ok(Self {
            tcp,
            tcp_limits,
            udp,
            handler,
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until a listener fails: each UDP socket on a thread of its
    /// own, TCP on the caller's runtime.
    pub async fn run(self) -> anyhow::Result<()> {
        let Self {
            tcp,
            tcp_limits,
            udp,
            handler,
            local_addr,
        } = self;
        let (failed_tx, mut failed_rx) = tokio::sync::mpsc::unbounded_channel();
        for (i, socket) in udp.into_iter().enumerate() {
            let (handler, failed) = (handler.clone(), failed_tx.clone());
            std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || {
                    if let Err(error) = crate::sys::sched::request_slice(UDP_SLICE) {
                        debug!(%error, "could not request a short scheduler slice");
                    }
                    let error = udp::serve(socket, handler)
                        .err()
                        .unwrap_or_else(|| std::io::Error::other("stopped"));
                    let _ = failed.send(error);
                })?;
        }
        tokio::select! {
            r = tcp::serve(tcp, handler, tcp_limits) => r.with_context(|| format!("TCP {local_addr} failed")),
            Some(e) = failed_rx.recv() => Err(anyhow!(e).context(format!("a UDP worker on {local_addr} failed"))),
        }
    }
}

fn udp_socket(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    let _ = socket.set_recv_buffer_size(UDP_RECV_BUFFER);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}
