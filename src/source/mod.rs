//! Where ServiceEntries come from: files ([`file`](mod@file)) and the Kubernetes API
//! ([`kube`]). Each source reads ServiceEntries, converts each one through
//! [`crate::index::Index::convert`] (the one place that converts, counts and
//! logs skips) and hands the entries to the index under its own
//! [`crate::index::SourceId`].

pub mod file;
pub mod kube;
pub mod manifest;
