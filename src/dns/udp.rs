//! The UDP transport: one blocking receive loop per socket and thread, each
//! packet answered in place (no task per packet). Packets that must get no reply are counted
//! and dropped here, before any parsing.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use std::net::UdpSocket;
use tracing::{debug, warn};

use super::handler::Handler;
use super::metrics::{Drop, Proto};

/// Serves one socket on the calling thread until it fails for good. The
/// socket blocks: a packet wakes this thread straight from the kernel, with
/// no event loop in between, and costs one receive and one send.
pub fn serve(socket: UdpSocket, handler: Arc<Handler>) -> io::Result<()> {
    socket.set_nonblocking(false)?;
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(1232);
    loop {
        let (len, src) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            // ICMP errors and the like concern one peer, not the socket.
            Err(e) if is_transient(&e) => {
                debug!(error = %e, "UDP receive error");
                continue;
            }
            Err(e) => return Err(e),
        };
        if !answer(&buf[..len], src, &handler, &mut out) {
            continue;
        }
        if let Err(e) = socket.send_to(&out, src) {
            debug!(error = %e, %src, "UDP send failed");
        }
    }
}

/// Fills `out` with the reply to `packet`; false when there is none.
fn answer(packet: &[u8], src: SocketAddr, handler: &Handler, out: &mut Vec<u8>) -> bool {
    if packet.len() < 12 {
        handler.metrics().dropped(Drop::Short);
        return false;
    }
    if packet[2] & 0x80 != 0 {
        handler.metrics().dropped(Drop::Response);
        return false;
    }
    if src.port() == 0 {
        return false;
    }
    if handler.respond_fast(packet, out) {
        return true;
    }
    match Request::from_bytes(packet.to_vec(), src, Protocol::Udp) {
        Ok(request) => handler.respond_udp(&request, out),
        Err(error) => {
            debug!(%error, %src, "malformed request");
            handler.metrics().request(Proto::Udp, None, packet.len());
            formerr(packet, out);
            handler.metrics().response(
                hickory_proto::op::ResponseCode::FormErr,
                out.len(),
                false,
                Default::default(),
            );
        }
    }
    true
}

/// A bare FORMERR header echoing the request's ID, opcode and RD bit.
fn formerr(packet: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&packet[..2]);
    out.push(0x80 | (packet[2] & 0x79)); // QR, opcode, RD
    out.push(1); // FORMERR
    out.extend_from_slice(&[0; 8]);
}

fn is_transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    let transient = matches!(e.kind(), ConnectionRefused | ConnectionReset | Interrupted | WouldBlock);
    if !transient {
        warn!(error = %e, "UDP socket error");
    }
    transient
}
