//! DNS on the wire: our UDP loops ([`udp`]) on plain threads, and our TCP
//! accept loop ([`tcp`]) on a thread of its own, all answering through
//! [`handler::Handler`] on one address. UDP is read as [`Workers`] says:
//! one socket with a reader thread and parked standby readers woken by a
//! backlog ([`standby`]), or N `SO_REUSEPORT` sockets with a thread each.
//! TCP clients can take at most one core, and never delay the admin
//! endpoint or the Kubernetes watch. [`grpc`] serves CoreDNS's
//! gRPC protocol on an address of its own, through the same handler.

pub mod answer;
pub mod edns;
pub mod fast;
pub mod grpc;
pub mod handler;
pub mod metrics;
pub mod slice;
pub mod standby;
pub mod tcp;
pub mod udp;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{debug, warn};

use self::metrics::DropReason;
use self::slice::{SliceMode, SliceSwitch};
use self::standby::Standby;

pub use handler::Handler;
pub use tcp::TcpLimits;
/// How often the kernel's per-socket drop counts are read into metrics.
const DROPS_SAMPLE: Duration = Duration::from_secs(1);

/// How UDP is read (`--workers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workers {
    /// `auto`: one socket, one thread blocking on it, and `standby` more
    /// threads parked until it has a backlog that lasts or overflows
    /// ([`standby::Backlog`]). At moderate rates this costs
    /// what one thread does; under a flood every core drains the queue.
    Auto { standby: usize },
    /// N `SO_REUSEPORT` sockets (the kernel spreads clients over them), a
    /// thread each, all always on: past what one queue drains.
    Sockets(usize),
}

impl Workers {
    /// `auto` on this machine: a standby reader per core beyond the first
    /// (none on one core). The count follows CPU affinity and cgroup quotas.
    pub fn auto() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Workers::Auto { standby: cores - 1 }
    }

    /// (sockets, standby readers).
    fn layout(self) -> (usize, usize) {
        match self {
            Workers::Auto { standby } => (1, standby),
            Workers::Sockets(n) => (n.max(1), 0),
        }
    }
}

impl fmt::Display for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Workers::Auto { standby } => write!(f, "auto (1 socket, 1 reader + {standby} standby)"),
            Workers::Sockets(n) => write!(f, "{n} (SO_REUSEPORT sockets, a thread each)"),
        }
    }
}

/// How to serve: threads and limits.
#[derive(Clone, Debug)]
pub struct Config {
    pub workers: Workers,
    /// Each UDP socket's receive queue, in the kernel's accounting (a small
    /// query takes about 800 bytes of it on loopback, more from most NICs).
    /// It bounds how long a query can wait under overload.
    pub udp_recv_buffer: usize,
    /// When UDP threads ask for a short scheduler slice
    /// (`--udp-sched-slice`). See [`slice`](mod@slice).
    pub udp_sched_slice: SliceMode,
    pub tcp: TcpLimits,
}

impl Config {
    /// The defaults of `meshdns serve`, with UDP read as `workers` says.
    pub fn new(workers: Workers) -> Self {
        Self {
            workers,
            udp_recv_buffer: DEFAULT_UDP_RECV_BUFFER,
            udp_sched_slice: SliceMode::Auto(slice::AUTO_SLICE),
            tcp: TcpLimits::default(),
        }
    }
}

/// See `--udp-recv-buffer` in `meshdns serve --help`.
pub const DEFAULT_UDP_RECV_BUFFER: usize = 208 << 10;

pub struct DnsServer {
    tcp: std::net::TcpListener,
    tcp_limits: TcpLimits,
    udp_sched_slice: SliceMode,
    /// One per primary reader thread.
    udp: Vec<Arc<std::net::UdpSocket>>,
    /// Standby readers of `udp[0]` (`Workers::Auto`).
    standby: usize,
    handler: Arc<Handler>,
    local_addr: SocketAddr,
}

