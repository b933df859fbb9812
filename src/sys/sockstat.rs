//! How many datagrams the kernel dropped for one socket because its
//! receive queue was full: `getsockopt(SO_MEMINFO)`, entry
//! `SK_MEMINFO_DROPS`. Those queries never reach us, so this is the only
//! way to count them per socket (`/proc/net/snmp` is machine-wide).
//!
//! Why it is sound: the kernel writes at most `len` bytes into `info`, a
//! local array of that size, and reports how many it wrote; we read the
//! drops entry only when the kernel wrote it.

use std::io;
use std::mem;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

/// `SO_MEMINFO` in asm-generic's socket.h, which both architectures we
/// build for (x86_64, aarch64) use. The `libc` crate does not export it
/// for every target.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const SO_MEMINFO: libc::c_int = 55;
/// Entries in the answer (`SK_MEMINFO_VARS`, Linux 4.16 and later).
const VARS: usize = 9;

/// The socket's drop count since it was made, or an error where the
/// kernel does not report it.
pub fn drops(socket: &UdpSocket) -> io::Result<u32> {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        let mut info = [0u32; VARS];
        let mut len = mem::size_of_val(&info) as libc::socklen_t;
        // SAFETY: see the module docs; `info` outlives the call and `len`
        // is its size in bytes.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_MEMINFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let at = libc::SK_MEMINFO_DROPS as usize;
        if (len as usize) < (at + 1) * mem::size_of::<u32>() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "kernel does not report socket drops",
            ));
        }
        Ok(info[at])
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = (socket, VARS);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_MEMINFO not wired up for this architecture",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_a_full_queue_drops() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket2::SockRef::from(&rx).set_recv_buffer_size(4096).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(drops(&rx).unwrap(), 0);
        for _ in 0..200 {
            tx.send_to(&[0; 64], rx.local_addr().unwrap()).unwrap();
        }
        assert!(drops(&rx).unwrap() > 100, "{}", drops(&rx).unwrap());
    }
}
