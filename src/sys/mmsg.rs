//! Batched UDP I/O with Linux `recvmmsg(2)` and `sendmmsg(2)`: one system
//! call moves up to [`BATCH`] datagrams each way, which is where most of a
//! small query's CPU goes.
//!
//! Why it is sound:
//! - Every pointer handed to the kernel (`mmsghdr` → `iovec` → buffer, and
//!   `msg_name` → peer address) points into heap memory owned by the
//!   batch (boxed slices, which never move or grow), so it is valid for as
//!   long as the batch lives. Receive headers are pointed once, at
//!   construction; send headers are re-pointed before each call, because a
//!   reply buffer (a `Vec`) may have grown.
//! - The kernel writes at most `iov_len` bytes to each buffer and at most
//!   `msg_namelen` bytes to each address; we only read back the lengths it
//!   reports, clamped to those sizes.
//! - A peer address (`Addr`, a union of `sockaddr_in` and `sockaddr_in6`)
//!   is read as either only after checking its family and length; any bytes
//!   are a valid value of both, so reading the family first is sound.
//! - The receive flags (`MSG_WAITFORONE`, `MSG_DONTWAIT`) only change when
//!   the call returns, not what the kernel may write: the bounds above hold
//!   for both [`RecvBatch::recv`] and [`RecvBatch::try_recv`].

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

/// Datagrams per system call. A full batch of the fast path is about 10 µs
/// of work, so a reply waits at most that long for its batch to be sent.
pub const BATCH: usize = 32;

/// Receive buffer per datagram. DNS queries are far smaller; a larger one is
/// cut short and flagged [`Received::truncated`].
pub const SLOT: usize = 4096;

/// Room for the address of either family a UDP/IP socket reports: 28
/// bytes where `sockaddr_storage` takes 128, and each datagram's peer is
/// copied on its way to the reply.
#[repr(C)]
#[derive(Clone, Copy)]
union Addr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

/// A client address as the kernel gave it, kept raw so that a reply can be
/// addressed without converting it back.
#[derive(Clone, Copy)]
pub struct Peer {
    storage: Addr,
    len: libc::socklen_t,
}

impl Peer {
    /// `None` for a family other than IPv4/IPv6 (which a UDP/IP socket does
    /// not produce).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let len = self.len as usize;
        // SAFETY: both members start with the family; any bytes are valid.
        let family = unsafe { self.storage.v6.sin6_family };
        match family as libc::c_int {
            libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: family and length checked; plain data.
                let sin = unsafe { &self.storage.v4 };
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                Some(SocketAddrV4::new(ip, u16::from_be(sin.sin_port)).into())
            }
            libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above.
                let sin6 = unsafe { &self.storage.v6 };
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                let port = u16::from_be(sin6.sin6_port);
                Some(SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id).into())
            }
            _ => None,
        }
    }
}

/// One received datagram.
pub struct Received<'a> {
    pub data: &'a [u8],
    pub peer: Peer,
    /// The datagram was longer than [`SLOT`]; `data` holds its start.
    pub truncated: bool,
}

fn empty_peer() -> Peer {
    // SAFETY: all-zero is a valid address of either family (AF_UNSPEC).
    Peer {
        storage: unsafe { mem::zeroed() },
        len: 0,
    }
}

fn empty_hdr() -> libc::mmsghdr {
    // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths).
    unsafe { mem::zeroed() }
}

const STORAGE_LEN: libc::socklen_t = mem::size_of::<Addr>() as libc::socklen_t;

/// What the kernel reads and writes for a batch: per datagram, a header
/// pointing at one `iovec` and one peer address.
struct Slots {
    peers: Box<[Peer]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
}

impl Slots {
    fn new() -> Self {
        let iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        Self {
            peers: vec![empty_peer(); BATCH].into_boxed_slice(),
            iovs: vec![iov; BATCH].into_boxed_slice(),
            hdrs: (0..BATCH).map(|_| empty_hdr()).collect(),
        }
    }

    /// Points slot `i` at `len` bytes from `base` and at its peer address.
    fn point(&mut self, i: usize, base: *mut u8, len: usize) {
        let iov = &mut self.iovs[i];
        iov.iov_base = base.cast();
        iov.iov_len = len;
        let peer = &mut self.peers[i];
        let hdr = &mut self.hdrs[i];
        *hdr = empty_hdr();
        hdr.msg_hdr.msg_name = (&mut peer.storage as *mut Addr).cast();
        hdr.msg_hdr.msg_namelen = peer.len;
        hdr.msg_hdr.msg_iov = iov;
        hdr.msg_hdr.msg_iovlen = 1;
    }
}

/// Receives up to [`BATCH`] datagrams per call.
pub struct RecvBatch {
    bufs: Box<[u8]>,
    slots: Slots,
    len: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        let mut batch = Self {
            bufs: vec![0; BATCH * SLOT].into_boxed_slice(),
            slots: Slots::new(),
            len: 0,
        };
        for i in 0..BATCH {
            batch.slots.peers[i].len = STORAGE_LEN;
            let base = batch.bufs[i * SLOT..].as_mut_ptr();
            batch.slots.point(i, base, SLOT);
        }
        batch
    }
}