impl DnsServer {
    /// Binds the UDP sockets `workers` asks for, sharing the address
    /// (`SO_REUSEPORT`: the kernel spreads clients over them), then TCP on
    /// the same port (the port UDP got, for port 0; if TCP has that port
    /// taken, another try).
    pub fn bind(addr: SocketAddr, handler: Handler, config: Config) -> anyhow::Result<Self> {
        let Config {
            workers,
            udp_recv_buffer,
            udp_sched_slice,
            tcp: tcp_limits,
        } = config;
        let (sockets, standby) = workers.layout();
        let mut tries = if addr.port() == 0 { 10 } else { 1 };
        let (udp, tcp, local_addr) = loop {
            tries -= 1;
            let first = udp_socket(addr, udp_recv_buffer).with_context(|| format!("cannot bind UDP {addr}"))?;
            let local_addr = first.local_addr()?;
            let mut udp = vec![Arc::new(first)];
            for _ in 1..sockets {
                udp.push(Arc::new(udp_socket(local_addr, udp_recv_buffer).with_context(
                    || format!("cannot bind another UDP socket to {local_addr}"),
                )?));
            }
            match tcp_listener(local_addr) {
                Ok(tcp) => break (udp, tcp, local_addr),
                Err(e) if tries > 0 && e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot bind TCP {local_addr}")),
            }
        };
        Ok(Self {
            tcp,
            tcp_limits,
            udp_sched_slice,
            udp,
            standby,
            handler: Arc::new(handler),
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The handler every transport answers through, for another listener
    /// ([`grpc::GrpcServer`]) to share.
    pub fn handler(&self) -> Arc<Handler> {
        self.handler.clone()
    }

    /// Serves until a listener fails: each UDP socket's reader on a thread
    /// of its own (and the standby readers on theirs), TCP on another with
    /// its own runtime.
    pub async fn run(self) -> anyhow::Result<()> {
        let Self {
            tcp,
            tcp_limits,
            udp_sched_slice,
            udp,
            standby,
            handler,
            local_addr,
        } = self;
        let (failed_tx, mut failed_rx) = tokio::sync::mpsc::unbounded_channel();
        let sampler = count_queue_drops(udp.clone(), handler.clone());
        let standby = Arc::new(Standby::new(standby, handler.metrics().standby().clone()));
        let slice = SliceSwitch::new(udp_sched_slice, handler.metrics().short_slice().clone());
        let slice_watch = slice::watch(slice.clone());
        let spawn_udp = |name: String, serve: Box<dyn FnOnce() -> std::io::Result<()> + Send>| {
            let failed = failed_tx.clone();
            std::thread::Builder::new().name(name).spawn(move || {
                let error = serve().err().unwrap_or_else(|| std::io::Error::other("stopped"));
                let _ = failed.send(error);
            })
        };
        // Standby readers first: each must be attached before a reader can
        // wake it.
        for i in 0..standby.len() {
            let (socket, handler, s, slice) = (udp[0].clone(), handler.clone(), standby.clone(), slice.clone());
            let thread = spawn_udp(
                format!("dns-udp-sb{i}"),
                Box::new(move || udp::serve_standby(&socket, &handler, &s, i, &slice)),
            )?;
            standby.attach(i, thread.thread().clone());
        }
        for (i, socket) in udp.into_iter().enumerate() {
            let (handler, s, slice) = (handler.clone(), standby.clone(), slice.clone());
            spawn_udp(
                format!("dns-udp-{i}"),
                Box::new(move || udp::serve(&socket, &handler, &s, &slice)),
            )?;
        }
        let (tcp_failed_tx, mut tcp_failed_rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::Builder::new().name("dns-tcp".into()).spawn(move || {
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|rt| {
                    rt.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(tcp)?;
                        tcp::serve(listener, handler, tcp_limits).await
                    })
                });
            let _ = tcp_failed_tx.send(served.err().unwrap_or_else(|| std::io::Error::other("stopped")));
        })?;
        tokio::select! {
            Some(e) = tcp_failed_rx.recv() => Err(anyhow!(e).context(format!("TCP {local_addr} failed"))),
            Some(e) = failed_rx.recv() => Err(anyhow!(e).context(format!("a UDP reader on {local_addr} failed"))),
            () = sampler => unreachable!("the drop counter runs forever"),
            () = slice_watch => unreachable!("the slice switch is watched forever"),
        }
    }
}

/// Adds the kernel's full-queue drops on each UDP socket to
/// `meshdns_dns_dropped_total{reason="queue_full"}` every second.
async fn count_queue_drops(sockets: Vec<Arc<std::net::UdpSocket>>, handler: Arc<Handler>) {
    let mut seen = vec![0u32; sockets.len()];
    let mut tick = tokio::time::interval(DROPS_SAMPLE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (socket, seen) in sockets.iter().zip(&mut seen) {
            match crate::sys::sockstat::drops(socket) {
                Ok(now) => {
                    // The kernel's counter is a u32 that wraps.
                    handler
                        .metrics()
                        .dropped_n(DropReason::QueueFull, u64::from(now.wrapping_sub(*seen)));
                    *seen = now;
                }
                Err(error) => {
                    debug!(%error, "cannot read UDP socket drops; not counting them");
                    return std::future::pending().await;
                }
            }
        }
    }
}

/// Connections the kernel completes before we accept them.
const TCP_BACKLOG: i32 = 1024;

fn tcp_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(TCP_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// A UDP socket for `addr` that sends answers whole with DF set, whatever
/// ICMP says ([`crate::sys::pmtu`]).
fn udp_socket(addr: SocketAddr, recv_buffer: usize) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    // Linux doubles the value it is given (half for its own overhead) and
    // reports the doubled size back.
    socket.set_recv_buffer_size(recv_buffer / 2)?;
    let got = socket.recv_buffer_size()?;
    if got < recv_buffer {
        warn!(
            requested = recv_buffer,
            got, "UDP receive buffer capped by the kernel; raise net.core.rmem_max to allow more"
        );
    }
    socket.bind(&addr.into())?;
    let socket: std::net::UdpSocket = socket.into();
    crate::sys::pmtu::ignore_path_mtu(&socket)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_sockets_ignore_spoofable_path_mtu() {
        let socket = udp_socket("127.0.0.1:0".parse().unwrap(), 208 * 1024).unwrap();
        assert!(crate::sys::pmtu::ignores_path_mtu(&socket).unwrap());
    }
}
