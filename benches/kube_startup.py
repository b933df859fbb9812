#!/usr/bin/env python3
"""Start-up benchmark against a real kube-apiserver: N ServiceEntries listed
-> meshdns ready.

It starts etcd + kube-apiserver 1.20.2 on 127.0.0.1 the way the tests do
(tests/kube/apiserver.sh: RBAC on, the ServiceEntry CRD installed), creates
--namespaces namespaces and --entries ServiceEntries in them, shaped like the
ones Istio's multi-cluster ".global" set-up has people write:

  metadata  name sI, namespace nsJ (J = I % namespaces), two labels, and the
            kubectl.kubernetes.io/last-applied-configuration annotation that
            `kubectl apply` leaves (a JSON copy of the object); the API server
            adds managedFields
  spec      hosts [sI.nsJ.global], addresses [240.x.y.z] (unique),
            location MESH_INTERNAL, resolution DNS, two ports, one endpoint
            (a remote gateway's host name on port 15443)

With --status-addresses PCT, that percentage of the entries (spread evenly)
has no spec.addresses; the same address is written to status.addresses
instead (a second request, to the status subresource), as Istio's address
allocation does.

Creation uses --create-workers threads, each with one keep-alive HTTPS
connection, posting as fast as the API server takes them (429/5xx are
retried with a short back-off). Its time is reported, but it is not the point.

Then it starts the release meshdns binary --rounds times, fresh each time,
with its default flags plus --kubeconfig (the RBAC-limited `meshdns` user
that may only list and watch ServiceEntries, as in tests/kube.rs) and
loopback ports, and measures per start:

  start -> /readyz        Popen() to the first 200 from /readyz on the admin
                          port (polled every --poll-ms); meshdns is ready once the
                          first full list is in its table
  start -> first answer   Popen() to the first correct A answer for the entry
                          the list returns last (the largest namespace/name
                          key in etcd), raw UDP query polled every --poll-ms;
                          meshdns answers SERVFAIL until it is ready
  RSS at ready            /proc/PID/smaps_rollup once /readyz said 200, and
                          the peak so far (VmHWM): what the list cost at most
  meshdns CPU             utime+stime of all its threads, start -> ready
  apiserver / etcd CPU    the same for kube-apiserver and etcd over the same
                          window: what serving meshdns's list cost them
  phases (meshdns log)    from the timestamps of meshdns's own info lines:
                          start -> "watching ServiceEntries" (client,
                          discovery), -> "list complete" (the paginated list:
                          API server, transfer, decode, convert), -> "synced;
                          ready" (the index built from the list)
  meshdns_kube_*          the watch metrics at ready (relists, events by
                          type, malformed objects, watch errors); there is no
                          list-duration metric, the log phases stand for it

Beside each start, as the reference for "the API server's own cost", it
lists all ServiceEntries with plain Python (http.client, same user agent
shape, Accept: application/json, no gzip, like kube-rs):

  LIST limit=500          what meshdns's watcher does: kube-rs 5's default
                          watcher::Config, page_size 500, no resourceVersion
                          (a quorum read from etcd, page after page, each
                          page asked for only once the last one is consumed)
  LIST rv=0               resourceVersion=0: from the API server's watch
                          cache; 1.20 ignores the limit there and sends all
                          items in one response (what client-go informers
                          ask for; kube-rs only with ListSemantic::Any and no
                          page size: with one, kube-core drops rv=0)
  LIST unpaginated        no limit, no resourceVersion: one quorum read

Python only reads the bytes (the continue token is cut out of the tail, no
JSON decode), so these times are the API server's serving plus the transfer.

One more start of each binary (on by default when perf is installed;
--no-profile skips it) runs meshdns under `perf record --call-graph dwarf`
(CLOCK_MONOTONIC timestamps, so samples are put in the log's phases) and
sorts the samples by the frames on their stacks, first match wins:

  bench probes            this script's /readyz and DNS polling (axum, DNS)
  convert/index           meshdns::index: conversion to records, table swap
  free/drop               dropping the listed objects (metadata maps, Values)
  Value -> ServiceEntry   meshdns's serde of each DynamicObject (to_entry)
  JSON -> DynamicObject   kube's decode of each page (serde_json, kube_core)
  TLS, HTTP/IO            rustls/ring; hyper, tokio and mio
  watch loop              kube_runtime's watcher and meshdns's follow loop
  kernel, other           the rest, by the leaf frame

It is not counted in the medians (perf slows the process). The breakdown at
the end puts these together: list wall time = waiting for the API server
(wall - meshdns CPU: the pages are fetched one after another, the next only
once the last one is consumed) + meshdns's CPU by category.

--compare PATH starts another meshdns build in the same rounds, right after
the main one, with the same measurements: for before/after figures of a
change to the watch from one run against one loaded API server.

Everything listens on 127.0.0.1. etcd, kube-apiserver and meshdns are
stopped at the end, also on failure and Ctrl-C, and the temp dir (etcd data
included) is removed unless --workdir is given. The cluster's daemons run in
their own session (apiserver.sh starts them with setsid): only a SIGKILL of
this script leaves them behind.

Needs python3 (stdlib), kube-apiserver + kubectl built by
`tests/kube/apiserver.sh build` (cached under ~/.cache/meshdns/kube-1.20.2,
takes a while the first time; it also installs etcd), a release build of
meshdns (`cargo build --release`; found as $CARGO_TARGET_DIR/release/meshdns
or target/release/meshdns, or --meshdns), and optionally perf.

On a small or busy machine these figures are rough: meshdns, the API server,
etcd and this script share the cores. Compare runs on the same machine.

Examples:
  python3 benches/kube_startup.py --workdir /tmp/k100k  # 100k entries, 3 rounds: ~40 min on 2 busy
                                                       # cores, 15 of them creating; the same
                                                       # --workdir again reuses the entries
  python3 benches/kube_startup.py --smoke              # 500 entries, 1 round, < 1 min
  python3 benches/kube_startup.py --entries 20000 --rounds 5 --json out.json
  python3 benches/kube_startup.py --status-addresses 10 --no-profile
  python3 benches/kube_startup.py --entries 20000 --compare /tmp/meshdns-rv0
"""

