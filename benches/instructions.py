#!/usr/bin/env python3
"""Server-side instructions and system calls per query: figures that do not
depend on what else the machine is doing, unlike load.py's CPU time.

Each server (Knot, meshdns, optionally a --baseline meshdns build, each
meshdns with every --workers value asked for: auto or a number) answers load.py's query mix
(90% A, 5% AAAA NODATA, 5% NXDOMAIN over N names) from dnsperf at a low fixed
rate, twice: a short pass and a long one, in fresh processes. The figure per
query is the difference between the two passes divided by the difference in
completed queries, so start-up, the table load and shutdown cancel out.

  instructions/query   valgrind --tool=callgrind, user-space instructions
                       (Ir) of every thread, the kernel not included
  syscalls/query       strace -f -c, every thread, by name

Run from the repository:
  python3 benches/instructions.py [--names 10000] [--workers auto,1,2]
      [--meshdns PATH] [--baseline PATH] [--qps 1000] [--short 3] [--long 12]

valgrind slows a server down 20-50x, hence the low rate; dnsperf's figure of
completed queries is what is divided by, and the run fails if the server
lost more than 1% (it fell behind, and the difference would not be load).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402  (the data, servers and dnsperf runner)


def measure(server, d, n, tool, seconds, args):
    """One fresh server under `tool` ("callgrind" or "strace"), one dnsperf
    pass of `seconds`; returns (completed queries, count, detail)."""
    out = os.path.join(d, f"{tool}.out")
    if os.path.exists(out):
        os.remove(out)
    prefix = {
        "callgrind": ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no",
                      "--compress-strings=no"],
        "strace": ["strace", "-f", "-c", "-o", out, "--"],
    }[tool]
    real_spawn = load.spawn
    load.spawn = lambda cmd, log, cpus=None: real_spawn(prefix + cmd, log, cpus)
    try:
        port = load.free_port()
        proc = server.start(d, port)
    finally:
        load.spawn = real_spawn
    try:
        if not load.first_answer(port, load.name(n - 1), load.address(n - 1), proc, 300):
            load.die(f"{server.label} under {tool} did not answer; log:\n{open(server.log).read()[-3000:]}")
        perf = os.path.join(d, "dnsperf.out")
        rc, cmd, _ = load.dnsperf(args, port, os.path.join(d, "queries.txt"), seconds, args.qps, False, perf)
        res, text = load.parse_dnsperf(perf, False)
        if rc != 0 or not res["completed"]:
            load.die(f"dnsperf failed: {' '.join(cmd)}\n{text[-2000:]}")
        if res["lost"] > res["completed"] / 100:
            load.die(f"{server.label} under {tool} lost {res['lost']} of {res['sent']} queries: lower --qps")
    finally:
        # strace does not pass a SIGTERM on: signal the server it runs.
        target = proc.pid
        if tool == "strace":
            with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                target = int(f.read().split()[0])
        for _ in range(2):
            try:
                os.kill(target, load.signal.SIGTERM)
            except ProcessLookupError:
                break
            load.time.sleep(0.05)
        load.stop(proc, signals=(), grace=120)
    text = open(out).read()
    if tool == "callgrind":
        m = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
        if not m:
            load.die(f"no callgrind totals in {out}")
        return res["completed"], int(m.group(1)), {}
    calls = {}
    for line in text.splitlines():
        f = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(f) >= 5 and f[3].isdigit() and not line.lstrip().startswith("-") and f[-1] != "total":
            calls[f[-1]] = int(f[3])
    return res["completed"], sum(calls.values()), calls


def per_query(server, d, n, tool, args):
    q1, c1, d1 = measure(server, d, n, tool, args.short, args)
    q2, c2, d2 = measure(server, d, n, tool, args.long, args)
    if q2 <= q1:
        load.die(f"{server.label}: the long pass completed no more queries than the short one")
    top = {k: (d2.get(k, 0) - d1.get(k, 0)) / (q2 - q1) for k in set(d1) | set(d2)}
    top = {k: v for k, v in sorted(top.items(), key=lambda kv: -kv[1]) if v >= 0.05}
    return (c2 - c1) / (q2 - q1), top


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--names", type=int, default=10000, help="zone size (default: %(default)s)")
    ap.add_argument("--workers", default="auto,1,2",
                    help="meshdns --workers values to run, auto or a number (default: %(default)s); a --baseline "
                         "without auto runs with its default flags for auto")
    ap.add_argument("--meshdns", default=None, help="meshdns binary (default: $CARGO_TARGET_DIR/release/meshdns)")
    ap.add_argument("--baseline", default=None, metavar="PATH", help="another meshdns build to run the same way")
    ap.add_argument("--no-knot", action="store_true", help="leave Knot out")
    ap.add_argument("--no-strace", action="store_true", help="instructions only")
    ap.add_argument("--qps", type=int, default=1000, help="dnsperf -Q (default: %(default)s)")
    ap.add_argument("--short", type=int, default=3, help="seconds of the short pass (default: %(default)s)")
    ap.add_argument("--long", type=int, default=12, help="seconds of the long pass (default: %(default)s)")
    args = ap.parse_args()
    # What load.dnsperf reads from its arguments.
    args.dnsperf = load.find_tool("dnsperf")
    args.clients, args.threads, args.outstanding, args.client_cpus = 1, 1, 100, None
    for tool in ("dnsperf", "valgrind") + (() if args.no_strace else ("strace",)):
        if not shutil.which(tool):
            load.die(f"{tool} not found")
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(load.REPO, "target")
    meshdns = os.path.abspath(args.meshdns or os.path.join(target, "release", "meshdns"))
    servers = []
    if not args.no_knot:
        knotd = load.find_tool("knotd")
        if not knotd:
            load.die("knotd not found")
        servers.append(load.Knot(knotd, 1, None))
    try:
        workers = [load.workers_value(x) for x in args.workers.split(",") if x.strip()]
    except argparse.ArgumentTypeError as e:
        ap.error(f"--workers: {e}")
    for w in workers:
        label = load.workers_label(w)
        servers.append(load.Meshdns(meshdns, w, label, True, None))
        if args.baseline:
            base = os.path.abspath(args.baseline)
            has_auto = "--workers <auto|N>" in load.run_text([base, "serve", "--help"])
            bw = None if w == "auto" and not has_auto else w
            servers.append(load.Meshdns(base, bw, label.replace("meshdns-", "meshdns-base-"), True, None))
    d = tempfile.mkdtemp(prefix="meshdns-instr-")
    try:
        load.generate(args.names, 50000, 1, d)
        rows = []
        for s in servers:
            ir, _ = per_query(s, d, args.names, "callgrind", args)
            sc, top = (None, {}) if args.no_strace else per_query(s, d, args.names, "strace", args)
            rows.append((s.label, ir, sc, top))
            print(f"  {s.label:18} {ir:10.0f} instructions/query"
                  + ("" if sc is None else f"  {sc:6.2f} syscalls/query  "
                     + ", ".join(f"{k} {v:.2f}" for k, v in top.items())), flush=True)
        knot = next((r[1] for r in rows if r[0] == "Knot"), None)
        print(f"\n{args.names} names, dnsperf -Q {args.qps}, passes of {args.short} s and {args.long} s")
        print("| server | instructions/query | vs Knot | syscalls/query |\n|---|---|---|---|")
        for label, ir, sc, _ in rows:
            ratio = f"{ir / knot:.2f}" if knot else "-"
            print(f"| {label} | {ir:,.0f} | {ratio} | {'-' if sc is None else f'{sc:.2f}'} |")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
