//! The slice of Istio's `networking.istio.io` ServiceEntry that meshdns reads.
//! Unknown fields are ignored, so every served API version (v1, v1beta1,
//! v1alpha3) deserializes into the same type. Also what holds for any text
//! taken from an object: which names the API server accepts, and how to
//! show them safely.

use std::borrow::Cow;

use serde::Deserialize;

pub const GROUP: &str = "networking.istio.io";
pub const KIND: &str = "ServiceEntry";

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntry {
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: Spec,
    #[serde(default)]
    pub status: Option<Status>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    /// RFC 3339 in UTC (`2024-05-01T10:00:00Z`), so it orders as a string.
    #[serde(default)]
    pub creation_timestamp: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub addresses: Vec<String>,
    /// `NONE` (Istio's default when unset), `STATIC`, `DNS`, `DNS_ROUND_ROBIN`.
    #[serde(default)]
    pub resolution: Option<String>,
    /// Namespaces the entry is visible to: `*` all, `.` its own, `~` none,
    /// or namespace names. Unset (or empty) is all, unless the mesh's
    /// `defaultServiceExportTo` says otherwise, which meshdns cannot see.
    #[serde(default)]
    pub export_to: Vec<String>,
    /// Each becomes an SRV record under every served, non-wildcard host.
    #[serde(default)]
    pub ports: Vec<Port>,
}

/// One `spec.ports` item. `number` is read leniently: a value that is not
/// a port number is skipped with a reason, not the whole object refused.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "lenient_number")]
    pub number: Option<i64>,
    /// `HTTP`, `TCP`, `UDP`, …; only `UDP` (in any case) maps to `_udp`.
    #[serde(default)]
    pub protocol: Option<String>,
}

/// An integer, or anything else as `None` (a string, a float).
fn lenient_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient {
        Int(i64),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Lenient::deserialize(d)? {
        Lenient::Int(n) => Some(n),
        Lenient::Other(_) => None,
    })
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Addresses Istio allocated for entries without `spec.addresses`.
    #[serde(default)]
    pub addresses: Vec<StatusAddress>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusAddress {
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub host: Option<String>,
}

impl ServiceEntry {
    /// `namespace/name`, with Kubernetes' `default` namespace when unset,
    /// control characters escaped (see [`printable`]).
    pub fn display_name(&self) -> String {
        let (ns, name) = (self.namespace(), &self.metadata.name);
        format!("{}/{}", printable(ns), printable(name))
    }

    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("default")
    }

    /// Whether every namespace may see the entry: `exportTo` unset or
    /// containing `*`.
    pub fn exported_to_all(&self) -> bool {
        let export_to = &self.spec.export_to;
        export_to.is_empty() || export_to.iter().any(|ns| ns == "*")
    }
}

/// True for `apiVersion: networking.istio.io/<any version>`.
pub fn is_istio_networking(api_version: &str) -> bool {
    api_version.split_once('/').is_some_and(|(group, _)| group == GROUP)
}

/// Text from an object, safe on one log line or terminal: control
/// characters (a newline that would forge a log line, an ANSI escape) are
/// escaped. Most text has none and is passed through.
pub fn printable(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_control) {
        Cow::Owned(text.escape_debug().to_string())
    } else {
        Cow::Borrowed(text)
    }
}

/// Whether `name` is a Kubernetes object name (DNS-1123 subdomain), or with
/// `label` a namespace (DNS-1123 label), as the API server requires.
pub fn is_object_name(name: &str, label: bool) -> bool {
    let max = if label { 63 } else { 253 };
    let ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let (first, last) = (name.bytes().next(), name.bytes().last());
    !name.is_empty()
        && name.len() <= max
        && first.is_some_and(ok)
        && last.is_some_and(ok)
        && name.bytes().all(|c| ok(c) || c == b'-' || (c == b'.' && !label))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_only_control_characters() {
        assert!(matches!(printable("svc.ns.global ünï"), Cow::Borrowed(_)));
        assert_eq!(printable("a\nINFO x\u{1b}[31m"), r"a\nINFO x\u{1b}[31m");
    }

    #[test]
    fn kubernetes_object_names() {
        for ok in ["a", "a-b", "a.b", "0x", &"a".repeat(253)] {
            assert!(is_object_name(ok, false), "{ok}");
        }
        for bad in ["", "A", "a_b", "-a", "a-", "a\n", &"a".repeat(254)] {
            assert!(!is_object_name(bad, false), "{bad}");
        }
        assert!(is_object_name("kube-system", true));
        assert!(!is_object_name("a.b", true) && !is_object_name(&"a".repeat(64), true));
    }
}