import argparse
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402  (child processes, ports, /proc readers, the DNS probe)

REPO = load.REPO
SCRIPT = os.path.join(REPO, "tests", "kube", "apiserver.sh")
KUBE_CACHE = os.environ.get("MESHDNS_KUBE_CACHE") or os.path.expanduser("~/.cache/meshdns/kube-1.20.2")
SE_PATH = "/apis/networking.istio.io/v1"
PAGE = 500  # kube-rs 5 watcher::Config::default().page_size, as meshdns uses it
USER_AGENT = "meshdns-kube-startup/1"


def log(msg):
    print(f"kube_startup.py: {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(f"error: {msg}")
    sys.exit(2)


# ---------------------------------------------------------------------------
# The cluster (tests/kube/apiserver.sh)


class Cluster:
    def __init__(self, d):
        self.dir = d
        self.env = {}

    def script(self, cmd, timeout):
        return subprocess.run(["bash", SCRIPT, cmd, self.dir], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout)

    def start(self):
        t = time.monotonic()
        try:
            r = self.script("start", 240)
        except subprocess.TimeoutExpired:
            self.read_env()
            die("apiserver.sh start took over 240 s")
        self.read_env()
        if r.returncode != 0:
            die(f"apiserver.sh start failed:\n{r.stderr[-3000:]}")
        return time.monotonic() - t

    def read_env(self):
        try:
            with open(os.path.join(self.dir, "env")) as f:
                self.env = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        except OSError:
            pass

    def pid(self, name):
        self.read_env()
        pid = self.env.get({"kube-apiserver": "APISERVER_PID", "etcd": "ETCD_PID"}[name])
        return int(pid) if pid else None

    def stop(self):
        """apiserver.sh stop (SIGKILL, waits until gone); if that fails,
        SIGKILL the pids from its env file directly."""
        if not os.path.exists(os.path.join(self.dir, "env")):
            return
        try:
            r = self.script("stop", 60)
            if r.returncode == 0:
                return
            log(f"apiserver.sh stop failed: {r.stderr[-500:]}")
        except subprocess.TimeoutExpired:
            log("apiserver.sh stop timed out")
        for name in ("kube-apiserver", "etcd"):
            pid = self.pid(name)
            if pid and proc_name(pid) == name:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def proc_name(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def cpu_s(pid):
    """utime+stime of all threads in seconds, None if gone."""
    try:
        return load.cpu_ticks(pid) / load.CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


# ---------------------------------------------------------------------------
# HTTPS to the API server: one keep-alive connection per thread


class Api:
    def __init__(self, url, token, ca, timeout=60):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.ctx = ssl.create_default_context(cafile=ca)
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "User-Agent": USER_AGENT}
        self.timeout = timeout
        self.conn = None

    def request(self, method, path, body=None, ctype="application/json"):
        """(status, body bytes, seconds to the response headers, seconds in
        all). Reconnects once on a dropped connection."""
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = ctype
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx,
                                                        timeout=self.timeout)
            try:
                t0 = time.monotonic()
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                t1 = time.monotonic()
                data = resp.read()
                t2 = time.monotonic()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, data, t1 - t0, t2 - t0
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def api_for(env, user="admin"):
    token = env["ADMIN_TOKEN"] if user == "admin" else env["MESHDNS_TOKEN"]
    return Api(env["APISERVER_URL"], token, env["APISERVER_CA"])


def must(api, method, path, obj, ok=(200, 201, 409)):
    status, data, _, _ = api.request(method, path, json.dumps(obj).encode())
    if status not in ok:
        die(f"{method} {path}: HTTP {status}: {data[:500]!r}")


# ---------------------------------------------------------------------------
# The ServiceEntries


def address(i):
    return load.address(i)  # 240.x.y.z of i + 1


def ns_of(i, namespaces):
    return f"ns{i % namespaces}"


def host_of(i, namespaces):
    return f"s{i}.{ns_of(i, namespaces)}.global"


def has_status(i, pct):
    """Whether entry i carries its address in status (pct % of entries,
    spread evenly)."""
    return pct > 0 and (i * pct) // 100 != ((i + 1) * pct) // 100


def service_entry(i, namespaces, pct):
    ns, name = ns_of(i, namespaces), f"s{i}"
    spec = {
        "hosts": [host_of(i, namespaces)],
        "location": "MESH_INTERNAL",
        "resolution": "DNS",
        "ports": [{"number": 8080, "name": "http", "protocol": "HTTP"},
                  {"number": 9090, "name": "grpc", "protocol": "GRPC"}],
        "endpoints": [{"address": f"istio-ingressgateway.cluster{i % 8}.example", "ports": {"http": 15443,
                                                                                           "grpc": 15443}}],
    }
    if not has_status(i, pct):
        spec["addresses"] = [address(i)]
    labels = {"app": name, "mesh.example.com/dns": "enabled"}
    obj = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
           "metadata": {"name": name, "namespace": ns, "labels": labels}, "spec": spec}
    applied = json.dumps(obj, separators=(",", ":"), sort_keys=True) + "\n"
    obj["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": applied}
    return obj


def late_entry(n, namespaces):
    """The entry a full list returns last: etcd orders keys, and so the list,
    by namespace then name, as strings."""
    return max(range(n), key=lambda i: (ns_of(i, namespaces), f"s{i}"))