impl RecvBatch {
    /// Blocks until at least one datagram has arrived, then takes whatever
    /// else is already queued, up to [`BATCH`] (`MSG_WAITFORONE`). Returns
    /// how many were received.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.recv_with(socket, libc::MSG_WAITFORONE)
    }

    /// Takes what is already queued, up to [`BATCH`], without waiting
    /// (`MSG_DONTWAIT`), even on a blocking socket: another thread may be
    /// blocked in [`recv`](Self::recv) on it. `WouldBlock` when nothing is.
    pub fn try_recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.recv_with(socket, libc::MSG_DONTWAIT)
    }

    fn recv_with(&mut self, socket: &UdpSocket, flags: libc::c_int) -> io::Result<usize> {
        // Undo what the kernel wrote last time; the pointers stay.
        for hdr in &mut self.slots.hdrs[..mem::take(&mut self.len)] {
            hdr.msg_hdr.msg_namelen = STORAGE_LEN;
            hdr.msg_hdr.msg_flags = 0;
        }
        // SAFETY: see the module docs; all BATCH headers point into `self`.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.slots.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                // glibc declares the flags c_int and musl c_uint.
                flags as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.len = (n as usize).min(BATCH);
        Ok(self.len)
    }

    /// The `i`th datagram of the last [`recv`](Self::recv).
    pub fn get(&self, i: usize) -> Received<'_> {
        assert!(i < self.len);
        let hdr = &self.slots.hdrs[i];
        let len = (hdr.msg_len as usize).min(SLOT);
        Received {
            data: &self.bufs[i * SLOT..i * SLOT + len],
            peer: Peer {
                storage: self.slots.peers[i].storage,
                len: hdr.msg_hdr.msg_namelen.min(STORAGE_LEN),
            },
            truncated: hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        }
    }
}

/// Collects up to [`BATCH`] replies and sends them in one call.
pub struct SendBatch {
    bufs: Vec<Vec<u8>>,
    slots: Slots,
    len: usize,
}

impl SendBatch {
    /// `capacity`: the largest reply expected, so that buffers never grow.
    pub fn new(capacity: usize) -> Self {
        Self {
            bufs: (0..BATCH).map(|_| Vec::with_capacity(capacity)).collect(),
            slots: Slots::new(),
            len: 0,
        }
    }

    /// The buffer for the next reply, empty. It is only sent once
    /// [`push`](Self::push)ed. Panics when the batch is full.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        let buf = &mut self.bufs[self.len];
        buf.clear();
        buf
    }

    /// Queues the reply written to [`buf`](Self::buf) for `peer`.
    pub fn push(&mut self, peer: Peer) {
        self.slots.peers[self.len] = peer;
        self.len += 1;
    }

    /// Sends every queued reply; a reply the kernel refuses is skipped and
    /// passed to `failed` with its error. The batch is empty afterwards.
    pub fn flush(&mut self, socket: &UdpSocket, mut failed: impl FnMut(&Peer, io::Error)) {
        let n = mem::take(&mut self.len);
        for i in 0..n {
            let len = self.bufs[i].len();
            self.slots.point(i, self.bufs[i].as_mut_ptr(), len);
        }
        let mut sent = 0;
        while sent < n {
            // SAFETY: see the module docs; entries sent..n initialised above.
            let r = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    self.slots.hdrs[sent..].as_mut_ptr(),
                    (n - sent) as libc::c_uint,
                    0,
                )
            };
            match r {
                // The reply at `sent` failed (or, for 0, was not taken): skip it.
                r if r <= 0 => {
                    let error = if r < 0 {
                        io::Error::last_os_error()
                    } else {
                        io::Error::other("sendmmsg sent nothing")
                    };
                    if error.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    failed(&self.slots.peers[sent], error);
                    sent += 1;
                }
                r => sent += r as usize,
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_recv_takes_what_is_queued_and_never_blocks() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        // A blocking socket, as the primary reader leaves it.
        server.set_nonblocking(false).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut rx = RecvBatch::default();
        let e = rx.try_recv(&server).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        for i in 0..BATCH + 3 {
            client.send_to(&[i as u8; 12], server.local_addr().unwrap()).unwrap();
        }
        assert_eq!(rx.try_recv(&server).unwrap(), BATCH);
        let first = rx.get(0);
        assert_eq!(first.data, &[0; 12]);
        assert_eq!(first.peer.socket_addr(), Some(client.local_addr().unwrap()));
        assert_eq!(rx.try_recv(&server).unwrap(), 3);
        assert_eq!(rx.get(2).data, &[BATCH as u8 + 2; 12]);
        assert_eq!(rx.try_recv(&server).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn ipv6_peers_are_read_and_answered() {
        let server = UdpSocket::bind("[::1]:0").expect("IPv6 loopback");
        let client = UdpSocket::bind("[::1]:0").unwrap();
        client.send_to(b"query", server.local_addr().unwrap()).unwrap();
        let mut rx = RecvBatch::default();
        assert_eq!(rx.recv(&server).unwrap(), 1);
        let query = rx.get(0);
        assert_eq!(query.peer.socket_addr(), Some(client.local_addr().unwrap()));
        let mut tx = SendBatch::new(64);
        tx.buf().extend_from_slice(b"reply");
        tx.push(query.peer);
        tx.flush(&server, |_, e| panic!("send failed: {e}"));
        let mut buf = [0; 16];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"reply"[..], server.local_addr().unwrap()));
    }
}
