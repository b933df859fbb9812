//! The crate's only `unsafe` code: system calls the standard library does
//! not offer. Each submodule says why its code is sound.

pub mod mmsg;
pub mod sched;
pub mod sockstat;
pub mod trim;
