#!/usr/bin/env python3
"""Load benchmark: meshdns against Knot DNS, driven by dnsperf, on loopback.

For each zone size N (--sizes) the script generates N names
svc<i>.ns<i%100>.global with unique 240.x.y.z addresses, once as ServiceEntry
YAML (for meshdns --file) and once as a zone file (for Knot), plus a dnsperf
query file: 90% A on existing names, 5% AAAA on existing names (NODATA), 5%
missing names (NXDOMAIN), shuffled with a fixed seed.

It then starts the servers alternately, Knot, meshdns, Knot, meshdns, ...
(--rounds rounds each, a fresh process every round), and per round runs
dnsperf twice against the running server:

  saturation   dnsperf -c CLIENTS -T THREADS -q OUTSTANDING -l SECONDS
  fixed rate   the same plus -Q FIXED_QPS

Figures (per server and size; the table shows the median over rounds):

  QPS                  queries completed per second (dnsperf's figure)
  CPU us/query         server utime+stime (/proc/PID/stat, all threads) over
                       exactly the dnsperf run, divided by queries completed.
                       Tick resolution is 10 ms, negligible over seconds.
  dnsperf's own        dnsperf's CPU (getrusage of the reaped child) per
                       query completed, at saturation. On loopback the load
                       generator costs about as much per query as a server,
                       so on N cores it leaves well under N cores to the
                       server; this shows how much. Left out ("-") for a
                       run that lost queries: dnsperf then spins until its
                       timeout, and that is not load.
  latency avg / p99    dnsperf's average; p99 from dnsperf -v, which prints
                       one line per query with its latency. -v costs dnsperf
                       time, so the saturation run is done without -v and the
                       saturation p99 comes from a shorter saturation run of
                       its own with -v (--saturation-latency-seconds); the
                       fixed-rate run uses -v itself. The p99 leaves out the
                       answers of each run's first second: dnsperf's start-up
                       delays hundreds to thousands of them past 0.5 ms for
                       every server (Knot too), which alone can decide the
                       p99. The row below includes them.
  lost                 queries dnsperf sent but got no answer for (timeouts)
  UDP rcvbuf drops     kernel RcvbufErrors (/proc/net/snmp) during the run:
                       datagrams dropped because a socket's buffer was full
                       (machine-wide counter; shows where lost queries went)
  RSS / PSS            /proc/PID/smaps_rollup after both runs
  start->answer        Popen() to the first correct A answer for the last
                       generated name (raw UDP query, polled every 1 ms)
  NOERROR/NXDOMAIN %   dnsperf's rcode mix; both servers must agree (expected
                       95% NOERROR, 5% NXDOMAIN)
  resp bytes           dnsperf's average response size

One more column, "floor", is benches/udp_floor.rs: a responder that echoes
each query back as a NOERROR response and does no DNS work. It is run the same
way in the same rounds, so its latency is what the machine itself allows
(scheduler, loopback, idle CPUs waking up); judge a server's p99 against it.
In a KVM guest whose guest_halt_poll_ns is 0 (printed at the top), an idle
vCPU halts at once and every wake-up goes through the host: that alone puts
the floor's p99 above 0.5 ms in many runs. Build it with
`cargo build --release --example udp_floor`; without it the column is left out.

--server-cpus K pins the servers to the first K CPUs and dnsperf to the rest, so
that the load generator never runs on a server core: the way to show how
throughput grows with cores (K=1 then K=2; Knot's workers default to K, and
meshdns's default, --workers auto, sizes itself to the K CPUs it may use)
on a machine with more than K CPUs.

meshdns runs with its default flags (--workers auto: one socket, standby
readers woken by a backlog), labelled meshdns-auto (plain "meshdns" for a
binary without auto). --meshdns-workers auto,1,2 runs a variant per value
instead: meshdns-auto, meshdns-w1 (--workers 1), meshdns-w2.

Everything listens on 127.0.0.1 on free ports; servers are killed at the end,
also on Ctrl-C. Needs python3 (stdlib), knotd and dnsperf
(`apt-get install knot dnsperf`), and a built meshdns (`cargo build --release`).

Note that dnsperf and the server share the machine's cores: on a small
machine the server does not get all cores, so saturation QPS is a lower bound
and CPU us/query is the more portable figure.

Flood mode (--flood) asks how a legitimate client fares while the server is
flooded. Per round and server, two dnsperf processes run at once for
--flood-seconds: the flood (-c FLOOD_CLIENTS -q FLOOD_OUTSTANDING, no rate
limit: as fast as dnsperf can send, with thousands of queries outstanding)
and a legitimate client (-c 1 -Q LEGIT_QPS -v, started once the flood runs,
stopped before it ends). It reports the legitimate client's p50/p99/max and
loss, the flood's answered QPS, server CPU, RSS at the end, and the kernel's
receive-buffer drops, with meshdns/Knot ratios. --meshdns-args adds meshdns
variants with extra flags, to measure a setting's trade-off in the same run.
--baseline PATH adds another meshdns binary (an older commit's build) as
"meshdns-base" in every mode, for before/after figures from one run.

TCP mode (--tcp-probes) plays hostile TCP clients against each server in
turn: one that sends a byte of the length prefix and stalls, one that sends
half a query, one that sends nothing (how long until each is closed), then
--tcp-idle-conns idle connections at once (how many the server holds, and
whether 20 new clients are still answered), then --tcp-pipelined queries on
one connection whose answers are never read (RSS, another client's latency,
and whether the server closes it).

Examples:
  python3 benches/load.py                       # full run, several minutes
  python3 benches/load.py --flood --sizes 10000 # the flood benchmark
  python3 benches/load.py --smoke               # under a minute
  python3 benches/load.py --sizes 10000 --rounds 5 --json out.json
  python3 benches/load.py --meshdns-workers auto,1,2 # auto beside 1 and 2 sockets
  python3 benches/load.py --server-cpus 1       # servers on CPU 0, dnsperf on the rest
"""

import argparse
import atexit
import ctypes
import datetime
import hashlib
import json
import os
import random
import resource
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
# Latency percentiles leave out each run's first second (see --help).
SETTLE_S = 1.0

# ---------------------------------------------------------------------------
# Child processes: die with the script, killed at exit and on Ctrl-C/SIGTERM

_children = []


def _die_with_parent():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _child_setup(cpus):
    """preexec_fn: die with this script and, if given, run only on `cpus`."""
    def setup():
        _die_with_parent()
        if cpus:
            os.sched_setaffinity(0, cpus)
    return setup


