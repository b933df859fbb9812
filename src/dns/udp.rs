//! The UDP transport: one blocking receive loop per socket and thread,
//! datagrams taken and answered in batches (no task per packet). Packets
//! that must get no reply are dropped here, before any parsing; short ones
//! and responses are counted (`meshdns_dns_dropped_total`), those from port
//! 0 or from a peer without an IP address are not.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use hickory_server::net::xfer::Protocol;
use tracing::{debug, warn};

use super::edns::EDNS_PAYLOAD;
use super::handler::{Handler, parse};
use super::metrics::Proto;
use crate::sys::mmsg::{Received, RecvBatch, SendBatch};

/// Serves one socket on the calling thread until it fails for good. The
/// socket blocks: the first datagram wakes this thread straight from the
/// kernel, with no event loop in between. Everything else already queued
/// comes with it, up to [`crate::sys::mmsg::BATCH`], and the replies leave
/// together.
pub fn serve(socket: &UdpSocket, handler: Arc<Handler>) -> io::Result<()> {
    socket.set_nonblocking(false)?;
    let mut rx = RecvBatch::default();
    let mut tx = SendBatch::new(EDNS_PAYLOAD as usize);
    loop {
        let n = match rx.recv(socket) {
            Ok(n) => n,
            // ICMP errors and the like concern one peer, not the socket.
            Err(e) if is_transient(&e) => {
                debug!(error = %e, "UDP receive error");
                continue;
            }
            Err(e) => return Err(e),
        };
        for i in 0..n {
            let received = rx.get(i);
            let Some(src) = received.peer.socket_addr() else {
                continue;
            };
            if answer(&received, src, &handler, tx.buf()) {
                tx.push(received.peer);
            }
        }
        if !tx.is_empty() {
            tx.flush(socket, |peer, error| {
                debug!(%error, peer = ?peer.socket_addr(), "UDP send failed");
            });
        }
    }
}

/// Fills `out` with the reply to `packet`; false when there is none.
fn answer(received: &Received<'_>, src: SocketAddr, handler: &Handler, out: &mut Vec<u8>) -> bool {
    let packet = received.data;
    if let Some(reason) = super::handler::unanswerable(packet) {
        handler.metrics().dropped(reason);
        return false;
    }
    if src.port() == 0 {
        return false;
    }
    if received.truncated {
        // Larger than any query we answer, and we only have its start.
        debug!(%src, len = packet.len(), "oversized UDP request");
        return handler.respond_malformed(Proto::Udp, packet, out);
    }
    if handler.respond_fast(packet, out) {
        return true;
    }
    match parse(packet, src, Protocol::Udp) {
        Ok(request) => {
            handler.respond_udp(&request, out);
            true
        }
        Err(error) => {
            debug!(%error, %src, "malformed request");
            handler.respond_malformed(Proto::Udp, packet, out)
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    let transient = matches!(e.kind(), ConnectionRefused | ConnectionReset | Interrupted | WouldBlock);
    if !transient {
        warn!(error = %e, "UDP socket error");
    }
    transient
}
