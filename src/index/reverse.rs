//! Reverse zones (`--reverse-zone`): PTR records for served addresses.
//!
//! The forward table cannot map an address to its hosts cheaply, so the
//! index keeps a second persistent map, address → hosts, ordered by
//! address ([`PtrMap`], an `imbl` B-tree shared between table versions):
//! one update copies O(log N) tree nodes per address it touches. Empty
//! non-terminals (`0.240.in-addr.arpa` above `1.0.0.240.in-addr.arpa`)
//! are not stored: a reverse name names an address range, and it exists
//! when a range query finds an address in it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Address → the hosts whose PTR it serves, in conflict order.
pub type PtrMap = imbl::OrdMap<IpAddr, Arc<[Arc<str>]>>;

/// Most PTR records one address serves: with 255-octet targets and
/// uncompressed 74-octet owners, 128 of them still fit one 64 KiB message.
pub const MAX_PTR_PER_ADDRESS: usize = 128;

/// What a name in a reverse zone names: the addresses from `.0` to `.1`
/// (one address when its name is complete).
#[derive(Debug, PartialEq)]
pub enum Named {
    Address(IpAddr),
    Range(IpAddr, IpAddr),
    /// Not a reverse name, or not canonical (`01`, a nibble `A0`).
    Nothing,
}

fn suffix_is(labels: &[&[u8]], suffix: &[&[u8]]) -> bool {
    labels.len() >= suffix.len()
        && labels[labels.len() - suffix.len()..]
            .iter()
            .zip(suffix)
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
}

/// The addresses `labels` (a whole name, no root label) names under
/// `in-addr.arpa` or `ip6.arpa`.
pub fn named(labels: &[&[u8]]) -> Named {
    if suffix_is(labels, &[b"in-addr", b"arpa"]) {
        let parts = &labels[..labels.len() - 2];
        if parts.len() > 4 {
            return Named::Nothing;
        }
        let mut lo = [0u8; 4];
        for (i, label) in parts.iter().rev().enumerate() {
            // Canonical decimal only: `01` is no reverse name of any address.
            let Some(octet) = std::str::from_utf8(label)
                .ok()
                .filter(|s| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit()))
                .filter(|s| s.len() == 1 || !s.starts_with('0'))
                .and_then(|s| s.parse::<u8>().ok())
            else {
                return Named::Nothing;
            };
            lo[i] = octet;
        }
        let mut hi = lo;
        hi[parts.len()..].fill(255);
        if parts.len() == 4 {
            return Named::Address(Ipv4Addr::from(lo).into());
        }
        Named::Range(Ipv4Addr::from(lo).into(), Ipv4Addr::from(hi).into())
    } else if suffix_is(labels, &[b"ip6", b"arpa"]) {
        let parts = &labels[..labels.len() - 2];
        if parts.len() > 32 {
            return Named::Nothing;
        }
        let mut lo: u128 = 0;
        for (i, label) in parts.iter().rev().enumerate() {
            let [c] = label else { return Named::Nothing };
            let Some(nibble) = (*c as char).to_digit(16) else {
                return Named::Nothing;
            };
            lo |= u128::from(nibble) << (124 - 4 * i);
        }
        if parts.len() == 32 {
            return Named::Address(Ipv6Addr::from(lo).into());
        }
        let hi = lo | (u128::MAX >> (4 * parts.len()));
        Named::Range(Ipv6Addr::from(lo).into(), Ipv6Addr::from(hi).into())
    } else {
        Named::Nothing
    }
}

/// The reverse name of `addr`, without the trailing dot.
pub fn reverse_name(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => {
            let [a, b, c, d] = a.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(a) => {
            let mut out = String::with_capacity(72);
            for byte in a.octets().iter().rev() {
                out.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
                out.push('.');
                out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
                out.push('.');
            }
            out.push_str("ip6.arpa");
            out
        }
    }
}

