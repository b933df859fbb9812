#!/usr/bin/env bash
# A real kube-apiserver + etcd on loopback, for meshdns tests that watch Istio
# ServiceEntry custom resources.
#
# Usage:
#   apiserver.sh build                   build/cache kube-apiserver + kubectl (idempotent)
#   apiserver.sh start DIR               start etcd + apiserver, install the CRD, print DIR/env
#   apiserver.sh stop DIR                SIGKILL both, wait until they are gone
#   apiserver.sh stop-apiserver DIR      kill only kube-apiserver (outage tests)
#   apiserver.sh start-apiserver DIR     bring it back on the same port, wait for /readyz
#   apiserver.sh restart-apiserver DIR   stop-apiserver + start-apiserver
#   apiserver.sh compact DIR             compact etcd (restarting a running apiserver) so
#                                        watches from older resourceVersions get 410 Gone
#
# Debian bookworm ships no kube-apiserver, so `build` compiles Debian's
# kubernetes 1.20.2 source package offline (Go 1.19, vendored deps) into
# ${MESHDNS_KUBE_CACHE:-~/.cache/meshdns/kube-1.20.2}/bin. Everything listens
# on 127.0.0.1 only, on free ports, so several clusters can run side by side.
#
# DIR (created if missing; no whitespace in the path) holds all state: etcd
# data, certs, tokens, *.flags (exact command lines, reused on restart), *.log,
# admin.kubeconfig, meshdns.kubeconfig and `env`, a KEY=VALUE file (no quoting,
# shell-sourceable):
#   APISERVER_URL=https://127.0.0.1:PORT   ETCD_URL=http://127.0.0.1:PORT
#   APISERVER_PID=N (empty while stopped)  ETCD_PID=N (empty while stopped)
#   ADMIN_TOKEN=hex (user admin, group system:masters)
#   MESHDNS_TOKEN=hex (user meshdns, no groups: grant it access via RBAC)
#   APISERVER_CA=DIR/ca.crt  ADMIN_KUBECONFIG=...  MESHDNS_KUBECONFIG=...
#   KUBECTL=path to kubectl
#
# 1.20 behaviour tests should expect: watch BOOKMARKs come about every 60 s
# and 2 s before timeoutSeconds, but only once the resource has changed past
# the resourceVersion the watch started from. Killed daemons may linger as
# zombies when PID 1 does not reap; they hold no ports and count as stopped.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CRD_FILE=$HERE/serviceentry-crd.yaml
CRD_NAME=serviceentries.networking.istio.io
SE_GROUP_PATH=/apis/networking.istio.io

DEB_SOURCE=kubernetes
DEB_VERSION=${MESHDNS_KUBE_DEB_VERSION:-1.20.5+really1.20.2-1.1+deb12u1}
KUBE_VERSION=v1.20.2
CACHE=${MESHDNS_KUBE_CACHE:-$HOME/.cache/meshdns/kube-1.20.2}
BIN=$CACHE/bin
GO_DIR=/usr/lib/go-1.19/bin
REFLECT2=/usr/share/gocode/src/github.com/modern-go/reflect2
READY_TIMEOUT=${MESHDNS_KUBE_READY_TIMEOUT:-60}   # seconds, per wait
STOP_TIMEOUT=10

# Needed to build (golang, rsync, dpkg-dev, reflect2) and to run (etcd, etcdctl).
BUILD_PKGS=(golang-1.19-go rsync dpkg-dev golang-github-modern-go-reflect2-dev)
RUN_PKGS=(etcd-server etcd-client openssl curl ca-certificates)

log() { echo "apiserver.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
now_ms() { date +%s%3N; }

# ---------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------

# Install the given Debian packages that are missing; apt-get update only then.
ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "need root to install: ${missing[*]}"
  log "installing ${missing[*]}"
  # etcd-server's postinst would start a system etcd on :2379; policy-rc.d
  # stops invoke-rc.d from starting any service (we run our own etcd).
  local policy=/usr/sbin/policy-rc.d created=
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' >$policy && chmod +x $policy && created=1
  fi
  local rc=0
  {
    DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  } || rc=$?
  [ -z "$created" ] || rm -f $policy
  [ $rc -eq 0 ] || die "apt-get install failed"
}

