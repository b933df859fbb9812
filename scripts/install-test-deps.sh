#!/usr/bin/env bash
# Installs the tools the tests drive (Debian/Ubuntu, as root): the DNS
# servers and clients of tests/e2e.rs, Prometheus, what tests/image.rs
# runs the image's binary with, the namespace tools and C compilers
# (glibc's and musl's) of tests/podview.rs, and the Python gRPC client of
# tests/grpc.rs.
# Idempotent: only runs apt-get when a tool is missing. The e2e tests use
# their own configs and ports, so the unbound/knot system services these
# packages may start are neither needed nor touched.
set -euo pipefail

# tool -> Debian package
declare -A pkg_for=(
  [dig]=dnsutils
  [kdig]=knot-dnsutils
  [dnsmasq]=dnsmasq-base
  [unbound]=unbound
  [knotd]=knot
  [dnsperf]=dnsperf
  [prometheus]=prometheus
  [promtool]=prometheus
  # tests/image.rs: the image's binary, run as the pod runs it
  [readelf]=binutils
  [bwrap]=bubblewrap
  [setpriv]=util-linux
  [qemu-aarch64-static]=qemu-user-static
  # tests/podview.rs: a pod's resolv.conf in a network namespace, names
  # resolved by glibc and by musl (a C program built with musl-gcc)
  [unshare]=util-linux
  [mount]=mount
  [ip]=iproute2
  [getent]=libc-bin
  [cc]=gcc
  [musl-gcc]=musl-tools
)

# Python module -> Debian package, imported by Debian's /usr/bin/python3.
# tests/grpc.rs: a gRPC client independent of meshdns, its stubs generated
# from tests/grpc/dns.proto by grpc_tools.protoc.
declare -A pymod_for=(
  [grpc]=python3-grpcio
  [grpc_tools.protoc]=python3-grpc-tools
)

have() { PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1; }
have_module() { [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import $1" >/dev/null 2>&1; }

missing=()
for tool in "${!pkg_for[@]}"; do
  have "$tool" || missing+=("${pkg_for[$tool]}")
done
for module in "${!pymod_for[@]}"; do
  have_module "$module" || missing+=("${pymod_for[$module]}")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-test-deps: all present (${!pkg_for[*]} ${!pymod_for[*]})"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi

# Keep package postinst scripts from starting services (no-op without
# invoke-rc.d/systemd, e.g. in containers).
policy=/usr/sbin/policy-rc.d
created_policy=
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  created_policy=1
fi
cleanup() { if [ -n "$created_policy" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
echo "install-test-deps: installing ${missing[*]}"
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"

for tool in "${!pkg_for[@]}"; do
  have "$tool" || { echo "install-test-deps: $tool still missing" >&2; exit 1; }
done
for module in "${!pymod_for[@]}"; do
  have_module "$module" || { echo "install-test-deps: Python module $module still missing" >&2; exit 1; }
done
echo "install-test-deps: done"
