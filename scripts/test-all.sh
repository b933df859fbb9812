#!/usr/bin/env bash
# Every test meshdns has: formatting, lints, unit tests, the in-process DNS
# server tests, and the end-to-end tests (release binary with dig, kdig,
# dnsmasq, unbound and Knot DNS as a reference). Installs missing Debian
# packages first (needs root or passwordless apt).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
# The end-to-end tier must not skip here: the tools were just installed.
MESHDNS_E2E_REQUIRED=1 cargo test --locked --release --all-targets