def setup(api, args):
    """Namespaces and RBAC for the meshdns user (list and watch
    ServiceEntries, nothing else), as tests/kube/cluster.rs grants it."""
    for j in range(min(args.namespaces, args.entries)):
        must(api, "POST", "/api/v1/namespaces", {"metadata": {"name": f"ns{j}"}})
    must(api, "POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", {
        "metadata": {"name": "meshdns"},
        "rules": [{"apiGroups": ["networking.istio.io"], "resources": ["serviceentries"],
                   "verbs": ["list", "watch"]}]})
    must(api, "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "metadata": {"name": "meshdns"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "meshdns"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "meshdns"}]})


RETRY = (429, 500, 502, 503, 504)


def create_all(env, args):
    """Creates the entries with --create-workers threads; returns (seconds,
    requests, retries)."""
    n, w = args.entries, max(1, min(args.create_workers, args.entries))
    done = [0] * w
    retries = [0] * w
    failure = []
    stop_flag = threading.Event()

    def send(api, k, method, path, obj, ctype="application/json"):
        body = json.dumps(obj, separators=(",", ":")).encode()
        for attempt in range(10):
            status, data, _, _ = api.request(method, path, body, ctype)
            if status in (200, 201, 409):
                return True
            if status not in RETRY:
                failure.append(f"{method} {path}: HTTP {status}: {data[:300]!r}")
                return False
            retries[k] += 1
            time.sleep(min(2.0, 0.05 * 2 ** attempt))
        failure.append(f"{method} {path}: still HTTP {status} after 10 tries")
        return False

    def worker(k):
        api = api_for(env)
        try:
            for i in range(k, n, w):
                if stop_flag.is_set():
                    return
                ns = ns_of(i, args.namespaces)
                base = f"{SE_PATH}/namespaces/{ns}/serviceentries"
                if not send(api, k, "POST", base, service_entry(i, args.namespaces, args.status_addresses)):
                    break
                if has_status(i, args.status_addresses):
                    status = {"status": {"addresses": [{"value": address(i), "host": host_of(i, args.namespaces)}]}}
                    if not send(api, k, "PATCH", f"{base}/s{i}/status", status, "application/merge-patch+json"):
                        break
                done[k] += 1
        except Exception as e:  # noqa: BLE001  (reported by the main thread)
            failure.append(f"worker {k}: {e!r}")
        finally:
            stop_flag.set() if failure else None
            api.close()

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(w)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    last = t0
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(0.5)
        now = time.monotonic()
        if now - t0 > args.create_limit:
            stop_flag.set()
            die(f"creating {n} entries took over --create-limit {args.create_limit:.0f} s ({sum(done)} done)")
        if now - last >= 15:
            last = now
            log(f"  created {sum(done)}/{n} ({sum(done) / (now - t0):.0f}/s)")
    if failure:
        die(f"creating entries: {failure[0]}")
    return time.monotonic() - t0, sum(done), sum(retries)


# ---------------------------------------------------------------------------
# Plain LISTs (the API server's own cost)

CONTINUE_RE = re.compile(rb'"continue":"([^"]*)"')
ITEM = b'"kind":"ServiceEntry"'  # once per item; the list's own kind is ServiceEntryList


def plain_list(api, limit, rv, timeout=None):
    """Lists all ServiceEntries page by page; returns its figures, or
    seconds None and the error when the API server gives up (504 after its
    --request-timeout, 60 s; `timeout` asks for longer). Reads bytes only:
    the continue token comes out of the list's metadata, which the API
    server writes last."""
    pages = items = size = 0
    ttfb = 0.0
    token = None
    t0 = time.monotonic()
    while True:
        q = {}
        if limit:
            q["limit"] = limit
        if rv is not None:
            q["resourceVersion"] = rv
        if token:
            q["continue"] = token
        if timeout:
            q["timeout"] = timeout
        path = f"{SE_PATH}/serviceentries" + (f"?{urllib.parse.urlencode(q)}" if q else "")
        status, data, first, _ = api.request("GET", path)
        if status == 504:
            return {"seconds": None, "error": f"HTTP 504 after {time.monotonic() - t0:.0f} s", "pages": pages,
                    "items": items, "bytes": size, "headers_wait_s": ttfb}
        if status != 200:
            die(f"GET {path}: HTTP {status}: {data[:300]!r}")
        pages += 1
        ttfb += first
        size += len(data)
        items += data.count(ITEM)
        m = CONTINUE_RE.search(data, max(0, len(data) - 4096))
        token = m.group(1).decode() if m and m.group(1) else None
        if not token:
            break
    return {"seconds": time.monotonic() - t0, "pages": pages, "items": items, "bytes": size,
            "headers_wait_s": ttfb}


# (label, key, limit, resourceVersion, timeout): the unpaginated quorum read
# of 100k entries can take longer than the API server's default 60 s.
LIST_VARIANTS = [
    ("LIST limit=500 (as meshdns)", "paged", PAGE, None, None),
    ("LIST rv=0 (watch cache)", "rv0", PAGE, "0", None),
    ("LIST unpaginated (quorum)", "full", None, None, "300s"),
]


# ---------------------------------------------------------------------------
# meshdns

LOG_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z\s+(\w+)\s+(\S+?):\s(.*)$")
PHASE_LINES = {
    "serving": "serving",
    "watching": "watching ServiceEntries",
    "listed": "list complete; table swapped in",
    "synced": "Kubernetes ServiceEntries synced; ready",
}


def log_times(path):
    """Unix times of meshdns's phase lines (first of each), and warnings."""
    out, warnings = {}, []
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return out, warnings
    for line in lines:
        m = LOG_RE.match(line)
        if not m:
            continue
        ts, level, _, msg = m.groups()
        if "." in ts:
            head, frac = ts.split(".")
            ts = f"{head}.{frac[:6].ljust(6, '0')}"
        when = datetime.datetime.fromisoformat(ts).replace(tzinfo=datetime.timezone.utc).timestamp()
        for key, text in PHASE_LINES.items():
            if key not in out and msg.startswith(text):
                out[key] = when
        if level in ("WARN", "ERROR"):
            warnings.append(line)
    return out, warnings


def vm_hwm_kib(pid):
    """Peak RSS so far (VmHWM), in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def http_get(port, path, timeout=1.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def child_of(pid, name, limit=10.0):
    """The pid of `pid`'s child process called `name` (perf's workload)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                for c in f.read().split():
                    if proc_name(int(c)) == name[:15]:
                        return int(c)
        except OSError:
            return None
        time.sleep(0.002)
    return None


