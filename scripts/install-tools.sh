#!/usr/bin/env bash
# Installs the cargo tools the test command and the fuzz script run, at the
# versions pinned here, into ~/.cache/meshdns/tools (or $MESHDNS_TOOLS):
# cargo-audit and cargo-deny (supply-chain checks), and with `fuzz` as an
# argument cargo-fuzz. Builds from crates.io with --locked the first time
# (about 10 minutes on 2 cores); afterwards only checks versions.
# Prints the bin directory to put on PATH.
set -euo pipefail

root="${MESHDNS_TOOLS:-$HOME/.cache/meshdns/tools}"
declare -A want=([cargo-audit]=0.22.2 [cargo-deny]=0.20.2)
if [ "${1:-}" = fuzz ]; then want=([cargo-fuzz]=0.13.2); fi

for tool in "${!want[@]}"; do
  version="${want[$tool]}"
  if "$root/bin/$tool" --version 2>/dev/null | grep -qF " $version"; then
    continue
  fi
  echo "install-tools: building $tool $version into $root" >&2
  cargo install --quiet --locked --root "$root" "$tool@$version" >&2
done
echo "$root/bin"
