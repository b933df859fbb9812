#!/usr/bin/env bash
# Every test meshdns has: formatting, lints, unit tests, the in-process DNS
# server tests, and the end-to-end tests (release binary with dig, kdig,
# dnsmasq, unbound and Knot DNS as a reference; a real kube-apiserver and
# etcd). Installs missing Debian packages and builds kube-apiserver from
# Debian's source package on first use (cached under ~/.cache/meshdns).
# Needs root for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh
tests/kube/apiserver.sh build

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
# The load smoke test's latency floor; `cargo test` builds examples only as tests.
cargo build --locked --release --example udp_floor
# The end-to-end tiers must not skip here: the tools were just installed.
# --include-ignored: the tests that need outside tools (tests/image.rs builds
# and runs the image's static binaries for amd64 and arm64).
MESHDNS_E2E_REQUIRED=1 MESHDNS_KUBE_REQUIRED=1 cargo test --locked --release --all-targets -- --include-ignored