/// A `--reverse-zone` value as a normalized zone name: a name under
/// `in-addr.arpa` or `ip6.arpa` (whole octets or nibbles), or a CIDR
/// prefix on label boundaries (`240.0.0.0/8`, `fd00::/8`).
pub fn parse_zone(value: &str) -> Result<Arc<str>, String> {
    if let Some((addr, len)) = value.split_once('/') {
        let addr: IpAddr = addr.parse().map_err(|_| format!("{addr:?} is not an IP address"))?;
        let len: u32 = len.parse().map_err(|_| format!("{len:?} is not a prefix length"))?;
        let (step, max) = match addr {
            IpAddr::V4(_) => (8, 32),
            IpAddr::V6(_) => (4, 128),
        };
        if len > max || !len.is_multiple_of(step) || len == 0 {
            return Err(format!(
                "/{len} is not on a label boundary (IPv4: /8, /16, /24, /32; IPv6: a multiple of 4 from /4 to /128)"
            ));
        }
        let full = reverse_name(addr);
        // Drop the labels below the prefix: one per octet or nibble.
        let drop = ((max - len) / step) as usize;
        let start = full
            .match_indices('.')
            .nth(drop.wrapping_sub(1))
            .map_or(0, |(i, _)| i + 1);
        let zone = if drop == 0 { &full[..] } else { &full[start..] };
        let host_bits = match addr {
            IpAddr::V4(a) => u128::from(u32::from(a) & (u32::MAX.checked_shr(len).unwrap_or(0))),
            IpAddr::V6(a) => u128::from(a) & u128::MAX.checked_shr(len).unwrap_or(0),
        };
        if host_bits != 0 {
            return Err(format!("{value:?} has bits set below the prefix"));
        }
        return Ok(zone.into());
    }
    let name = super::name::normalize_host(value).map_err(|e| e.to_string())?;
    let labels: Vec<&[u8]> = name.split('.').map(str::as_bytes).collect();
    match named(&labels) {
        Named::Range(..) | Named::Address(_) if labels.len() > 2 => Ok(name.as_str().into()),
        _ => Err("not a reverse zone: a name under in-addr.arpa or ip6.arpa (whole octets or nibbles), or a CIDR prefix such as 240.0.0.0/8".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(name: &str) -> Vec<&[u8]> {
        name.split('.').map(str::as_bytes).collect()
    }

    #[test]
    fn names_and_ranges() {
        assert_eq!(
            named(&labels("1.0.0.240.in-addr.arpa")),
            Named::Address("240.0.0.1".parse().unwrap())
        );
        assert_eq!(
            named(&labels("0.240.IN-ADDR.arpa")),
            Named::Range("240.0.0.0".parse().unwrap(), "240.0.255.255".parse().unwrap())
        );
        assert_eq!(named(&labels("01.0.0.240.in-addr.arpa")), Named::Nothing);
        assert_eq!(named(&labels("256.0.0.240.in-addr.arpa")), Named::Nothing);
        assert_eq!(named(&labels("1.1.0.0.240.in-addr.arpa")), Named::Nothing);
        let v6: IpAddr = "fd00::1".parse().unwrap();
        let rev = reverse_name(v6);
        assert_eq!(named(&labels(&rev)), Named::Address(v6));
        assert_eq!(named(&labels(&rev.to_uppercase())), Named::Address(v6));
        assert_eq!(
            named(&labels("d.f.ip6.arpa")),
            Named::Range(
                "fd00::".parse().unwrap(),
                "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap()
            )
        );
        assert_eq!(named(&labels("ab.ip6.arpa")), Named::Nothing);
        assert_eq!(reverse_name("240.0.0.1".parse().unwrap()), "1.0.0.240.in-addr.arpa");
    }

    #[test]
    fn zone_flag() {
        assert_eq!(&*parse_zone("240.in-addr.arpa").unwrap(), "240.in-addr.arpa");
        assert_eq!(&*parse_zone("240.0.0.0/8").unwrap(), "240.in-addr.arpa");
        assert_eq!(&*parse_zone("10.1.0.0/16").unwrap(), "1.10.in-addr.arpa");
        assert_eq!(&*parse_zone("10.1.2.3/32").unwrap(), "3.2.1.10.in-addr.arpa");
        assert_eq!(&*parse_zone("fd00::/8").unwrap(), "d.f.ip6.arpa");
        assert_eq!(&*parse_zone("2001:db8::/32").unwrap(), "8.b.d.0.1.0.0.2.ip6.arpa");
        assert!(parse_zone("240.0.0.0/12").unwrap_err().contains("label boundary"));
        assert!(parse_zone("fd00::/6").unwrap_err().contains("label boundary"));
        assert!(parse_zone("240.1.0.0/8").unwrap_err().contains("below the prefix"));
        assert!(parse_zone("global").unwrap_err().contains("not a reverse zone"));
        assert!(parse_zone("in-addr.arpa").unwrap_err().contains("not a reverse zone"));
        assert!(parse_zone("x.in-addr.arpa").unwrap_err().contains("not a reverse zone"));
    }
}