def meshdns_round(args, cluster, binary, late, d, label, perf_data=None):
    dns_port, admin_port = load.free_port(), load.free_port()
    cmd = [binary, "serve", "--kubeconfig", cluster.env["MESHDNS_KUBECONFIG"],
           "--dns-addr", f"127.0.0.1:{dns_port}", "--admin-addr", f"127.0.0.1:{admin_port}"]
    if perf_data:
        cmd = [args.perf, "record", "-q", "-F", str(args.perf_freq), "-k", "CLOCK_MONOTONIC",
               "--call-graph", "dwarf,16384", "-o", perf_data, "--"] + cmd
    log_path = os.path.join(d, f"meshdns-{label}.log")
    api_pid, etcd_pid = cluster.pid("kube-apiserver"), cluster.pid("etcd")
    cpu0 = {"apiserver": cpu_s(api_pid), "etcd": cpu_s(etcd_pid)}
    wall0, t0 = time.time(), time.monotonic()
    p = load.spawn(cmd, log_path)
    pid = child_of(p.pid, os.path.basename(binary)) if perf_data else p.pid
    if pid is None:
        load.stop(p)
        die(f"perf did not start meshdns; log:\n{open(log_path, errors='replace').read()[-2000:]}")
    limit, poll = args.ready_limit, args.poll_ms / 1000
    got = {}

    def ready_poll():
        deadline = t0 + limit
        while time.monotonic() < deadline and p.poll() is None:
            try:
                if http_get(admin_port, "/readyz", 0.5)[0] == 200:
                    got["ready"] = time.monotonic() - t0
                    return
            except OSError:
                pass
            time.sleep(poll)

    def dns_poll():
        want = socket.inet_aton(address(late))
        query = load.encode_query(0x4D44, host_of(late, args.namespaces))
        deadline = t0 + limit
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("127.0.0.1", dns_port))
            s.settimeout(0.05)
            while time.monotonic() < deadline and p.poll() is None:
                try:
                    s.send(query)
                    if load.answers_with(s.recv(4096), 0x4D44, want):
                        got["answer"] = time.monotonic() - t0
                        return
                except OSError:  # refused (not bound yet) or timed out
                    pass
                time.sleep(poll)

    threads = [threading.Thread(target=f, daemon=True) for f in (ready_poll, dns_poll)]
    for t in threads:
        t.start()
    threads[0].join()
    r = {"label": label, "profiled": bool(perf_data)}
    if "ready" in got:
        r["rss_kib"], r["pss_kib"] = load.mem_kib(pid)
        r["peak_rss_kib"] = vm_hwm_kib(pid)
        r["meshdns_cpu_s"] = cpu_s(pid)
        for k, pid_k in (("apiserver", api_pid), ("etcd", etcd_pid)):
            now = cpu_s(pid_k)
            r[f"{k}_cpu_s"] = now - cpu0[k] if now is not None and cpu0[k] is not None else None
        try:
            _, text = http_get(admin_port, "/metrics", 5)
            r["metrics"] = {k: float(v) for k, v in
                            (line.split()[:2] for line in text.splitlines()
                             if line.startswith("meshdns_kube_") and len(line.split()) >= 2)}
        except (OSError, ValueError):
            r["metrics"] = {}
    threads[1].join(limit)
    r["ready_s"], r["answer_s"] = got.get("ready"), got.get("answer")
    r["t0_monotonic"] = t0
    # A second SIGTERM skips the shutdown grace.
    for _ in range(2):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        time.sleep(0.05)
    load.stop(p, signals=(), grace=30 if perf_data else 5)
    times, warnings = log_times(log_path)
    r["phases"] = {k: v - wall0 for k, v in times.items()}
    r["warnings"] = warnings[:5]
    if "ready" not in got:
        die(f"meshdns ({label}) not ready within --ready-limit {limit:.0f} s; log:\n"
            f"{open(log_path, errors='replace').read()[-3000:]}")
    if "answer" not in got:
        die(f"meshdns ({label}) never answered {host_of(late, args.namespaces)} with {address(late)}")
    return r


# ---------------------------------------------------------------------------
# perf: where meshdns's CPU goes between start and ready

# First rule whose pattern appears anywhere on the stack wins: the outermost
# reason for the work, not the leaf (a malloc under the JSON decoder counts
# as decode).
CATEGORIES = [
    ("bench probes (/readyz, DNS)", re.compile(r"axum::|meshdns::admin|meshdns::dns::")),
    ("convert/index", re.compile(r"meshdns::index::|reset_keeping|Index::convert")),
    ("free/drop", re.compile(r"drop_in_place<(k8s_openapi|kube_core|serde_json|alloc::collections|"
                             r"alloc::vec::Vec<kube_core)|dying_next")),
    ("Value -> ServiceEntry", re.compile(r"serviceentry_from|source::kube::to_entry|meshdns::serviceentry::")),
    ("JSON -> DynamicObject", re.compile(r"serde_json|serde::|serde_core::|kube_core::|k8s_openapi::")),
    ("TLS", re.compile(r"rustls|ring::|ring_core|aes_|gcm_|chacha|sha256|sha512")),
    ("HTTP/IO", re.compile(r"hyper|h2::|tokio::io|tokio::net|mio::|http_body|tower")),
    ("watch loop (follow, watcher)", re.compile(r"source::kube::follow|kube_runtime::")),
]
KERNEL = "kernel (syscalls, page faults)"
OTHER = "other"


