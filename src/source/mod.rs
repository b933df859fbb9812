//! Where ServiceEntries come from. Each source converts what it reads
//! (see [`crate::index::convert`]) and hands entries to the index under its
//! own [`crate::index::SourceId`].

pub mod file;
pub mod manifest;
