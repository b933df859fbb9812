//! The slice of Istio's `networking.istio.io` ServiceEntry that meshdns reads.
//! Unknown fields are ignored, so every served API version (v1, v1beta1,
//! v1alpha3) deserializes into the same type.

use serde::Deserialize;

use crate::index::name::printable;

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
    /// control characters escaped (see [`crate::index::name::printable`]).
    pub fn display_name(&self) -> String {
        let (ns, name) = (self.namespace(), &self.metadata.name);
        format!("{}/{}", printable(ns), printable(name))
    }

    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("default")
    }
}

/// True for `apiVersion: networking.istio.io/<any version>`.
pub fn is_istio_networking(api_version: &str) -> bool {
    api_version.split_once('/').is_some_and(|(group, _)| group == GROUP)
}