def profile_breakdown(args, data, t0, phase_bounds):
    """CPU samples of meshdns per category and phase. `phase_bounds` holds
    (name, start, end) in seconds since t0."""
    try:
        out = subprocess.run([args.perf, "script", "-i", data, "-F", "tid,time,period,ip,sym,dso", "--no-inline"],
                             capture_output=True, text=True, timeout=600, errors="replace")
    except subprocess.TimeoutExpired:
        log("perf script timed out; no profile")
        return None
    if out.returncode != 0:
        log(f"perf script failed: {out.stderr[-500:]}")
        return None
    cats = [c for c, _ in CATEGORIES] + [KERNEL, OTHER]
    table = {ph: dict.fromkeys(cats, 0.0) for ph, _, _ in phase_bounds}
    top = {}
    header_re = re.compile(r"^\s*(\d+)\s+(\d+\.\d+):\s+(\d+)\s*$")
    samples = 0

    def flush(when, period, frames):
        nonlocal samples
        if when is None or not frames:
            return
        rel = when - t0
        phase = next((ph for ph, a, b in phase_bounds if a <= rel < b), None)
        if phase is None:
            return
        stack = "\n".join(frames)
        cat = next((c for c, pat in CATEGORIES if pat.search(stack)), None)
        if cat is None:
            cat = KERNEL if "[kernel" in frames[0] else OTHER
        table[phase][cat] += period
        leaf = frames[0].split(None, 1)[-1]
        leaf = re.sub(r"\+0x[0-9a-f]+", "", leaf)
        top[leaf] = top.get(leaf, 0) + period
        samples += 1

    when = period = None
    frames = []
    for line in out.stdout.splitlines():
        if not line.strip():
            flush(when, period, frames)
            when, frames = None, []
            continue
        m = header_re.match(line)
        if m and not line.startswith(("\t", "      ")):
            flush(when, period, frames)
            when, period, frames = float(m.group(2)), int(m.group(3)), []
        elif when is not None:
            frames.append(line.strip())
    flush(when, period, frames)
    total = sum(sum(v.values()) for v in table.values()) or 1
    leaves = sorted(top.items(), key=lambda kv: -kv[1])[:12]
    return {"samples": samples, "by_phase": {ph: {c: v / 1e9 for c, v in row.items()} for ph, row in table.items()},
            "top_leaves": [(sym, v / total) for sym, v in leaves]}


# ---------------------------------------------------------------------------
# Report


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def span(values):
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return ""
    return f"({min(values):.2f}-{max(values):.2f})"


def fmt_s(v, prec=2):
    return "-" if v is None else f"{v:.{prec}f} s"


def phase_durations(r):
    ph = r["phases"]

    def diff(a, b):
        return ph[b] - ph[a] if a in ph and b in ph else None

    return {"start": ph.get("watching"), "list": diff("watching", "listed"), "index": diff("listed", "synced"),
            "to_readyz": (r["ready_s"] - ph["synced"]) if "synced" in ph and r["ready_s"] is not None else None}


def variant_rows(args, rounds):
    """(row name, value, note) for one binary's timed rounds."""
    n = args.entries
    rows = []
    ready = [r["ready_s"] for r in rounds]
    answer = [r["answer_s"] for r in rounds]
    rows.append(("meshdns start -> /readyz", fmt_s(med(ready)), span(ready)))
    rows.append(("meshdns start -> first answer", fmt_s(med(answer)), span(answer)))
    rss = [r["rss_kib"] / 1024 for r in rounds if r.get("rss_kib")]
    rows.append(("RSS at ready", f"{med(rss):.1f} MiB" if rss else "-",
                 f"{med(rss) * 1024 * 1024 / n:.0f} B/entry" if rss else ""))
    peak = [r["peak_rss_kib"] / 1024 for r in rounds if r.get("peak_rss_kib")]
    rows.append(("peak RSS up to ready (VmHWM)", f"{med(peak):.1f} MiB" if peak else "-", span(peak)))
    phases = [phase_durations(r) for r in rounds]
    for key, name in (("start", "  start -> watching (client, discovery)"),
                      ("list", "  watching -> list complete (list)"),
                      ("index", "  list complete -> synced (index swap)"),
                      ("to_readyz", "  synced log line -> /readyz seen")):
        vals = [p[key] for p in phases]
        rows.append((name, fmt_s(med(vals), 3), span(vals)))
    for key, name in (("meshdns_cpu_s", "meshdns CPU start -> ready"),
                      ("apiserver_cpu_s", "kube-apiserver CPU, same window"),
                      ("etcd_cpu_s", "etcd CPU, same window")):
        m = med([r.get(key) for r in rounds])
        note = f"{m / med(ready) * 100:.0f}% of a core" if m is not None and med(ready) else ""
        rows.append((name, fmt_s(m), note))
    metrics = rounds[-1].get("metrics", {}) if rounds else {}
    for k in sorted(metrics):
        if "timestamp" in k or "age_seconds" in k:
            continue
        rows.append((f"  {k}", f"{metrics[k]:g}", "at ready"))
    return rows


def print_rows(rows):
    width = max(len(r[0]) for r in rows) + 2
    for name, value, note in rows:
        print(f"{name:<{width}}{value:>12}  {note}")