def spawn(cmd, log_path, cpus=None):
    log = open(log_path, "wb")
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                         preexec_fn=_child_setup(cpus))
    log.close()
    _children.append(p)
    return p


def stop(p, signals=(signal.SIGTERM,), grace=5.0):
    """Sends each signal in turn, waits up to `grace` seconds, then SIGKILL."""
    if p.poll() is None:
        for sig in signals:
            try:
                p.send_signal(sig)
            except ProcessLookupError:
                pass
            time.sleep(0.05)
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    if p in _children:
        _children.remove(p)


def _kill_all():
    for p in list(_children):
        if p.poll() is None:
            p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
    _children.clear()


atexit.register(_kill_all)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

# ---------------------------------------------------------------------------
# Helpers


def die(msg):
    print(f"load.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    die("no port free for both UDP and TCP on 127.0.0.1 after 50 tries")


def find_tool(name):
    path = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
    return shutil.which(name, path=path)


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)


def mem_kib(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, _, rest = line.partition(":")
            if k in ("Rss", "Pss"):
                out[k] = int(rest.split()[0])
    return out.get("Rss"), out.get("Pss")


def udp_rcvbuf_errors():
    """The kernel's count of UDP datagrams dropped for a full receive buffer
    (all sockets of the machine; on an otherwise idle machine, ours)."""
    try:
        with open("/proc/net/snmp") as f:
            udp = [line.split() for line in f if line.startswith("Udp:")]
        return int(udp[1][udp[0].index("RcvbufErrors")])
    except (OSError, ValueError, IndexError):
        return None


def run_text(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip()
    except Exception as e:
        return f"({e})"


def address(i):
    i += 1
    return f"240.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def name(i):
    return f"svc{i}.ns{i % 100}.global"


# ---------------------------------------------------------------------------
# Data


def se_yaml(d):
    """meshdns watches the directory of its --file; this one holds nothing
    else, so that dnsperf's output and the logs written next to the data
    do not wake its watcher (which would count as server CPU)."""
    return os.path.join(d, "meshdns-data", "se.yaml")


def generate(n, queries, seed, d):
    """Writes se.yaml, global.zone and queries.txt for n names into d."""
    os.makedirs(os.path.dirname(se_yaml(d)), exist_ok=True)
    with open(se_yaml(d), "w") as f:
        for i in range(n):
            f.write("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
                    f"metadata: {{name: svc{i}, namespace: ns{i % 100}}}\n"
                    f"spec: {{hosts: [{name(i)}], addresses: [{address(i)}], resolution: DNS}}\n---\n")
    with open(os.path.join(d, "global.zone"), "w") as f:
        f.write("$ORIGIN global.\n$TTL 30\n"
                "@ IN SOA localhost. nobody.invalid. 1 3600 600 86400 5\n@ IN NS localhost.\n")
        for i in range(n):
            f.write(f"svc{i}.ns{i % 100} IN A {address(i)}\n")
    rng = random.Random(seed)
    n_aaaa = n_nx = queries * 5 // 100
    lines = [f"{name(rng.randrange(n))} A" for _ in range(queries - n_aaaa - n_nx)]
    lines += [f"{name(rng.randrange(n))} AAAA" for _ in range(n_aaaa)]
    lines += [f"nx{rng.randrange(n)}.ns{rng.randrange(100)}.global A" for _ in range(n_nx)]
    rng.shuffle(lines)
    with open(os.path.join(d, "queries.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------
# Raw DNS probe


def encode_query(qid, qname):
    q = b"".join(bytes([len(label)]) + label.encode() for label in qname.strip(".").split("."))
    return struct.pack(">HHHHHH", qid, 0x0000, 1, 0, 0, 0) + q + b"\0" + struct.pack(">HH", 1, 1)


def skip_name(msg, off):
    while True:
        length = msg[off]
        if length == 0:
            return off + 1
        if length & 0xC0 == 0xC0:
            return off + 2
        off += 1 + length


def answers_with(msg, qid, want):
    """Whether msg is a NOERROR response to qid holding an A record `want`
    (with `want` None: any NOERROR response to qid)."""
    if len(msg) < 12:
        return False
    rid, flags, qd, an = struct.unpack(">HHHH", msg[:8])
    if rid != qid or not flags & 0x8000 or flags & 0xF != 0:
        return False
    if want is None:
        return True
    try:
        off = 12
        for _ in range(qd):
            off = skip_name(msg, off) + 4
        for _ in range(an):
            off = skip_name(msg, off)
            rtype, _, _, rdlen = struct.unpack(">HHIH", msg[off:off + 10])
            off += 10
            if rtype == 1 and msg[off:off + rdlen] == want:
                return True
            off += rdlen
    except (IndexError, struct.error):
        return False
    return False


def first_answer(port, qname, addr, proc, limit):
    """Polls until the server answers `qname A` with `addr`, or with anything
    if `addr` is None (the caller times it). One query in flight, 5 ms
    receive timeout, 1 ms sleep between tries; bounded by `limit` seconds and
    1M tries. Any response with the right answer counts, also a late one to
    an earlier try (all tries ask the same)."""
    want = socket.inet_aton(addr) if addr else None
    query = encode_query(0x4D44, qname)
    deadline = time.monotonic() + limit
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", port))
        s.settimeout(0.005)
        for _ in range(1_000_000):
            if time.monotonic() > deadline or proc.poll() is not None:
                return False
            try:
                s.send(query)
                if answers_with(s.recv(4096), 0x4D44, want):
                    return True
            except OSError:  # refused (not bound yet) or timed out
                pass
            time.sleep(0.001)
    return False


# ---------------------------------------------------------------------------
# Servers


class Knot:
    answers_dns = True

    def __init__(self, knotd, workers, cpus):
        self.label = "Knot"
        self.knotd, self.workers, self.cpus = knotd, workers, cpus

    def start(self, d, port):
        run = os.path.join(d, "knot-run")
        shutil.rmtree(run, ignore_errors=True)
        os.makedirs(run)
        conf = os.path.join(run, "knot.conf")
        with open(conf, "w") as f:
            f.write(f"""server:
    rundir: "{run}"
    listen: 127.0.0.1@{port}
    udp-workers: {self.workers}
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: warning
database:
    storage: "{run}/db"
control:
    listen: "{run}/knot.sock"
zone:
  - domain: global
    storage: "{d}"
    file: "global.zone"
    zonefile-load: whole
    journal-content: none
    zonefile-sync: -1
""")
        self.log = os.path.join(run, "knotd.log")
        return spawn([self.knotd, "-c", conf], self.log, self.cpus)

    def stop(self, p):
        stop(p)


class Meshdns:
    answers_dns = True

    def __init__(self, binary, workers, label, grace_flag, cpus, extra=()):
        self.label = label
        self.binary, self.workers, self.grace_flag, self.cpus = binary, workers, grace_flag, cpus
        self.extra = list(extra)

    def start(self, d, port):
        cmd = [self.binary, "serve", "--file", se_yaml(d),
               "--dns-addr", f"127.0.0.1:{port}", "--admin-addr", f"127.0.0.1:{free_port()}",
               "--log-level", "warn"]
        if self.grace_flag:
            cmd += ["--shutdown-grace", "0s"]
        if self.workers is not None:
            cmd += ["--workers", str(self.workers)]
        cmd += self.extra
        self.log = os.path.join(d, f"{self.label}.log")
        return spawn(cmd, self.log, self.cpus)

    def stop(self, p):
        # A second signal exits at once, whatever the shutdown grace.
        stop(p, signals=(signal.SIGTERM, signal.SIGTERM))


class Floor:
    """benches/udp_floor.rs: echoes each query as a NOERROR response, no DNS
    work, one thread. Its latency is the machine's own."""
    answers_dns = False

    def __init__(self, binary, cpus):
        self.label = "floor"
        self.binary, self.cpus = binary, cpus

    def start(self, d, port):
        self.log = os.path.join(d, "floor.log")
        return spawn([self.binary, f"127.0.0.1:{port}"], self.log, self.cpus)

    def stop(self, p):
        stop(p)


# ---------------------------------------------------------------------------
# dnsperf

STAT_RE = {
    "sent": r"Queries sent:\s+(\d+)",
    "completed": r"Queries completed:\s+(\d+)",
    "lost": r"Queries lost:\s+(\d+)",
    "qps": r"Queries per second:\s+([\d.]+)",
    "runtime": r"Run time \(s\):\s+([\d.]+)",
    "lat_avg": r"Average Latency \(s\):\s+([\d.]+)",
    "resp_bytes": r"Average packet size:\s+request \d+, response (\d+)",
}


def children_cpu_s():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def dnsperf(args, port, qfile, seconds, qps, verbose, out_path):
    """Runs dnsperf to completion; returns its exit code, its command and
    the CPU seconds it used."""
    cmd = [args.dnsperf, "-s", "127.0.0.1", "-p", str(port), "-d", qfile,
           "-c", str(args.clients), "-T", str(args.threads), "-q", str(args.outstanding),
           "-l", str(seconds)]
    if qps:
        cmd += ["-Q", str(qps)]
    if verbose:
        cmd += ["-v"]
    with open(out_path, "wb") as out:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             preexec_fn=_child_setup(args.client_cpus))
        _children.append(p)
        # Only dnsperf is reaped in between: servers are reaped by stop().
        cpu0 = children_cpu_s()
        try:
            rc = p.wait(seconds + 60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            die(f"dnsperf did not finish within {seconds + 60} s: {' '.join(cmd)}")
        finally:
            _children.remove(p)
    return rc, cmd, children_cpu_s() - cpu0


def percentile(latencies, q):
    s = sorted(latencies)
    return s[min(len(s) - 1, int(q * len(s)))] if s else None


def p99(latencies):
    return percentile(latencies, 0.99)


def parse_dnsperf(out_path, verbose, settle=0.0):
    """Summary figures, rcode mix and (with -v) latency percentiles: over
    every answer, and over the answers after the first `settle` fraction
    of them (the steady state)."""
    res = {}
    lat = []  # seconds, in completion order
    tail = []
    with open(out_path, "rb") as f:
        for raw in f:
            if raw.startswith(b"> "):
                if verbose:
                    parts = raw.split()
                    if len(parts) == 5 and parts[1] != b"T":
                        try:
                            lat.append(float(parts[4]))
                        except ValueError:
                            pass
                continue
            tail.append(raw.decode(errors="replace"))
    text = "".join(tail)
    for key, rx in STAT_RE.items():
        m = re.search(rx, text)
        res[key] = float(m.group(1)) if m else None
    m = re.search(r"Response codes:\s+(.*)", text)
    res["rcodes"] = {k: int(v) for k, v in re.findall(r"([A-Z]+) (\d+) \(", m.group(1))} if m else {}
    res["lat_p99_all"] = p99(lat)
    steady = lat[int(settle * len(lat)):]
    res["lat_p99"] = p99(steady)
    res["lat_p50"] = percentile(steady, 0.5)
    res["lat_max"] = max(steady, default=None)
    res["latency_samples"] = len(lat)
    return res, text


# ---------------------------------------------------------------------------
# One round: start a server, measure startup, run dnsperf twice, read memory


def one_round(args, server, d, n, rnd):
    port = free_port()
    t0 = time.monotonic()
    proc = server.start(d, port)
    ok = first_answer(port, name(n - 1), address(n - 1) if server.answers_dns else None, proc,
                      args.startup_limit)
    startup = time.monotonic() - t0
    if not ok:
        log = open(server.log, errors="replace").read()[-3000:]
        server.stop(proc)
        die(f"{server.label} did not answer {name(n - 1)} A {address(n - 1)} within "
            f"{args.startup_limit} s (exit {proc.poll()}); log:\n{log}")
    r = {"server": server.label, "size": n, "round": rnd, "startup_s": startup}
    qfile = os.path.join(d, "queries.txt")
    out = os.path.join(d, "dnsperf.out")
    try:
        if args.warmup > 0:
            dnsperf(args, port, qfile, args.warmup, args.fixed_qps, False, out)
        runs = [("sat", None, False, args.seconds)]
        if args.saturation_latency_seconds > 0:
            runs.append(("sat_v", None, True, args.saturation_latency_seconds))
        runs.append(("fixed", args.fixed_qps, True, args.seconds))
        for kind, qps, verbose, seconds in runs:
            load = os.getloadavg()[0]
            drops0 = udp_rcvbuf_errors()
            c0 = cpu_ticks(proc.pid)
            rc, cmd, client_cpu_s = dnsperf(args, port, qfile, seconds, qps, verbose, out)
            c1 = cpu_ticks(proc.pid)
            drops1 = udp_rcvbuf_errors()
            if proc.poll() is not None:
                die(f"{server.label} exited during the {kind} run (exit {proc.returncode})")
            res, text = parse_dnsperf(out, verbose, min(0.5, SETTLE_S / seconds))
            if rc != 0 or not res["completed"]:
                die(f"dnsperf failed (exit {rc}): {' '.join(cmd)}\n{text[-3000:]}")
            cpu_s = (c1 - c0) / CLK_TCK
            res["cpu_s"] = cpu_s
            res["cpu_us_per_query"] = cpu_s * 1e6 / res["completed"]
            # After a loss dnsperf spins until its timeout, which is no load.
            res["client_cpu_us_per_query"] = client_cpu_s * 1e6 / res["completed"] if not res["lost"] else None
            res["loadavg_before"] = load
            res["udp_rcvbuf_drops"] = drops1 - drops0 if drops0 is not None and drops1 is not None else None
            r[kind] = res
        r["rss_kib"], r["pss_kib"] = mem_kib(proc.pid)
    finally:
        server.stop(proc)
        if os.path.exists(out):
            os.remove(out)
    return r


# ---------------------------------------------------------------------------
# Tables shared by every mode


def median_rows(results, n, labels, metrics, ratio_to_knot):
    """The medians over rounds per server (size n) as table rows, with a
    ratio to Knot's for each label in ratio_to_knot; and the medians."""
    per = {lab: [r for r in results if r["size"] == n and r["server"] == lab] for lab in labels}
    rows = [["metric"] + [f"{lab} (median)" for lab in labels] + [f"{m}/Knot" for m in ratio_to_knot]]
    meds_by_metric = {}
    for label, get, f in metrics:
        meds = {lab: median(get(r) for r in per[lab]) for lab in labels}
        meds_by_metric[label] = meds
        ratios = [meds[m] / meds["Knot"] if meds[m] is not None and meds["Knot"] else None for m in ratio_to_knot]
        rows.append([label] + [fmt(f, meds[lab]) for lab in labels] + [fmt("{:.2f}", x) for x in ratios])
    return rows, meds_by_metric, len(per["Knot"])


def raw_rows(results, n, metrics):
    """Every round's figures (size n), in run order."""
    rows = [["metric"] + [f"{r['server']} r{r['round']}" for r in results if r["size"] == n]]
    for label, get, f in metrics:
        rows.append([label] + [fmt(f, get(r)) for r in results if r["size"] == n])
    return rows


# ---------------------------------------------------------------------------
# Flood: a flood and a legitimate client at once


def flood_round(args, server, d, n, rnd):
    port = free_port()
    proc = server.start(d, port)
    if not first_answer(port, name(n - 1), address(n - 1), proc, args.startup_limit):
        server.stop(proc)
        die(f"{server.label} did not answer within {args.startup_limit} s")
    qfile = os.path.join(d, "queries.txt")
    flood_out, legit_out = os.path.join(d, "flood.out"), os.path.join(d, "legit.out")
    base = [args.dnsperf, "-s", "127.0.0.1", "-p", str(port), "-d", qfile, "-T", "1"]
    secs = args.flood_seconds
    flood_cmd = base + ["-c", str(args.flood_clients), "-q", str(args.flood_outstanding), "-l", str(secs)]
    # Starts once the flood has filled the queues; ends before it stops.
    legit_cmd = base + ["-c", "1", "-q", "20", "-Q", str(args.legit_qps), "-l", str(secs - 2), "-v"]
    r = {"server": server.label, "size": n, "round": rnd}
    procs = []
    try:
        drops0, c0 = udp_rcvbuf_errors(), cpu_ticks(proc.pid)
        with open(flood_out, "wb") as fo, open(legit_out, "wb") as lo:
            fp = subprocess.Popen(flood_cmd, stdin=subprocess.DEVNULL, stdout=fo, stderr=subprocess.STDOUT,
                                  preexec_fn=_child_setup(args.client_cpus))
            procs.append(fp)
            _children.append(fp)
            time.sleep(1)
            lp = subprocess.Popen(legit_cmd, stdin=subprocess.DEVNULL, stdout=lo, stderr=subprocess.STDOUT,
                                  preexec_fn=_child_setup(args.client_cpus))
            procs.append(lp)
            _children.append(lp)
            for p in procs:
                try:
                    p.wait(secs + 60)
                except subprocess.TimeoutExpired:
                    die(f"dnsperf did not finish within {secs + 60} s")
        c1, drops1 = cpu_ticks(proc.pid), udp_rcvbuf_errors()
        if proc.poll() is not None:
            die(f"{server.label} exited during the flood (exit {proc.returncode})")
        flood, ftext = parse_dnsperf(flood_out, False)
        legit, ltext = parse_dnsperf(legit_out, True)
        if fp.returncode != 0 or lp.returncode != 0 or not legit["sent"]:
            die(f"dnsperf failed: {ftext[-1500:]}\n{ltext[-1500:]}")
        r["legit_p50"], r["legit_p99"], r["legit_max"] = legit["lat_p50"], legit["lat_p99"], legit["lat_max"]
        r["legit_sent"], r["legit_lost"] = legit["sent"], legit["lost"]
        r["legit_lost_pct"] = 100.0 * legit["lost"] / legit["sent"]
        r["flood_qps"], r["flood_lost"] = flood["qps"], flood["lost"]
        r["cpu_s"] = (c1 - c0) / CLK_TCK
        r["drops"] = drops1 - drops0 if drops0 is not None and drops1 is not None else None
        r["rss_kib"], _ = mem_kib(proc.pid)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            if p in _children:
                _children.remove(p)
        server.stop(proc)
    return r


FLOOD_METRICS = [
    ("legit p50 ms", lambda r: ms(r["legit_p50"]), "{:.3f}"),
    ("legit p99 ms", lambda r: ms(r["legit_p99"]), "{:.3f}"),
    ("legit max ms", lambda r: ms(r["legit_max"]), "{:.1f}"),
    ("legit lost", lambda r: r["legit_lost"], "{:.0f}"),
    ("legit lost %", lambda r: r["legit_lost_pct"], "{:.2f}"),
    ("flood answered QPS", lambda r: r["flood_qps"], "{:.0f}"),
    ("server CPU s", lambda r: r["cpu_s"], "{:.1f}"),
    ("kernel rcvbuf drops", lambda r: r["drops"], "{:.0f}"),
    ("RSS MiB at end", lambda r: r["rss_kib"] / 1024 if r["rss_kib"] else None, "{:.1f}"),
]


def flood_report(results, labels, sizes, args):
    summary = {}
    for n in sizes:
        rows, summary[n], rounds = median_rows(results, n, labels, FLOOD_METRICS, labels[1:])
        print(f"\n=== flood, {n} names: {rounds} round(s) per server, {args.flood_seconds} s, "
              f"flood -c {args.flood_clients} -q {args.flood_outstanding}, legitimate -c 1 -Q {args.legit_qps} ===")
        print(table(rows))
        print(f"\nraw per round ({n} names), in run order:")
        print(table(raw_rows(results, n, FLOOD_METRICS)))
    return summary


# ---------------------------------------------------------------------------
# TCP probes: hostile TCP clients, one server at a time


def tcp_query(port, qname, timeout=2.0):
    """One query over a new TCP connection; the latency, or None without a
    correct answer within `timeout`."""
    q = encode_query(0x5443, qname)
    t = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
            c.sendall(struct.pack(">H", len(q)) + q)
            buf = b""
            while len(buf) < 2 or len(buf) < 2 + struct.unpack(">H", buf[:2])[0]:
                chunk = c.recv(4096)
                if not chunk:
                    return None
                buf += chunk
            return time.monotonic() - t if answers_with(buf[2:], 0x5443, None) else None
    except OSError:
        return None


def time_to_close(c, limit):
    """Seconds until the server closes `c` (EOF or reset), or None after `limit`."""
    t = time.monotonic()
    c.settimeout(0.05)
    while time.monotonic() - t < limit:
        try:
            if c.recv(4096) == b"":
                return time.monotonic() - t
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - t
    return None


def is_open(c):
    c.setblocking(False)
    try:
        return c.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def tcp_round(args, server, d, n, rnd):
    port = free_port()
    proc = server.start(d, port)
    if not first_answer(port, name(n - 1), address(n - 1), proc, args.startup_limit):
        server.stop(proc)
        die(f"{server.label} did not answer within {args.startup_limit} s")
    r = {"server": server.label, "size": n, "round": rnd}
    q = encode_query(1, name(0))
    framed = struct.pack(">H", len(q)) + q
    conns = []
    try:
        # A client that sends one byte of the length prefix, then one that
        # sends half a query, then one that sends nothing.
        for key, data in (("stall_prefix_s", framed[:1]), ("stall_message_s", framed[:len(framed) // 2]),
                          ("idle_s", b"")):
            with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                if data:
                    c.sendall(data)
                r[key] = time_to_close(c, args.tcp_probe_limit)
        # Many idle connections at once, bounded in count and time.
        rss0, _ = mem_kib(proc.pid)
        deadline = time.monotonic() + 20
        refused = 0
        for _ in range(args.tcp_idle_conns):
            if time.monotonic() > deadline:
                break
            try:
                conns.append(socket.create_connection(("127.0.0.1", port), timeout=1))
            except OSError:
                refused += 1
        time.sleep(1)
        r["idle_held"] = sum(is_open(c) for c in conns)
        r["idle_refused"] = refused
        lat = [tcp_query(port, name(i)) for i in range(20)]
        r["new_client_answered"] = sum(x is not None for x in lat)
        r["new_client_max_ms"] = max((x for x in lat if x is not None), default=None)
        r["new_client_max_ms"] = r["new_client_max_ms"] * 1000 if r["new_client_max_ms"] else None
        r["idle_rss_growth_mib"] = (mem_kib(proc.pid)[0] - rss0) / 1024
        for c in conns:
            c.close()
        conns = []
        # Pipelined queries that are never read.
        time.sleep(0.5)
        rss0, _ = mem_kib(proc.pid)
        hog = socket.create_connection(("127.0.0.1", port), timeout=0.2)
        conns.append(hog)
        sent = 0
        batch = framed * 1000
        for _ in range(args.tcp_pipelined // 1000):
            try:
                hog.sendall(batch)
            except OSError:
                break
            sent += 1000
        r["pipelined_sent"] = sent
        other = tcp_query(port, name(1))
        r["pipelined_other_ms"] = other * 1000 if other is not None else None
        r["pipelined_rss_growth_mib"] = (mem_kib(proc.pid)[0] - rss0) / 1024
        r["pipelined_closed_s"] = time_to_close(hog, args.tcp_probe_limit)
    finally:
        for c in conns:
            c.close()
        server.stop(proc)
    return r


TCP_METRICS = [
    ("1 byte of prefix, then stall: closed after s", lambda r: r["stall_prefix_s"], "{:.2f}"),
    ("half a query, then stall: closed after s", lambda r: r["stall_message_s"], "{:.2f}"),
    ("connect, send nothing: closed after s", lambda r: r["idle_s"], "{:.2f}"),
    ("idle connections still open after 1 s", lambda r: r["idle_held"], "{:.0f}"),
    ("connects refused or timed out", lambda r: r["idle_refused"], "{:.0f}"),
    ("then new clients answered (of 20)", lambda r: r["new_client_answered"], "{:.0f}"),
    ("  slowest of them ms", lambda r: r["new_client_max_ms"], "{:.1f}"),
    ("RSS growth with idle conns MiB", lambda r: r["idle_rss_growth_mib"], "{:.1f}"),
    ("pipelined queries sent unread", lambda r: r["pipelined_sent"], "{:.0f}"),
    ("  meanwhile another client ms", lambda r: r["pipelined_other_ms"], "{:.1f}"),
    ("  RSS growth MiB", lambda r: r["pipelined_rss_growth_mib"], "{:.1f}"),
    ("  the reader-less client closed after s", lambda r: r["pipelined_closed_s"], "{:.2f}"),
]


def tcp_report(results, labels, sizes, args):
    summary = {}
    for n in sizes:
        rows, summary[n], rounds = median_rows(results, n, labels, TCP_METRICS, [])
        rows[0][0] = "probe"
        print(f"\n=== TCP probes, {n} names: {rounds} round(s) per server; {args.tcp_idle_conns} idle "
              f"connections, {args.tcp_pipelined} pipelined queries; '-' = not closed within "
              f"{args.tcp_probe_limit} s ===")
        print(table(rows))
    return summary


# ---------------------------------------------------------------------------
# Report

METRICS = [
    # (label, getter, format)
    ("QPS saturation", lambda r: r["sat"]["qps"], "{:.0f}"),
    ("CPU µs/query saturation", lambda r: r["sat"]["cpu_us_per_query"], "{:.2f}"),
    ("  dnsperf's own", lambda r: r["sat"].get("client_cpu_us_per_query"), "{:.2f}"),
    ("latency avg ms saturation", lambda r: ms(r["sat"]["lat_avg"]), "{:.3f}"),
    ("latency p99 ms saturation", lambda r: ms(r.get("sat_v", {}).get("lat_p99")), "{:.3f}"),
    ("  same, first 1 s included", lambda r: ms(r.get("sat_v", {}).get("lat_p99_all")), "{:.3f}"),
    ("lost saturation", lambda r: r["sat"]["lost"], "{:.0f}"),
    ("UDP rcvbuf drops saturation", lambda r: r["sat"]["udp_rcvbuf_drops"], "{:.0f}"),
    ("QPS fixed", lambda r: r["fixed"]["qps"], "{:.0f}"),
    ("CPU µs/query fixed", lambda r: r["fixed"]["cpu_us_per_query"], "{:.2f}"),
    ("latency avg ms fixed", lambda r: ms(r["fixed"]["lat_avg"]), "{:.3f}"),
    ("latency p99 ms fixed", lambda r: ms(r["fixed"].get("lat_p99")), "{:.3f}"),
    ("  same, first 1 s included", lambda r: ms(r["fixed"].get("lat_p99_all")), "{:.3f}"),
    ("lost fixed", lambda r: r["fixed"]["lost"], "{:.0f}"),
    ("UDP rcvbuf drops fixed", lambda r: r["fixed"]["udp_rcvbuf_drops"], "{:.0f}"),
    ("RSS MiB", lambda r: r["rss_kib"] / 1024 if r["rss_kib"] else None, "{:.1f}"),
    ("PSS MiB", lambda r: r["pss_kib"] / 1024 if r["pss_kib"] else None, "{:.1f}"),
    ("start->answer ms", lambda r: r["startup_s"] * 1000, "{:.1f}"),
    ("NOERROR % saturation", lambda r: rcode_pct(r["sat"], "NOERROR"), "{:.2f}"),
    ("NXDOMAIN % saturation", lambda r: rcode_pct(r["sat"], "NXDOMAIN"), "{:.2f}"),
    ("other rcodes saturation", lambda r: other_rcodes(r["sat"]), "{:.0f}"),
    ("resp bytes avg", lambda r: r["sat"]["resp_bytes"], "{:.0f}"),
]


def ms(s):
    return None if s is None else s * 1000


def rcode_pct(res, code):
    total = sum(res["rcodes"].values())
    return 100.0 * res["rcodes"].get(code, 0) / total if total else None


def other_rcodes(res):
    return sum(v for k, v in res["rcodes"].items() if k not in ("NOERROR", "NXDOMAIN"))


def fmt(f, v):
    return "-" if v is None else f.format(v)


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def table(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, r in enumerate(rows):
        lines.append(" | ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                                for i, (c, w) in enumerate(zip(r, widths))))
        if k == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def report(results, labels, sizes, args):
    summary = {}
    for n in sizes:
        mesh = [lab for lab in labels[1:] if lab != "floor"]
        rows, summary[n], rounds = median_rows(results, n, labels, METRICS, mesh)
        print(f"\n=== {n} names: {rounds} round(s) per server, {args.seconds} s per run, "
              f"saturation -c {args.clients} -T {args.threads} -q {args.outstanding}, fixed -Q {args.fixed_qps} ===")
        print(table(rows))
        if "floor" in labels:
            print("floor: a UDP responder that does no DNS work (benches/udp_floor.rs); its latency is the "
                  "machine's own")
        print(f"\nraw per round ({n} names), in run order:")
        raw = raw_rows(results, n, METRICS)
        raw.append(["load avg before sat"] + [f"{r['sat']['loadavg_before']:.2f}" for r in results if r["size"] == n])
        print(table(raw))
    return summary


HALT_POLL = "/sys/module/haltpoll/parameters/guest_halt_poll_ns"


def halt_poll_ns():
    """A KVM guest's idle-loop poll time (cpuidle-haltpoll), or None. At 0
    an idle vCPU halts at once and each wake-up goes through the host, which
    shows in every server's latency tail."""
    try:
        with open(HALT_POLL) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def sha256_prefix(path):
    """The first 12 hex digits of a file's SHA-256: tells builds apart."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def machine_info(args, meshdns):
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    except OSError:
        pass
    dp = run_text([args.dnsperf, "-h"])
    m = re.search(r"Version ([\d.]+\S*)", dp)
    git = run_text(["git", "-C", REPO, "describe", "--always", "--dirty"])
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": CORES,
        "cpu": cpu,
        "knotd": run_text([args.knotd, "-V"]),
        "dnsperf": m.group(1) if m else dp.splitlines()[-1:],
        "meshdns": run_text([meshdns, "--version"]),
        "meshdns_binary": meshdns,
        "git": git,
        "guest_halt_poll_ns": halt_poll_ns(),
        "server_cpus": sorted(args.server_cpus) if args.server_cpus else None,
        "client_cpus": sorted(args.client_cpus) if args.client_cpus else None,
        "sha256": {},  # per variant, of the binary it ran (filled in with the copies)
    }


# ---------------------------------------------------------------------------
# Main


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000", help="comma-separated zone sizes (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per server and size, alternating (default: 3)")
    ap.add_argument("--seconds", type=int, default=15, help="dnsperf -l for each run (default: 15)")
    ap.add_argument("--warmup", type=float, default=1,
                    help="seconds of fixed-rate load before measuring, 0 to skip (default: 1)")
    ap.add_argument("--fixed-qps", type=int, default=20000, help="dnsperf -Q of the fixed-rate run (default: 20000)")
    ap.add_argument("--clients", type=int, default=4, help="dnsperf -c (default: 4)")
    ap.add_argument("--threads", type=int, default=1, help="dnsperf -T (default: 1)")
    ap.add_argument("--outstanding", type=int, default=200, help="dnsperf -q (default: 200)")
    ap.add_argument("--queries", type=int, default=200000, help="lines in the query file (default: 200000)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the query mix (default: 1)")
    ap.add_argument("--saturation-latency-seconds", type=int, default=None, metavar="S",
                    help="length of the extra saturation run with dnsperf -v that measures the saturation "
                         "p99 (-v costs dnsperf CPU, so QPS and CPU come from the run without it); 0 skips "
                         "it (default: a third of --seconds, at least 2)")
    ap.add_argument("--workers", type=workers_value, default=None, metavar="auto|N",
                    help="meshdns --workers for the default variant, --baseline and --meshdns-args, passed "
                         "only if `meshdns serve --help` has it (default: none, so the binary's default: "
                         "auto, one socket with standby readers)")
    ap.add_argument("--meshdns-workers", default=None, metavar="LIST",
                    help="comma-separated --workers values, e.g. auto,1,2: run one meshdns variant each, "
                         "labelled meshdns-auto, meshdns-w1, ... (ignored if meshdns has no --workers flag)")
    ap.add_argument("--knot-workers", type=int, default=None,
                    help=f"Knot udp-workers (default: cores, {CORES}, or K with --server-cpus K)")
    ap.add_argument("--meshdns", default=None,
                    help="meshdns binary (default: $CARGO_TARGET_DIR/release/meshdns or target/release/meshdns)")
    ap.add_argument("--baseline", default=None, metavar="PATH",
                    help="another meshdns binary (e.g. built from an older commit), run with the same flags as "
                         "the default variant in the same interleaved rounds, labelled meshdns-base: "
                         "before/after figures from one run")
    ap.add_argument("--floor", default=None,
                    help="udp_floor binary, the latency floor run beside the servers (default: "
                         "examples/udp_floor next to the meshdns binary; build it with "
                         "`cargo build --release --example udp_floor`)")
    ap.add_argument("--no-floor", action="store_true", help="do not run the latency floor")
    ap.add_argument("--server-cpus", dest="server_cpus_k", type=int, default=None, metavar="K",
                    help="pin every server to the first K CPUs and dnsperf to the other CPUs, so that the "
                         "load generator never takes a server core; needs more than K CPUs. Workers "
                         "default to K. Run with K=1 and K=2 for the 1-core and 2-core figures "
                         "(default: no pinning)")
    ap.add_argument("--knotd", default=None, help="knotd binary (default: from PATH and sbin dirs)")
    ap.add_argument("--dnsperf", default=None, help="dnsperf binary (default: from PATH)")
    ap.add_argument("--workdir", default=None, help="keep generated files here (default: a temp dir, removed)")
    ap.add_argument("--startup-limit", type=float, default=120, help="seconds to wait for a first answer (default: 120)")
    ap.add_argument("--json", default=None, help="also write the results as JSON to this file")
    ap.add_argument("--flood", action="store_true",
                    help="flood mode: a flood and a legitimate client at once (see above), instead of the "
                         "saturation and fixed-rate runs")
    ap.add_argument("--flood-seconds", type=int, default=10, help="length of each flood (default: 10)")
    ap.add_argument("--flood-clients", type=int, default=100, help="flood dnsperf -c (default: 100)")
    ap.add_argument("--flood-outstanding", type=int, default=5000, help="flood dnsperf -q (default: 5000)")
    ap.add_argument("--legit-qps", type=int, default=125, help="legitimate client's -Q (default: 125)")
    ap.add_argument("--tcp-probes", action="store_true",
                    help="TCP mode: hostile TCP clients (a stalled length prefix, half a query, an idle "
                         "connection, many idle connections, pipelined queries never read) against each "
                         "server, instead of the UDP runs")
    ap.add_argument("--tcp-idle-conns", type=int, default=4000,
                    help="idle connections opened at once in TCP mode (default: 4000)")
    ap.add_argument("--tcp-pipelined", type=int, default=20000,
                    help="pipelined queries sent without reading in TCP mode (default: 20000)")
    ap.add_argument("--tcp-probe-limit", type=float, default=15,
                    help="seconds to wait for a server to close a probe connection (default: 15)")
    ap.add_argument("--meshdns-args", action="append", default=[], metavar="ARGS",
                    help="add a meshdns variant run with these extra flags (space-separated), e.g. "
                         "'--udp-queue-delay 0'; repeatable. The default-flags variant always runs")
    ap.add_argument("--smoke", action="store_true",
                    help="quick check: 200 names, 1 round, 2 s runs, fixed 2000 qps, no warm-up; a 4 s flood; "
                         "300 idle TCP connections and 2000 pipelined queries")
    args = ap.parse_args()
    if args.smoke:
        args.sizes, args.rounds, args.seconds, args.fixed_qps = "200", 1, 2, 2000
        args.queries, args.warmup = 5000, 0
        args.flood_seconds, args.flood_outstanding = 4, 1000
        args.tcp_idle_conns, args.tcp_pipelined, args.tcp_probe_limit = 300, 2000, 12
    if args.flood and args.flood_seconds < 4:
        ap.error("--flood-seconds must be at least 4")
    if args.saturation_latency_seconds is None:
        args.saturation_latency_seconds = max(2, args.seconds // 3)
    if args.saturation_latency_seconds < 0:
        ap.error("--saturation-latency-seconds must be 0 or more")
    args.server_cpus = args.client_cpus = None
    if args.server_cpus_k is not None:
        k = args.server_cpus_k
        cpus = sorted(os.sched_getaffinity(0))
        if not 1 <= k < len(cpus):
            ap.error(f"--server-cpus {k}: needs 1 <= K < the {len(cpus)} CPUs this script may use")
        args.server_cpus, args.client_cpus = set(cpus[:k]), set(cpus[k:])
    # Knot: one worker per core the servers may use. meshdns's auto sizes
    # itself to the CPUs it may use (sched affinity), so it needs no count.
    server_cores = args.server_cpus_k or CORES
    args.knot_workers = args.knot_workers or server_cores
    try:
        args.meshdns_workers = [workers_value(x) for x in (args.meshdns_workers or "").split(",") if x.strip()]
    except argparse.ArgumentTypeError as e:
        ap.error(f"--meshdns-workers: {e}")
    return args


def workers_value(s):
    """A meshdns --workers value: "auto" or a positive number."""
    s = s.strip()
    if s.lower() == "auto":
        return "auto"
    if s.isdigit() and int(s) >= 1:
        return int(s)
    raise argparse.ArgumentTypeError(f"{s!r}: expected auto or a positive number")


def workers_label(w):
    return "meshdns-auto" if w == "auto" else f"meshdns-w{w}"


def main():
    args = parse_args()
    args.knotd = args.knotd or find_tool("knotd")
    args.dnsperf = args.dnsperf or find_tool("dnsperf")
    missing = [t for t, p in (("knotd", args.knotd), ("dnsperf", args.dnsperf)) if not p]
    if missing:
        die(f"{' and '.join(missing)} not found: apt-get install knot dnsperf")
    meshdns = args.meshdns
    if not meshdns:
        target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
        meshdns = os.path.join(target, "release", "meshdns")
    if not os.access(meshdns, os.X_OK):
        die(f"meshdns binary {meshdns} not found: cargo build --release, or pass --meshdns")
    meshdns = os.path.abspath(meshdns)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if any(n < 1 for n in sizes) or args.rounds < 1 or args.seconds < 1:
        die("sizes, --rounds and --seconds must be positive")

    help_text = run_text([meshdns, "serve", "--help"])
    has_workers = "--workers" in help_text
    has_auto = "--workers <auto|N>" in help_text
    grace = "--shutdown-grace" in help_text
    if "auto" in args.meshdns_workers + [args.workers] and not has_auto:
        die(f"{meshdns} has no --workers auto")
    workers = args.workers if has_workers else None
    cpus = args.server_cpus
    servers = [Knot(args.knotd, args.knot_workers, cpus)]
    if has_workers and args.meshdns_workers:
        for w in args.meshdns_workers:
            servers.append(Meshdns(meshdns, w, workers_label(w), grace, cpus))
    else:
        # The binary's default flags, unless --workers says otherwise.
        label = workers_label(workers) if workers is not None else "meshdns-auto" if has_auto else "meshdns"
        servers.append(Meshdns(meshdns, workers, label, grace, cpus))
    if args.baseline:
        base = os.path.abspath(args.baseline)
        if not os.access(base, os.X_OK):
            die(f"--baseline {base}: not an executable")
        servers.append(Meshdns(base, workers, "meshdns-base", grace, cpus))
    for i, extra in enumerate(args.meshdns_args, 1):
        servers.append(Meshdns(meshdns, workers, f"meshdns-v{i}", grace, cpus, extra.split()))
        print(f"load.py: variant meshdns-v{i}: {extra}")
    if args.flood or args.tcp_probes:
        args.no_floor = True
    if not args.no_floor:
        floor = os.path.abspath(args.floor or os.path.join(os.path.dirname(meshdns), "examples", "udp_floor"))
        if os.access(floor, os.X_OK):
            servers.append(Floor(floor, cpus))
        elif args.floor:
            die(f"--floor {floor}: not an executable")
        else:
            print(f"load.py: no latency floor ({floor} not built: cargo build --release --example udp_floor)")
    labels = [s.label for s in servers]

    info = machine_info(args, meshdns)
    print(f"load.py: {info['date']}  nproc {info['nproc']}  cpu {info['cpu']}")
    print(f"  {info['knotd']}\n  dnsperf {info['dnsperf']}\n  {info['meshdns']} ({meshdns}, git {info['git']})")
    print(f"  meshdns --workers: {'auto or N' if has_auto else 'N' if has_workers else 'not supported'}; "
          f"variants: {', '.join(labels)}; Knot udp-workers {args.knot_workers}")
    hp = info["guest_halt_poll_ns"]
    if hp is not None:
        print(f"  guest_halt_poll_ns {hp}" + (" (idle vCPUs halt at once: wake-ups go through the host and "
                                               "lengthen every server's latency tail)" if hp == 0 else ""))
    if cpus:
        print(f"  pinned: servers on CPUs {sorted(cpus)}, dnsperf on CPUs {sorted(args.client_cpus)}")
    print(f"  load avg at start: {os.getloadavg()[0]:.2f}")

    workdir = args.workdir or tempfile.mkdtemp(prefix="meshdns-load-")
    os.makedirs(workdir, exist_ok=True)
    # Private copies, so that a rebuild during the run cannot mix binaries:
    # one per distinct binary (variants of one build share theirs).
    copies = {}
    for s in servers[1:]:
        source = s.binary
        if source not in copies:
            name = ("udp_floor" if isinstance(s, Floor) else "meshdns" if source == meshdns
                    else "meshdns-base")
            copy = shutil.copy2(source, os.path.join(workdir, name))
            copies[source] = copy, sha256_prefix(copy)
        s.binary, info["sha256"][s.label] = copies[source]
        print(f"  {s.label}: {source}, sha256 {info['sha256'][s.label]}")
    started = time.monotonic()
    results = []
    try:
        for n in sizes:
            d = os.path.join(workdir, f"n{n}")
            t = time.monotonic()
            generate(n, args.queries, args.seed, d)
            print(f"\n[{n} names] generated in {time.monotonic() - t:.1f} s in {d}", flush=True)
            for rnd in range(1, args.rounds + 1):
                for server in servers:
                    if args.tcp_probes:
                        r = tcp_round(args, server, d, n, rnd)
                        results.append(r)
                        print(f"  round {rnd} {server.label:<12} " + "  ".join(
                            f"{k} {fmt('{:.2f}', v) if isinstance(v, float) else v}" for k, v in r.items()
                            if k not in ("server", "size", "round")), flush=True)
                        continue
                    if args.flood:
                        r = flood_round(args, server, d, n, rnd)
                        results.append(r)
                        print(f"  round {rnd} {server.label:<12} legit p50 {fmt('{:.3f}', ms(r['legit_p50']))} "
                              f"p99 {fmt('{:.3f}', ms(r['legit_p99']))} ms lost {r['legit_lost']:.0f}/"
                              f"{r['legit_sent']:.0f}  flood {r['flood_qps']:.0f} qps  cpu {r['cpu_s']:.1f} s  "
                              f"drops {r['drops']}", flush=True)
                        continue
                    r = one_round(args, server, d, n, rnd)
                    results.append(r)
                    print(f"  round {rnd} {server.label:<12} start {r['startup_s'] * 1000:7.1f} ms  "
                          f"sat {r['sat']['qps']:9.0f} qps {r['sat']['cpu_us_per_query']:6.2f} µs/q "
                          f"lost {r['sat']['lost']:.0f}  fixed {r['fixed']['qps']:7.0f} qps "
                          f"{r['fixed']['cpu_us_per_query']:6.2f} µs/q "
                          f"p99 {fmt('{:.3f}', ms(r['fixed']['lat_p99']))} ms", flush=True)
        summary = (tcp_report if args.tcp_probes else flood_report if args.flood else report)(
            results, labels, sizes, args)
        elapsed = time.monotonic() - started
        print(f"\nload.py: done in {elapsed:.0f} s")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"machine": info, "args": vars(args), "variants": labels, "elapsed_s": elapsed,
                           "summary": {str(k): v for k, v in summary.items()}, "rounds": results}, f, indent=1,
                          default=lambda o: sorted(o) if isinstance(o, set) else str(o))
            print(f"load.py: wrote {args.json}")
    finally:
        _kill_all()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        _kill_all()
        print("load.py: interrupted", file=sys.stderr)
        sys.exit(130)
