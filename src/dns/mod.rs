//! DNS on the wire: a hickory-server `Server` with our [`handler::Handler`]
//! on UDP and TCP at the same address.

pub mod answer;
pub mod handler;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

pub use handler::Handler;

/// Idle TCP connections are closed after this long.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;

pub struct DnsServer {
    server: Server<Handler>,
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
        let mut server = Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_TIMEOUT, TCP_RESPONSE_BUFFER);
        Ok(Self { server, local_addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until a listener fails.
    pub async fn run(mut self) -> anyhow::Result<()> {
        self.server.block_until_done().await.context("DNS server stopped")
    }
}