def report(args, created, lists, results, profiles):
    n = args.entries
    print(f"\n=== {n} ServiceEntries in {min(args.namespaces, n)} namespaces"
          f"{f', {args.status_addresses}% with status.addresses' if args.status_addresses else ''}; "
          f"{args.rounds} round(s): median (min-max)")
    rows = []
    if created:
        secs, reqs, retries = created
        rows.append(("create (POST, python)", f"{secs:.1f} s",
                     f"{reqs / secs:.0f}/s, {args.create_workers} threads, {retries} retried"))
    else:
        rows.append(("create (POST, python)", "-", f"reused from --workdir {args.workdir}"))
    for label, key, *_ in LIST_VARIANTS:
        vals = [x[key]["seconds"] for x in lists]
        ok = [x[key] for x in lists if x[key]["seconds"] is not None]
        failed = [x[key]["error"] for x in lists if x[key]["seconds"] is None]
        note = f"{ok[0]['pages']} page(s), {ok[0]['bytes'] / 2**20:.1f} MiB, {ok[0]['items']} items {span(vals)}" \
            if ok else ""
        if failed:
            note += f" {len(failed)}/{len(lists)} failed: {failed[0]}"
        rows.append((f"plain {label}", fmt_s(med(vals)), note.strip()))
    print_rows(rows)
    late = host_of(late_entry(n, args.namespaces), args.namespaces)
    summaries = {}
    for label, rounds in results.items():
        print(f"\n--- {label} ({rounds[0]['binary']}); first answer asked for {late}")
        print_rows(variant_rows(args, rounds))
        print("  per round:")
        for r in rounds:
            p = phase_durations(r)
            print(f"    {r['label']:<4} ready {fmt_s(r['ready_s'])}  answer {fmt_s(r['answer_s'])}  "
                  f"list {fmt_s(p['list'], 3)}  index {fmt_s(p['index'], 3)}  RSS {r['rss_kib'] / 1024:.1f} MiB  "
                  f"CPU meshdns {fmt_s(r['meshdns_cpu_s'])} apiserver {fmt_s(r['apiserver_cpu_s'])} "
                  f"etcd {fmt_s(r['etcd_cpu_s'])}")
            for w in r["warnings"]:
                print(f"         {w}")
        summaries[label] = breakdown(label, rounds, lists, profiles.get(label))
    return summaries


def breakdown(label, rounds, lists, profile):
    """What start -> ready is made of, from the medians of the timed rounds
    and the shares of the profile round."""
    phases = [phase_durations(r) for r in rounds]
    list_s = med([p["list"] for p in phases])
    index_s = med([p["index"] for p in phases]) or 0.0
    ready_s = med([r["ready_s"] for r in rounds])
    cpu = med([r.get("meshdns_cpu_s") for r in rounds])
    api_cpu = med([r.get("apiserver_cpu_s") for r in rounds])
    paged = med([x["paged"]["seconds"] for x in lists])
    rv0 = med([x["rv0"]["seconds"] for x in lists])
    out = {"ready_s": ready_s, "list_s": list_s, "index_s": index_s, "meshdns_cpu_s": cpu,
           "apiserver_cpu_s": api_cpu, "plain_list_paged_s": paged, "plain_list_rv0_s": rv0}
    print(f"\n=== {label}: breakdown of start -> ready (medians of the timed rounds)")
    if None in (list_s, ready_s, cpu):
        print("  (incomplete: phase lines missing from meshdns's log)")
        return out
    print(f"  start -> ready {ready_s:.2f} s = before the list {ready_s - list_s - index_s:.2f} s "
          f"+ list {list_s:.2f} s + index swap {index_s:.3f} s")
    mesh_list_cpu = cpu  # without a profile: all of meshdns's CPU, an upper bound
    parts = {}
    if profile:
        by_phase = profile["by_phase"]
        prof_total = sum(sum(row.values()) for row in by_phase.values()) or 1
        list_cpu = by_phase["list"]
        tot = sum(list_cpu.values()) or 1
        # meshdns's CPU in the list phase of a timed round: its CPU over
        # start -> ready times the profile's share of it in the list phase.
        mesh_list_cpu = cpu * tot / prof_total
        parts = {cat: mesh_list_cpu * v / tot for cat, v in list_cpu.items()}
    wait = max(0.0, list_s - mesh_list_cpu)
    print(f"  list {list_s:.2f} s = waiting for the API server ~{wait:.2f} s (wall - meshdns CPU: pages are "
          f"fetched one after another) + meshdns CPU ~{mesh_list_cpu:.2f} s")
    share = f" ({paged / list_s * 100:.0f}% of meshdns's list phase)" if paged and list_s else ""
    print(f"  kube-apiserver burnt {fmt_s(api_cpu)} CPU over start -> ready; plain python LIST limit={PAGE} "
          f"takes {fmt_s(paged)}{share}, rv=0 from the watch cache {fmt_s(rv0)}")
    if profile:
        print(f"  meshdns CPU in the list phase, by what is on the stack (perf, {profile['samples']} samples):")
        for cat, v in sorted(parts.items(), key=lambda kv: -kv[1]):
            if v / (mesh_list_cpu or 1) >= 0.005:
                print(f"      {cat:<32} {v / (mesh_list_cpu or 1) * 100:5.1f}%  ~{v:.3f} s")
        idx_cpu = profile["by_phase"].get("index", {})
        if sum(idx_cpu.values()):
            print(f"  index swap phase, profile round: {sum(idx_cpu.values()):.3f} s CPU")
        decode = sum(parts.get(c, 0) for c in ("JSON -> DynamicObject", "Value -> ServiceEntry", "free/drop"))
        net = sum(parts.get(c, 0) for c in ("TLS", "HTTP/IO", KERNEL))
        conv = parts.get("convert/index", 0)
        print(f"  => API server serving (+ queueing) ~{wait:.2f} s | transfer in meshdns (TLS, HTTP, syscalls) "
              f"~{net:.2f} s | decode (JSON -> DynamicObject -> ServiceEntry, drop) ~{decode:.2f} s | "
              f"convert/index ~{conv:.2f} s + swap {index_s:.3f} s")
        print("  hottest leaf functions (profile round, all phases):")
        for sym, share in profile["top_leaves"][:8]:
            print(f"      {share * 100:5.1f}%  {sym[:110]}")
        out.update({"meshdns_list_cpu_s": mesh_list_cpu, "list_cpu_by_category_s": parts,
                    "profile_ready_s": profile.get("ready_s")})
    dominant = "the API server (serving the pages)" if wait >= mesh_list_cpu else "meshdns's own processing"
    print(f"  dominant: {dominant}")
    out.update({"api_wait_s": wait, "dominant": dominant})
    return out