# Download and unpack the Debian source package into $1 without touching the
# system's apt configuration: a private copy of the source lists with deb-src
# enabled, private index dir, no shared package caches.
fetch_source() {
  local work=$1 apt=$1/apt f
  mkdir -p "$apt/sources.list.d" "$apt/lists/partial"
  # deb822 files: every stanza's "Types:" becomes deb-src only.
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    sed -E 's/^Types:.*/Types: deb-src/' "$f" >"$apt/sources.list.d/$(basename "$f")"
  done
  # One-line format files: each "deb ..." line becomes "deb-src ...".
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -e "$f" ] || continue
    sed -nE 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f" >>"$apt/sources.list.d/copied.list"
  done
  local opts=(
    -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::Etc::SourceParts=$apt/sources.list.d"
    -o "Dir::State::Lists=$apt/lists"
    -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
    -o "APT::Sandbox::User=root"   # _apt can't write into our 0700 temp dir
  )
  # A third-party repo without sources only warns; `source` fails if it matters.
  apt-get "${opts[@]}" update -q || log "warning: apt-get update (deb-src) reported errors"
  (cd "$work" && apt-get "${opts[@]}" source -q "$DEB_SOURCE=$DEB_VERSION")
}

cmd_build() {
  ensure_packages "${RUN_PKGS[@]}"
  if [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kubectl" ]; then
    echo "$BIN"
    return 0
  fi
  local t0 t1 work src
  t0=$(now_ms)
  ensure_packages "${BUILD_PKGS[@]}"
  mkdir -p "$BIN"
  work=$(mktemp -d "${TMPDIR:-/tmp}/meshdns-kube-build.XXXXXX")
  # Never leave 3rd-party source or the Go build cache behind (even on failure).
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT

  fetch_source "$work"
  src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name "$DEB_SOURCE-*" | head -n1)
  [ -n "$src" ] || die "source package did not unpack"
  t1=$(now_ms)
  log "source ready in $(((t1 - t0) / 1000))s: $src"

  # The vendored reflect2 1.0.1 pokes at Go runtime internals that changed in
  # Go 1.18; built with 1.19 the apiserver crashes on the first custom
  # resource. Debian's packaged reflect2 (1.0.2) is fixed.
  [ -d "$REFLECT2" ] || die "missing $REFLECT2"
  rm -rf "$src/vendor/github.com/modern-go/reflect2"
  cp -a "$REFLECT2" "$src/vendor/github.com/modern-go/reflect2"

  # No .git in the source package: give the build its version explicitly
  # (otherwise /version says v0.0.0-master).
  cat >"$work/version.env" <<EOF
KUBE_GIT_VERSION=$KUBE_VERSION
KUBE_GIT_MAJOR=1
KUBE_GIT_MINOR=20
KUBE_GIT_TREE_STATE=clean
KUBE_GIT_COMMIT=0000000000000000000000000000000000000000
EOF
  (
    cd "$src"
    export PATH="$GO_DIR:$PATH" GOPROXY=off CGO_ENABLED=0 GOCACHE="$work/gocache" \
      GOFLAGS= KUBE_GIT_VERSION_FILE="$work/version.env"
    make WHAT="cmd/kube-apiserver cmd/kubectl"
  )
  local out=$src/_output/local/bin/linux/amd64 b
  for b in kube-apiserver kubectl; do
    [ -x "$out/$b" ] || out=$src/_output/bin
    [ -x "$out/$b" ] || die "build produced no $b"
    # Copy then rename: a concurrent reader never sees a half-written binary.
    cp "$out/$b" "$BIN/.$b.tmp.$$"
    mv -f "$BIN/.$b.tmp.$$" "$BIN/$b"
  done
  rm -rf "$work"
  trap - EXIT
  log "built $KUBE_VERSION in $((($(now_ms) - t0) / 1000))s (compile $((($(now_ms) - t1) / 1000))s)"
  echo "$BIN"
}

# ---------------------------------------------------------------------------
# process helpers
# ---------------------------------------------------------------------------

# True if $1 is a live (not zombie) process named $2. Our daemons are
# reparented when the script exits and PID 1 may never reap them, so a killed
# one can linger as a zombie; the name check guards against pid reuse.
alive() {
  local pid=$1 name=$2 stat
  [ -n "$pid" ] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  case ${stat%% *} in Z | X | x) return 1 ;; esac
}

# SIGKILL $1 (named $2) and wait until it is gone.
kill_wait() {
  local pid=$1 name=$2 i
  alive "$pid" "$name" || return 0
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
    alive "$pid" "$name" || return 0
    sleep 0.1
  done
  die "$name (pid $pid) did not exit"
}

