#!/usr/bin/env bash
# Every test meshdns has: supply-chain checks (cargo audit against the
# offline RustSec snapshot, cargo deny), formatting, lints, unit tests and the
# fuzz corpora replayed, the in-process DNS
# server tests, and the end-to-end tests (release binary with dig, kdig,
# dnsmasq, unbound and Knot DNS as a reference; a real kube-apiserver and
# etcd). Installs missing Debian packages and builds kube-apiserver from
# Debian's source package, and cargo-audit/cargo-deny from crates.io, on first
# use (cached under ~/.cache/meshdns).
# Needs root for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh
tests/kube/apiserver.sh build
scripts/supply-chain.sh

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
# The load smoke test's latency floor; `cargo test` builds examples only as tests.
cargo build --locked --release --example udp_floor
# Tests that need an outside tool are #[ignore = "needs <tool>"]; here they
# run, and a missing tool fails them (the tools were just installed).
cargo test --locked --release --all-targets -- --include-ignored
