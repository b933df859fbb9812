//! Where ServiceEntries come from: files ([`file`]) and the Kubernetes API
//! ([`kube`]). Each source converts what it reads
//! (see [`crate::index::convert`]) and hands entries to the index under its
//! own [`crate::index::SourceId`].

pub mod file;
pub mod kube;
pub mod manifest;
