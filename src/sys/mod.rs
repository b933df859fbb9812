//! The crate's only `unsafe` code: system calls the standard library does
//! not offer, and a cache prefetch hint. Each submodule says why its code
//! is sound.

pub mod mmsg;
pub mod pmtu;
pub mod prefetch;
pub mod sched;
pub mod sockstat;
pub mod trim;
