#!/usr/bin/env bash
# Builds the static (musl) meshdns binary that the image ships. The
# Dockerfile's build stage and tests/image.rs both call this script, so what
# the test runs is what the image holds.
#
#   scripts/build-static.sh ARCH OUT
#
# ARCH is a Docker TARGETARCH, amd64 or arm64. OUT is where the binary goes.
#
# Both architectures build the same way, from any host: cargo-zigbuild with
# zig as the C compiler and linker for the musl target (ring has C code), so
# an amd64 host builds arm64 and the reverse. The tools are pinned and kept
# under $MESHDNS_TOOLS (default ~/.cache/meshdns/tools); the first run
# installs them: the rustup target, zig from PyPI (the `ziglang` package, in
# a venv) and cargo-zigbuild from crates.io. Needs python3 with venv.
#
# CARGO_TARGET_DIR is honoured; the build is `--locked --release`.
set -euo pipefail

ZIG_VERSION=0.15.2
ZIGBUILD_VERSION=0.24.1

usage() { echo "usage: $0 amd64|arm64 OUT" >&2; exit 2; }
[ $# -eq 2 ] || usage
arch=$1
out=$2
case "$arch" in
  amd64) target=x86_64-unknown-linux-musl ;;
  arm64) target=aarch64-unknown-linux-musl ;;
  *) echo "build-static: unknown architecture '$arch' (amd64 or arm64)" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."
tools=${MESHDNS_TOOLS:-$HOME/.cache/meshdns/tools}
mkdir -p "$tools"

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "build-static: $1 not found: $2" >&2; exit 1; }
}
need cargo "install Rust with rustup"
need rustup "the musl targets come from rustup (rustup target add $target)"
need python3 "zig comes from PyPI's ziglang package and needs python3 with venv"

# One installer at a time: tests/image.rs builds both architectures at once.
exec 9>"$tools/.lock"
flock 9

if ! rustup target list --installed | grep -qx "$target"; then
  echo "build-static: rustup target add $target"
  rustup target add "$target"
fi

# zig, in a venv of its own so that nothing else on the machine changes.
venv=$tools/zig-$ZIG_VERSION
if ! "$venv/bin/python3" -m ziglang version 2>/dev/null | grep -qx "$ZIG_VERSION"; then
  echo "build-static: installing zig $ZIG_VERSION (PyPI ziglang) into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" \
    || { echo "build-static: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "ziglang==$ZIG_VERSION"
fi

zigbuild=$tools/cargo-zigbuild-$ZIGBUILD_VERSION
if ! "$zigbuild/bin/cargo-zigbuild" --version 2>/dev/null | grep -q " $ZIGBUILD_VERSION\$"; then
  echo "build-static: installing cargo-zigbuild $ZIGBUILD_VERSION into $zigbuild"
  cargo install --quiet --locked --root "$zigbuild" cargo-zigbuild --version "$ZIGBUILD_VERSION"
fi

flock -u 9

# cargo-zigbuild finds zig as `python3 -m ziglang` with the venv first on PATH.
export PATH="$venv/bin:$zigbuild/bin:$PATH"
target_dir=${CARGO_TARGET_DIR:-target}
echo "build-static: cargo zigbuild --locked --release --target $target"
start=$(date +%s)
cargo zigbuild --locked --release --target "$target"
mkdir -p "$(dirname "$out")"
cp "$target_dir/$target/release/meshdns" "$out"
echo "build-static: $out ($arch, $(stat -c %s "$out") bytes, $(( $(date +%s) - start )) s)"
