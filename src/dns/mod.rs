//! DNS on the wire: our UDP loop ([`udp`]) and hickory-server's TCP
//! listener, both answering through [`handler::Handler`], on one address.

pub mod answer;
pub mod fast;
pub mod handler;
pub mod metrics;
pub mod udp;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

pub use handler::Handler;
use handler::TcpHandler;
use std::sync::Arc;

/// Idle TCP connections are closed after this long.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;

pub struct DnsServer {
    tcp: Server<TcpHandler>,
    udp: UdpSocket,
    handler: Arc<Handler>,
    local_addr: SocketAddr,
}

impl DnsServer {
    /// Binds UDP, then TCP on the same port (the port UDP got, for port 0).
    pub async fn bind(addr: SocketAddr, handler: Handler) -> anyhow::Result<Self> {
        let udp = UdpSocket::bind(addr)
            .await
            .with_context(|| format!("cannot bind UDP {addr}"))?;
        let local_addr = udp.local_addr()?;
        let tcp = TcpListener::bind(local_addr)
            .await
            .with_context(|| format!("cannot bind TCP {local_addr}"))?;
        let handler = Arc::new(handler);
        let mut server = Server::new(TcpHandler(handler.clone()));
        server.register_listener(tcp, TCP_TIMEOUT, TCP_RESPONSE_BUFFER);
        Ok(Self {
            tcp: server,
            udp,
            handler,
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until a listener fails.
    pub async fn run(self) -> anyhow::Result<()> {
        let Self {
            mut tcp,
            udp,
            handler,
            local_addr,
        } = self;
        tokio::select! {
            r = udp::serve(udp, handler) => r.with_context(|| format!("UDP {local_addr} failed")),
            r = tcp.block_until_done() => r.with_context(|| format!("TCP {local_addr} failed")),
        }
    }
}
