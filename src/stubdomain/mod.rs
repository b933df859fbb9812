//! `meshdns stub-domain`: points cluster DNS at the meshdns Service, once,
//! beside the data path (it serves nothing).
//!
//! It reads the Service's ClusterIP, then edits whichever of the CoreDNS
//! and kube-dns ConfigMaps exist: [`corefile`] adds or replaces a server
//! block per zone in `Corefile`, [`kubedns`] merges the zones into
//! `stubDomains`. [`cluster`] does the reading and the writing (optimistic
//! concurrency, bounded retries on conflict), and [`diff`] shows a dry run.
//! The edits are pure functions; only `cluster` talks to the API server.

pub mod cluster;
pub mod corefile;
pub mod diff;
pub mod kubedns;

use std::fmt;
use std::str::FromStr;

pub use self::cluster::run;
use crate::index::name;
use crate::source::kube::KubeOptions;

/// `NAMESPACE/NAME` of a Service or ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub namespace: String,
    pub name: String,
}

impl FromStr for ObjectRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => Ok(Self {
                namespace: ns.into(),
                name: name.into(),
            }),
            _ => Err(format!("{s:?} is not NAMESPACE/NAME")),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What `meshdns stub-domain` is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub service: ObjectRef,
    /// Normalized (see [`zone`] and [`reverse_zone`]), forward zones first.
    pub zones: Vec<String>,
    pub coredns: ObjectRef,
    pub kube_dns: ObjectRef,
    pub force: bool,
    pub dry_run: bool,
    pub kube: KubeOptions,
}

/// A `--zone` as cluster DNS keys it: lower case, no trailing dot.
pub fn zone(value: &str) -> Result<String, String> {
    match name::normalize_host(value) {
        Ok(n) if n.starts_with('*') => Err("a zone cannot be a wildcard".into()),
        Ok(n) => Ok(n.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// A `--reverse-zone`: a name under `in-addr.arpa` or `ip6.arpa`, or a CIDR
/// prefix on a label boundary (`240.0.0.0/8` → `240.in-addr.arpa`), read
/// exactly as `serve --reverse-zone` reads it.
pub fn reverse_zone(value: &str) -> Result<String, String> {
    crate::index::reverse::parse_zone(value).map(|z| z.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_refs() {
        let r: ObjectRef = "kube-system/meshdns".parse().unwrap();
        assert_eq!((r.namespace.as_str(), r.name.as_str()), ("kube-system", "meshdns"));
        assert_eq!(r.to_string(), "kube-system/meshdns");
        for bad in ["meshdns", "/x", "x/", "a/b/c"] {
            assert!(bad.parse::<ObjectRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn zones() {
        assert_eq!(zone("Global.").unwrap(), "global");
        assert!(zone("*.global").is_err());
        assert!(zone("a..b").is_err());
    }

    #[test]
    fn reverse_zones() {
        for (value, want) in [
            ("240.in-addr.arpa", "240.in-addr.arpa"),
            ("240.IN-ADDR.arpa.", "240.in-addr.arpa"),
            ("240.0.0.0/8", "240.in-addr.arpa"),
            ("10.1.0.0/16", "1.10.in-addr.arpa"),
            ("10.1.2.3/32", "3.2.1.10.in-addr.arpa"),
            ("fd00::/8", "d.f.ip6.arpa"),
            ("2001:db8::/32", "8.b.d.0.1.0.0.2.ip6.arpa"),
        ] {
            assert_eq!(reverse_zone(value).as_deref(), Ok(want), "{value}");
        }
        assert!(reverse_zone("240.0.0.0/12").unwrap_err().contains("label boundary"));
        assert!(reverse_zone("240.0.0.0/0").unwrap_err().contains("label boundary"));
        assert!(reverse_zone("fd00::/6").unwrap_err().contains("label boundary"));
        assert!(reverse_zone("240.1.0.0/8").unwrap_err().contains("below the prefix"));
        assert!(reverse_zone("global").unwrap_err().contains("not a reverse zone"));
        assert!(reverse_zone("x/8").is_err());
    }
}