# N free loopback TCP ports (all sockets held open together so they differ).
free_ports() {
  if command -v python3 >/dev/null; then
    python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
    return
  fi
  # Fallback: random ports below the ephemeral range that nobody listens on.
  local ports=() p
  while [ ${#ports[@]} -lt "$1" ]; do
    p=$((20000 + RANDOM % 12000))
    (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && continue
    [[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
  done
  echo "${ports[*]}"
}

# Start $2 (binary) with the flags saved in DIR/$1.flags (one per line),
# detached in its own session, output appended to DIR/$1.log. Prints the pid.
launch() {
  local name=$1 bin=$2 flags
  mapfile -t flags <"$DIR/$name.flags"
  echo "=== $(date -Is) starting $name" >>"$DIR/$name.log"
  # All fds redirected (and the lock fd closed) so a caller reading our
  # stdout to EOF does not hang on the long-running daemon.
  setsid "$bin" "${flags[@]}" </dev/null >>"$DIR/$name.log" 2>&1 9>&- &
  echo $!
}

# ---------------------------------------------------------------------------
# state directory
# ---------------------------------------------------------------------------

ENV_KEYS=(APISERVER_URL ETCD_URL APISERVER_PID ETCD_PID ADMIN_TOKEN MESHDNS_TOKEN
  APISERVER_CA ADMIN_KUBECONFIG MESHDNS_KUBECONFIG KUBECTL)

# Set DIR (absolute) from $1 and take a lock so concurrent calls on the same
# DIR serialize. fd 9 is closed in launched daemons.
use_dir() {
  [ -n "${1:-}" ] || die "missing DIR argument"
  [[ "$1" != *[[:space:]]* ]] || die "DIR must not contain whitespace: $1"
  mkdir -p "$1"
  DIR=$(cd "$1" && pwd)
  exec 9>"$DIR/.lock"
  flock 9
}

load_env() {
  [ -f "$DIR/env" ] || die "$DIR/env not found (run: $0 start $DIR)"
  # shellcheck disable=SC1091
  . "$DIR/env"
}

write_env() {
  local k
  for k in "${ENV_KEYS[@]}"; do echo "$k=${!k-}"; done >"$DIR/env.tmp"
  mv -f "$DIR/env.tmp" "$DIR/env"
}

# First start in DIR: choose ports, make tokens and keys, save both command
# lines. Later starts reuse all of it (same ports, same tokens, same data).
init_dir() {
  local etcd_port peer_port api_port
  read -r etcd_port peer_port api_port <<<"$(free_ports 3)"
  ETCD_URL=http://127.0.0.1:$etcd_port
  APISERVER_URL=https://127.0.0.1:$api_port
  ADMIN_TOKEN=$(openssl rand -hex 16)
  MESHDNS_TOKEN=$(openssl rand -hex 16)
  APISERVER_PID= ETCD_PID=
  APISERVER_CA=$DIR/ca.crt
  ADMIN_KUBECONFIG=$DIR/admin.kubeconfig
  MESHDNS_KUBECONFIG=$DIR/meshdns.kubeconfig
  KUBECTL=$BIN/kubectl

  # token,user,uid[,"groups"]. meshdns has no groups, so only RBAC objects
  # the tests create (plus system:authenticated defaults) apply to it.
  umask 077
  cat >"$DIR/tokens.csv" <<EOF
$ADMIN_TOKEN,admin,admin,"system:masters"
$MESHDNS_TOKEN,meshdns,meshdns
EOF
  # Service-account token signing keys; required flags since 1.20.
  openssl genrsa -out "$DIR/sa.key" 2048 2>/dev/null
  openssl rsa -in "$DIR/sa.key" -pubout -out "$DIR/sa.pub" 2>/dev/null
  umask 022

  cat >"$DIR/etcd.flags" <<EOF
--name=meshdns-test
--data-dir=$DIR/etcd
--listen-client-urls=$ETCD_URL
--advertise-client-urls=$ETCD_URL
--listen-peer-urls=http://127.0.0.1:$peer_port
--initial-advertise-peer-urls=http://127.0.0.1:$peer_port
--initial-cluster=meshdns-test=http://127.0.0.1:$peer_port
EOF

  # --insecure-port=0: 1.20 otherwise also serves plain HTTP on 127.0.0.1:8080,
  # which would collide between parallel clusters.
  # --endpoint-reconciler-type=none: the default one tries every 10 s to
  # publish 127.0.0.1 as the "kubernetes" service endpoint, which is rejected
  # (loopback) and only adds log noise and etcd writes.
  cat >"$DIR/kube-apiserver.flags" <<EOF
--etcd-servers=$ETCD_URL
--bind-address=127.0.0.1
--advertise-address=127.0.0.1
--secure-port=$api_port
--insecure-port=0
--cert-dir=$DIR/pki
--authorization-mode=RBAC
--token-auth-file=$DIR/tokens.csv
--service-account-key-file=$DIR/sa.pub
--service-account-signing-key-file=$DIR/sa.key
--service-account-issuer=https://kubernetes.default.svc
--service-cluster-ip-range=10.96.0.0/24
--endpoint-reconciler-type=none
--profiling=false
--v=1
EOF
  write_env
}

# kubeconfigs point at the CA the apiserver generated in --cert-dir
# (apiserver.crt = serving cert followed by its self-signed CA).
write_kubeconfigs() {
  awk '/BEGIN CERTIFICATE/{n++; buf=""} n>=1{buf=buf $0 "\n"} END{printf "%s", buf}' \
    "$DIR/pki/apiserver.crt" >"$DIR/ca.crt.tmp"
  mv -f "$DIR/ca.crt.tmp" "$DIR/ca.crt"
  local ca user token
  ca=$(base64 -w0 <"$DIR/ca.crt")
  for user in admin meshdns; do
    if [ $user = admin ]; then token=$ADMIN_TOKEN; else token=$MESHDNS_TOKEN; fi
    cat >"$DIR/$user.kubeconfig.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: meshdns-test
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $ca
users:
- name: $user
  user:
    token: $token
contexts:
- name: $user
  context: {cluster: meshdns-test, user: $user, namespace: default}
current-context: $user
EOF
    mv -f "$DIR/$user.kubeconfig.tmp" "$DIR/$user.kubeconfig"
  done
}

# ---------------------------------------------------------------------------
# etcd and kube-apiserver
# ---------------------------------------------------------------------------

etcd_bin() { PATH="$PATH:/usr/sbin:/usr/bin" command -v etcd || die "etcd not installed (run: $0 build)"; }

ensure_etcd() {
  alive "$ETCD_PID" etcd && return 0
  ETCD_PID=$(launch etcd "$(etcd_bin)")
  write_env
  local i
  for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
    curl -fsS --max-time 1 "$ETCD_URL/health" 2>/dev/null | grep -q '"health":"true"' && return 0
    alive "$ETCD_PID" etcd || { tail -n 20 "$DIR/etcd.log" >&2; die "etcd exited"; }
    sleep 0.1
  done
  tail -n 20 "$DIR/etcd.log" >&2
  die "etcd not healthy after ${READY_TIMEOUT}s"
}

# curl against the apiserver as admin: api METHOD PATH [curl args...].
# Prints the body; the HTTP status goes to the global HTTP_CODE.
api() {
  local method=$1 path=$2 out
  shift 2
  out=$(curl -sS --max-time 10 --cacert "$DIR/ca.crt" -X "$method" \
    -H "Authorization: Bearer $ADMIN_TOKEN" -w '\n%{http_code}' "$@" "$APISERVER_URL$path") || return 1
  HTTP_CODE=${out##*$'\n'}
  printf '%s' "${out%$'\n'*}"
}

ensure_apiserver() {
  alive "$APISERVER_PID" kube-apiserver && return 0
  [ -x "$BIN/kube-apiserver" ] || die "no $BIN/kube-apiserver (run: $0 build)"
  local t0 i
  t0=$(now_ms)
  APISERVER_PID=$(launch kube-apiserver "$BIN/kube-apiserver")
  write_env
  for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
    # -k only here: on the very first start the CA does not exist yet.
    if [ "$(curl -sk --max-time 1 -H "Authorization: Bearer $ADMIN_TOKEN" \
      "$APISERVER_URL/readyz" 2>/dev/null)" = ok ]; then
      write_kubeconfigs
      log "kube-apiserver ready in $(($(now_ms) - t0)) ms (pid $APISERVER_PID, $APISERVER_URL)"
      return 0
    fi
    alive "$APISERVER_PID" kube-apiserver || { tail -n 30 "$DIR/kube-apiserver.log" >&2; die "kube-apiserver exited"; }
    sleep 0.1
  done
  tail -n 30 "$DIR/kube-apiserver.log" >&2
  die "kube-apiserver not ready after ${READY_TIMEOUT}s"
}

# Create or update the CRD (server-side apply: idempotent), then wait until
# it is Established and every version serves list requests.
install_crd() {
  local body i v ok
  api PATCH "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$CRD_NAME?fieldManager=meshdns-tests&force=true" \
    -H 'Content-Type: application/apply-patch+yaml' --data-binary "@$CRD_FILE" >/dev/null
  [[ $HTTP_CODE == 20? ]] || die "applying $CRD_FILE: HTTP $HTTP_CODE"
  for ((i = 0; i < READY_TIMEOUT * 10; i++)); do
    ok=1
    body=$(api GET "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$CRD_NAME") || ok=
    tr -d ' \n' <<<"$body" | grep -q '"type":"Established","status":"True"' || ok=
    for v in v1 v1beta1 v1alpha3; do
      [ -n "$ok" ] || break
      api GET "$SE_GROUP_PATH/$v/serviceentries?limit=1" >/dev/null || ok=
      [ "${HTTP_CODE:-}" = 200 ] || ok=
    done
    [ -n "$ok" ] && return 0
    sleep 0.1
  done
  die "CRD $CRD_NAME not established after ${READY_TIMEOUT}s"
}

# ---------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------

cmd_start() {
  use_dir "$1"
  [ -x "$BIN/kube-apiserver" ] || die "no $BIN/kube-apiserver (run: $0 build)"
  if [ -f "$DIR/env" ]; then load_env; else init_dir; fi
  ensure_etcd
  ensure_apiserver
  install_crd
  cat "$DIR/env"
}

cmd_stop() {
  use_dir "$1"
  load_env
  kill_wait "$APISERVER_PID" kube-apiserver
  kill_wait "$ETCD_PID" etcd
  APISERVER_PID= ETCD_PID=
  write_env
}

# Kill only kube-apiserver; etcd and all data stay.
stop_apiserver() {
  kill_wait "$APISERVER_PID" kube-apiserver
  APISERVER_PID=
  write_env
}

cmd_stop_apiserver() {
  use_dir "$1"
  load_env
  stop_apiserver
}

cmd_start_apiserver() {
  use_dir "$1"
  load_env
  alive "$ETCD_PID" etcd || die "etcd is not running (use: $0 start $DIR)"
  ensure_apiserver
}

cmd_restart_apiserver() {
  use_dir "$1"
  load_env
  alive "$ETCD_PID" etcd || die "etcd is not running (use: $0 start $DIR)"
  stop_apiserver
  ensure_apiserver
}

# Compact etcd past every revision handed out so far, so that resuming a
# watch (or an exact list) from any earlier resourceVersion fails with 410.
# Two writes first (a marker key, then its deletion) make the compaction point
# strictly newer than anything a client can have seen.
#
# A running apiserver serves watches from its watch cache, which still holds
# the old events after etcd compacts (1.20 keeps >= 100 events per resource),
# so compaction alone would not make old watches fail. A running apiserver is
# therefore restarted: its fresh cache starts at the current revision and
# answers older resourceVersions with "410 too old resource version", which is
# what clients see after a real apiserver restart. Prints the revision.
cmd_compact() {
  use_dir "$1"
  load_env
  local ctl rev
  ctl=$(PATH="$PATH:/usr/sbin" command -v etcdctl) || die "etcdctl not installed (run: $0 build)"
  export ETCDCTL_API=3
  "$ctl" --endpoints="$ETCD_URL" put /meshdns-test/compact-marker x >/dev/null
  rev=$("$ctl" --endpoints="$ETCD_URL" del /meshdns-test/compact-marker -w json |
    grep -o '"revision":[0-9]*' | head -n1 | cut -d: -f2)
  [ -n "$rev" ] || die "could not read etcd revision"
  "$ctl" --endpoints="$ETCD_URL" compact --physical "$rev" >/dev/null
  log "etcd compacted at revision $rev"
  if alive "$APISERVER_PID" kube-apiserver; then
    stop_apiserver
    ensure_apiserver
  fi
  echo "$rev"
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

case "${1:-}" in
  build) cmd_build ;;
  start) cmd_start "${2:-}" ;;
  stop) cmd_stop "${2:-}" ;;
  stop-apiserver) cmd_stop_apiserver "${2:-}" ;;
  start-apiserver) cmd_start_apiserver "${2:-}" ;;
  restart-apiserver) cmd_restart_apiserver "${2:-}" ;;
  compact) cmd_compact "${2:-}" ;;
  *) usage ;;
esac
