#!/usr/bin/env bash
# Supply-chain checks of Cargo.lock, offline:
# - cargo audit against a RustSec advisory snapshot (default ../shared/advisory-db
#   beside the checkout; MESHDNS_ADVISORY_DB overrides). Warnings (unmaintained,
#   unsound) fail too; accepted ones are listed with a reason in .cargo/audit.toml.
# - cargo deny: licenses, banned and duplicate crates, and sources (deny.toml).
set -euo pipefail
cd "$(dirname "$0")/.."

db="${MESHDNS_ADVISORY_DB:-../shared/advisory-db}"
if [ ! -d "$db/crates" ]; then
  echo "supply-chain: no RustSec advisory snapshot at $db (expected its crates/ tree)." >&2
  echo "  Put a copy of github.com/rustsec/advisory-db there, or set MESHDNS_ADVISORY_DB." >&2
  exit 1
fi

bin="$(scripts/install-tools.sh)"
"$bin/cargo-audit" audit --no-fetch --stale --db "$db" --file Cargo.lock --deny warnings
"$bin/cargo-deny" --locked check licenses bans sources
