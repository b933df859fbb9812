//! The UDP transport: blocking receive loops, datagrams taken and answered
//! in batches (no task per packet). [`serve`] is a socket's primary reader;
//! under `--workers auto` [`serve_standby`] runs beside it on other threads,
//! parked until a backlog wakes them (see [`super::standby`]). Packets that
//! must get no reply are dropped here, before any parsing; short ones and
//! responses are counted (`meshdns_dns_dropped_total`), those from port 0
//! or from a peer without an IP address are not. Between batches each
//! reader follows the scheduler-slice switch ([`super::slice`]).

use std::io;
use std::net::{SocketAddr, UdpSocket};

use hickory_server::net::xfer::Protocol;
use tracing::{debug, warn};

use super::edns::EDNS_PAYLOAD;
use super::fast::Lookahead;
use super::handler::{Handler, parse};
use super::metrics::{Proto, UdpRecorder};
use super::slice::SliceSwitch;
use super::standby::{self, Backlog, Standby};
use crate::index::Table;
use crate::sys::mmsg::{Received, RecvBatch, SendBatch};
use crate::sys::sockstat::drops;

/// Serves one socket on the calling thread until it fails for good. The
/// socket blocks: the first datagram wakes this thread straight from the
/// kernel, with no event loop in between. Everything else already queued
/// comes with it, up to [`crate::sys::mmsg::BATCH`], and the replies leave
/// together. A backlog that lasts, or a drop, wakes one of `standby`'s
/// readers, if any sleeps ([`standby::Backlog`]).
pub fn serve(socket: &UdpSocket, handler: &Handler, standby: &Standby, slice: &SliceSwitch) -> io::Result<()> {
    socket.set_nonblocking(false)?;
    let mut slice = slice.reader();
    let mut batch = Batch::new(handler);
    let mut backlog = Backlog::default();
    loop {
        slice.follow();
        let Some(n) = received(batch.rx.recv(socket))? else {
            continue;
        };
        // With no standby (`--workers N`) there is nothing to decide.
        if !standby.is_empty() && backlog.wake(n, || drops(socket).ok()) {
            standby.wake_one();
        }
        batch.answer(n, socket, handler);
    }
}

/// Standby reader `i` of `standby`, on the calling thread, until the socket
/// fails for good: parked until a reader finds a backlog, then reading the
/// same socket without blocking as [`serve`] does, until a read finds
/// little or nothing ([`standby::keep_reading`]), and parked again. It
/// wakes the next standby as [`serve`] does, so a flood brings in every
/// core.
pub fn serve_standby(
    socket: &UdpSocket,
    handler: &Handler,
    standby: &Standby,
    i: usize,
    slice: &SliceSwitch,
) -> io::Result<()> {
    let mut slice = slice.reader();
    standby.wait(i);
    // Allocated on the first wake-up: a standby that never wakes costs none.
    let mut batch = Batch::new(handler);
    let mut backlog = Backlog::default();
    loop {
        slice.follow();
        let read = match batch.rx.try_recv(socket) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            read => read,
        };
        let Some(n) = received(read)? else {
            continue;
        };
        if backlog.wake(n, || drops(socket).ok()) {
            standby.wake_one();
        }
        batch.answer(n, socket, handler);
        if !standby::keep_reading(n) {
            standby.park(i);
        }
    }
}

/// A read's datagram count; `None` after an error that concerns one peer,
/// not the socket (ICMP errors and the like): read again.
fn received(read: io::Result<usize>) -> io::Result<Option<usize>> {
    match read {
        Ok(n) => Ok(Some(n)),
        Err(e) if is_transient(&e) => {
            debug!(error = %e, "UDP receive error");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// One reader's buffers, a received batch and its replies, the fast path's
/// look at the batch, and what it counts of them.
struct Batch {
    rx: RecvBatch,
    tx: SendBatch,
    fast: Lookahead,
    recorder: UdpRecorder,
}

impl Batch {
    fn new(handler: &Handler) -> Self {
        Self {
            rx: RecvBatch::default(),
            tx: SendBatch::new(EDNS_PAYLOAD as usize),
            fast: Lookahead::default(),
            recorder: handler.metrics().udp_recorder(),
        }
    }

    /// Answers the `n` datagrams received last and sends the replies.
    fn answer(&mut self, n: usize, socket: &UdpSocket, handler: &Handler) {
        // The look ahead is part of the fast answers' time.
        self.recorder.settle();
        // One table for the batch, taken once.
        let table = handler.fast_table();
        if let Some(table) = &table {
            for i in 0..n {
                self.fast.look_ahead(i, self.rx.get(i).data, table);
            }
            // One datagram is answered next anyway: nothing to overlap.
            if n > 1 {
                for i in 0..n {
                    self.fast.prefetch(i, table);
                }
            }
        }
        for i in 0..n {
            let received = self.rx.get(i);
            let Some(src) = received.peer.socket_addr() else {
                continue;
            };
            let fast = table.as_deref().map(|table| (&mut self.fast, i, &**table));
            if answer(&received, src, handler, fast, self.tx.buf(), &mut self.recorder) {
                self.tx.push(received.peer);
            }
        }
        drop(table);
        // Before the replies leave, so that a client that has its answer
        // finds it counted.
        self.recorder.flush();
        if !self.tx.is_empty() {
            self.tx.flush(socket, |peer, error| {
                debug!(%error, peer = ?peer.socket_addr(), "UDP send failed");
            });
        }
    }
}

/// Fills `out` with the reply to `packet`; false when there is none.
/// `fast` is the batch's look ahead, this datagram's place in it, and the
/// table it was taken with; `None` before the index has synced.
fn answer(
    received: &Received<'_>,
    src: SocketAddr,
    handler: &Handler,
    fast: Option<(&mut Lookahead, usize, &Table)>,
    out: &mut Vec<u8>,
    recorder: &mut UdpRecorder,
) -> bool {
    let packet = received.data;
    if let Some(reason) = super::handler::unanswerable(packet) {
        handler.metrics().dropped(reason);
        return false;
    }
    if src.port() == 0 {
        return false;
    }
    if !received.truncated
        && let Some((rcode, qtype)) = fast.and_then(|(ahead, i, table)| ahead.respond(i, packet, table, out))
    {
        recorder.answered_fast(qtype, rcode, packet.len(), out.len());
        return true;
    }
    // The fast answers before this one are timed up to here, the next from
    // the end of it; the general path times itself.
    recorder.settle();
    let replied = if received.truncated {
        // Larger than any query we answer, and we only have its start.
        debug!(%src, len = packet.len(), "oversized UDP request");
        handler.respond_malformed(Proto::Udp, packet, out)
    } else {
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
    };
    recorder.settle();
    replied
}

fn is_transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    let transient = matches!(e.kind(), ConnectionRefused | ConnectionReset | Interrupted | WouldBlock);
    if !transient {
        warn!(error = %e, "UDP socket error");
    }
    transient
}