# ---------------------------------------------------------------------------
# Main


def settle(cluster, limit, quiet=0.25):
    """Waits (up to `limit` s) until kube-apiserver and etcd together use
    less than `quiet` of a core over a second: creation leaves work behind
    (etcd compaction, the watch cache catching up) that would land in the
    first round. Returns the seconds waited."""
    t0 = time.monotonic()
    pids = [cluster.pid("kube-apiserver"), cluster.pid("etcd")]
    while time.monotonic() - t0 < limit:
        before = sum(cpu_s(p) or 0 for p in pids)
        time.sleep(1)
        if sum(cpu_s(p) or 0 for p in pids) - before < quiet:
            break
    return time.monotonic() - t0


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=100_000, help="ServiceEntries to create (default: 100000)")
    ap.add_argument("--namespaces", type=int, default=200, help="namespaces they are spread over (default: 200)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="fresh meshdns starts (and plain LISTs) against the loaded API server (default: 3)")
    ap.add_argument("--status-addresses", type=int, default=0, metavar="PCT",
                    help="percent of entries with status.addresses instead of spec.addresses (default: 0)")
    ap.add_argument("--create-workers", type=int, default=8,
                    help="concurrent creating threads, one keep-alive connection each (default: 8)")
    ap.add_argument("--create-limit", type=float, default=3600, help="seconds allowed for creating (default: 3600)")
    ap.add_argument("--ready-limit", type=float, default=600,
                    help="seconds a meshdns start may take to become ready (default: 600)")
    ap.add_argument("--poll-ms", type=float, default=10,
                    help="how often /readyz and the DNS answer are polled, in ms: both probes cost meshdns some "
                         "CPU, shown as 'bench probes' in the profile (default: 10)")
    ap.add_argument("--meshdns", default=None,
                    help="meshdns binary (default: $CARGO_TARGET_DIR/release/meshdns or target/release/meshdns)")
    ap.add_argument("--compare", action="append", default=[], metavar="PATH",
                    help="another meshdns build (e.g. an older commit's, or one with a change to the watch) to "
                         "start in the same rounds, right after the main one; repeatable")
    ap.add_argument("--no-profile", dest="profile", action="store_false",
                    help="skip the extra start of each binary under perf record (and so the CPU breakdown)")
    ap.add_argument("--perf", default=None, help="perf binary (default: from PATH)")
    ap.add_argument("--perf-freq", type=int, default=None,
                    help="perf record -F (default: about 8000 samples over the median start -> ready of the timed "
                         "rounds, between 49 and 499 Hz: dwarf call graphs copy 16 KiB of stack per sample)")
    ap.add_argument("--workdir", default=None,
                    help="keep the cluster's state (etcd data), meshdns logs and perf data here (default: a temp dir, "
                         "removed). A later run with the same --workdir and data set options restarts that "
                         "cluster and skips the creation")
    ap.add_argument("--json", default=None, help="also write the results as JSON to this file")
    ap.add_argument("--smoke", action="store_true",
                    help="quick check: 500 entries in 20 namespaces, 1 round (< 1 min with a built apiserver)")
    args = ap.parse_args()
    if args.smoke:
        args.entries, args.namespaces, args.rounds = 500, 20, 1
    if args.entries < 1 or args.namespaces < 1 or args.rounds < 1 or args.create_workers < 1:
        ap.error("--entries, --namespaces, --rounds and --create-workers must be positive")
    if not 0 <= args.status_addresses <= 100:
        ap.error("--status-addresses is a percentage, 0 to 100")
    if args.entries > 16_000_000:
        ap.error("--entries: at most 16M (unique 240.x.y.z addresses)")
    return args


def find_binaries(args):
    """[(label, path)]: the main meshdns, then each --compare build."""
    meshdns = args.meshdns
    if not meshdns:
        target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
        meshdns = os.path.join(target, "release", "meshdns")
    if not os.access(meshdns, os.X_OK):
        die(f"meshdns binary {meshdns} not found: cargo build --release, or pass --meshdns")
    out = [("meshdns", os.path.abspath(meshdns))]
    for i, path in enumerate(args.compare, 1):
        if not os.access(path, os.X_OK):
            die(f"--compare {path}: not an executable")
        out.append((f"compare{i}" if len(args.compare) > 1 else "compare", os.path.abspath(path)))
    return out


def main():
    args = parse_args()
    binaries = find_binaries(args)
    missing = [b for b in ("kube-apiserver", "kubectl") if not os.access(os.path.join(KUBE_CACHE, "bin", b), os.X_OK)]
    if not load.find_tool("etcd"):
        missing.append("etcd")
    if missing:
        die(f"{', '.join(missing)} not found: run tests/kube/apiserver.sh build (builds kube-apiserver into "
            f"{KUBE_CACHE}, installs etcd)")
    if args.profile:
        args.perf = args.perf or load.find_tool("perf")
        if not args.perf:
            log("perf not found: no profile round, no CPU breakdown (apt-get install linux-perf)")
            args.profile = False

    git = load.run_text(["git", "-C", REPO, "rev-parse", "--short", "HEAD"])
    info = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "nproc": os.cpu_count(), "git": git,
            "kube-apiserver": load.run_text([os.path.join(KUBE_CACHE, "bin", "kube-apiserver"), "--version"]),
            "etcd": load.run_text([load.find_tool("etcd"), "--version"]).splitlines()[0],
            "loadavg": os.getloadavg()[0]}
    print(f"kube_startup.py: {info['date']}  nproc {info['nproc']}  load avg {info['loadavg']:.2f}  git {git}")
    for label, path in binaries:
        info[label] = load.run_text([path, "--version"])
        print(f"  {label}: {info[label]} ({path})")
    print(f"  {info['kube-apiserver']}, {info['etcd']}")

    workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix="meshdns-kube-startup-"))
    os.makedirs(workdir, exist_ok=True)
    # Private copies, so that a rebuild during the run cannot change them.
    copies = [(label, shutil.copy2(path, os.path.join(workdir, label)), path) for label, path in binaries]
    cluster = Cluster(os.path.join(workdir, "cluster"))
    started = time.monotonic()
    try:
        up = cluster.start()
        print(f"\netcd + kube-apiserver ready in {up:.1f} s ({cluster.env.get('APISERVER_URL')})", flush=True)
        admin = api_for(cluster.env)
        dataset = {"entries": args.entries, "namespaces": args.namespaces,
                   "status_addresses": args.status_addresses}
        marker = os.path.join(workdir, "dataset.json")
        created = None
        if os.path.exists(marker):
            with open(marker) as f:
                held = json.load(f)
            if held != dataset:
                die(f"--workdir {workdir} holds another data set ({held}); use a fresh --workdir")
            print(f"reusing the {args.entries} ServiceEntries already in {workdir}", flush=True)
        else:
            present = plain_list(admin, PAGE, None)["items"]
            if present:
                die(f"--workdir {workdir}: the API server already holds {present} ServiceEntries but no "
                    f"finished data set (an interrupted run?); use a fresh --workdir")
            setup(admin, args)
            print(f"creating {args.entries} ServiceEntries in {min(args.namespaces, args.entries)} namespaces "
                  f"with {args.create_workers} threads ...", flush=True)
            created = create_all(cluster.env, args)
            print(f"created in {created[0]:.1f} s ({created[1] / created[0]:.0f}/s, {created[2]} retried)",
                  flush=True)
            with open(marker, "w") as f:
                json.dump(dataset, f)
        waited = settle(cluster, 120)
        print(f"API server and etcd quiet after {waited:.0f} s", flush=True)
        late = late_entry(args.entries, args.namespaces)

        lists, results = [], {label: [] for label, _, _ in copies}
        for rnd in range(1, args.rounds + 1):
            one = {}
            for label, key, limit, rv, timeout in LIST_VARIANTS:
                one[key] = plain_list(admin, limit, rv, timeout)
                if one[key]["seconds"] is not None and one[key]["items"] != args.entries:
                    die(f"{label} returned {one[key]['items']} items, not {args.entries}")
            lists.append(one)
            print(f"  round {rnd} plain LISTs: " + ", ".join(
                f"{key} {fmt_s(one[key]['seconds'])}/{one[key]['pages']}p" for _, key, *_ in LIST_VARIANTS),
                flush=True)
            for label, binary, orig in copies:
                r = meshdns_round(args, cluster, binary, late, workdir, f"{label}-r{rnd}")
                r["label"], r["binary"] = f"r{rnd}", orig
                results[label].append(r)
                p = phase_durations(r)
                print(f"  round {rnd} {label}: ready {r['ready_s']:.2f} s, answer {r['answer_s']:.2f} s, "
                      f"list {fmt_s(p['list'], 3)}, RSS {r['rss_kib'] / 1024:.1f} MiB, "
                      f"CPU {fmt_s(r['meshdns_cpu_s'])}", flush=True)
        admin.close()

        profiles = {}
        for label, binary, _ in copies if args.profile else ():
            if not args.perf_freq:
                ready = med([r["ready_s"] for r in results[label]])
                args.perf_freq = int(min(499, max(49, 8000 / max(ready, 0.01))))
            data = os.path.join(workdir, f"perf-{label}.data")
            r = meshdns_round(args, cluster, binary, late, workdir, f"{label}-perf", perf_data=data)
            ph = r["phases"]
            if not all(k in ph for k in ("watching", "listed", "synced")):
                log(f"phase lines missing in {label}'s profile round log; no breakdown")
                continue
            bounds = [("start", -1.0, ph["watching"]), ("list", ph["watching"], ph["listed"]),
                      ("index", ph["listed"], ph["synced"]), ("ready", ph["synced"], r["ready_s"])]
            profile = profile_breakdown(args, data, r["t0_monotonic"], bounds)
            if not args.workdir:
                os.remove(data)
            if profile:
                profile["ready_s"], profile["list_s"] = r["ready_s"], phase_durations(r)["list"]
                profiles[label] = profile
                print(f"  profile round {label} (perf, not in the medians): ready {r['ready_s']:.2f} s, "
                      f"list {profile['list_s']:.3f} s, {profile['samples']} samples", flush=True)

        summary = report(args, created, lists, results, profiles)
        elapsed = time.monotonic() - started
        print(f"\nkube_startup.py: done in {elapsed:.0f} s (figures are rough on a shared or small machine; "
              f"load avg now {os.getloadavg()[0]:.2f})")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"machine": info, "args": vars(args), "elapsed_s": elapsed,
                           "create": dict(zip(("seconds", "entries", "retries"), created or ())),
                           "plain_lists": lists, "rounds": results, "profiles": profiles, "summary": summary},
                          f, indent=1)
            print(f"kube_startup.py: wrote {args.json}")
    finally:
        load._kill_all()
        cluster.stop()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("kube_startup.py: interrupted", file=sys.stderr)
        sys.exit(130)
