//! meshdns: authoritative DNS for Istio multi-cluster `.global` names.
//!
//! The data path, one module each:
//! [`source`] (Kubernetes, files) → [`index`] (ServiceEntry → records,
//! the published table) → [`dns`] (answers from the table, on the wire).
//! [`cli`] wires them together and runs `check`; [`admin`] serves health
//! and metrics. [`stubdomain`], beside the data path, points cluster DNS
//! at meshdns (`meshdns stub-domain`); `cli` → `stubdomain` → `source`,
//! `index`.
//!
//! Imports only run down: `cli` → `source`, `dns`, `admin` → `index` →
//! [`serviceentry`] and [`sys`]. Nothing below imports anything above it,
//! and no two modules import each other.

// The only exception is `sys`, which says why it is sound.
#![deny(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod dns;
pub mod index;
pub mod serviceentry;
pub mod source;
pub mod stubdomain;
#[allow(unsafe_code)]
pub mod sys;
