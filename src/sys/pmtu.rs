//! Path-MTU discovery off for the UDP sockets, with the Don't Fragment bit
//! on: `IP_MTU_DISCOVER` / `IPV6_MTU_DISCOVER` set to `*_PMTUDISC_PROBE`.
//!
//! Linux's default for UDP (`PMTUDISC_WANT`) sets DF too, but lets an ICMP
//! "fragmentation needed" message, which anyone can spoof, lower the path
//! MTU the kernel remembers for a peer; answers to that peer larger than it
//! then leave in fragments, which is what fragment-based cache poisoning
//! needs. `PROBE` ignores the remembered path MTU and sends every answer
//! whole with DF set, as RFC 9715 recommends for DNS responders. Answers
//! never exceed the 1232-byte EDNS payload we advertise, so they fit any
//! link a cluster runs on. With DF and no fragmenting possible, the kernel
//! also stops hashing an IPv4 identification for every datagram (it sends 0).
//!
//! Why it is sound: `setsockopt` and `getsockopt` get a pointer to a local
//! `c_int` and its exact size, and the socket is borrowed for the call.

use std::io;
use std::mem;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

/// One family's option: where it lives and the value that turns it on.
struct Opt {
    level: libc::c_int,
    name: libc::c_int,
    probe: libc::c_int,
}

const V4: Opt = Opt {
    level: libc::IPPROTO_IP,
    name: libc::IP_MTU_DISCOVER,
    probe: libc::IP_PMTUDISC_PROBE,
};
const V6: Opt = Opt {
    level: libc::IPPROTO_IPV6,
    name: libc::IPV6_MTU_DISCOVER,
    probe: libc::IPV6_PMTUDISC_PROBE,
};

/// Sends every datagram of `socket` whole, with DF, whatever ICMP said.
/// An IPv6 socket also gets the IPv4 setting, which its IPv4-mapped peers
/// (a dual-stack `[::]` address) go by; a kernel that refuses it there has
/// nothing to apply it to.
pub fn ignore_path_mtu(socket: &UdpSocket) -> io::Result<()> {
    if socket.local_addr()?.is_ipv4() {
        set(socket, V4)
    } else {
        set(socket, V6)?;
        let _ = set(socket, V4);
        Ok(())
    }
}

/// Whether [`ignore_path_mtu`] is in force on `socket` (for IPv6, the
/// IPv6 setting).
pub fn ignores_path_mtu(socket: &UdpSocket) -> io::Result<bool> {
    let opt = if socket.local_addr()?.is_ipv4() { V4 } else { V6 };
    get(socket, opt)
}

fn set(socket: &UdpSocket, opt: Opt) -> io::Result<()> {
    // SAFETY: see the module docs.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            opt.level,
            opt.name,
            (&opt.probe as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `opt` is set to its probe value on `socket`.
fn get(socket: &UdpSocket, opt: Opt) -> io::Result<bool> {
    let mut value: libc::c_int = -1;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: see the module docs.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            opt.level,
            opt.name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value == opt.probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_socket(addr: &str) -> UdpSocket {
        UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"))
    }

    #[test]
    fn the_default_honours_icmp_and_ours_does_not() {
        let v4 = mk_socket("127.0.0.1:0");
        assert!(!ignores_path_mtu(&v4).unwrap());
        ignore_path_mtu(&v4).unwrap();
        assert!(ignores_path_mtu(&v4).unwrap());
    }

    #[test]
    fn so_does_an_ipv6_socket_for_both_families() {
        let v6 = mk_socket("[::1]:0");
        assert!(!ignores_path_mtu(&v6).unwrap());
        ignore_path_mtu(&v6).unwrap();
        assert!(ignores_path_mtu(&v6).unwrap());
        // IPv4-mapped peers of a dual-stack socket go by the IPv4 option.
        assert!(get(&v6, V4).unwrap());
    }
}
