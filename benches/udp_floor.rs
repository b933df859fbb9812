//! The latency floor for `load.py`: a UDP responder that does no DNS work.
//!
//! It sends each datagram straight back with the QR bit set and RCODE
//! NOERROR, one `recv_from`/`send_to` per datagram on one thread. Whatever
//! latency it shows under dnsperf is the machine's own (scheduler, idle CPU
//! wake-up, loopback), so a server's p99 can be read against it. Its socket
//! sends as meshdns's do (DF set, path MTU ignored: `meshdns::sys::pmtu`),
//! so the kernel's work per answer is the same.
//!
//! Usage: `udp_floor 127.0.0.1:PORT`. Runs until killed.

use std::net::UdpSocket;

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:5300".to_owned());
    let socket = UdpSocket::bind(&addr)?;
    meshdns::sys::pmtu::ignore_path_mtu(&socket)?;
    let mut buf = [0u8; 4096];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n < 12 {
            continue;
        }
        buf[2] |= 0x80; // QR: a response
        buf[3] &= 0xf0; // RCODE: NOERROR
        // A full send buffer or a vanished peer loses one answer, as for any server.
        let _ = socket.send_to(&buf[..n], peer);
    }
}
