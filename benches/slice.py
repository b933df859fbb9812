#!/usr/bin/env python3
"""The scheduler slice at a fixed rate: meshdns with --udp-sched-slice auto,
100us (always) and 0 (never), optionally beside Knot, in interleaved rounds
of fresh processes, with optional CPU hogs (busy loops) running meanwhile.

Per round and variant: server CPU per answered query, dnsperf's p50 and p99
(the first second left out, as in load.py), and the UDP readers' mean wait
on a run queue per wake-up (/proc/PID/task/TID/schedstat: what a short
slice shortens). Medians at the end.

  python3 benches/slice.py --rounds 4               # a quiet machine
  python3 benches/slice.py --rounds 4 --hogs 2      # every core busy

Every run is bounded: --rounds x variants x --seconds of dnsperf, and the
hogs are killed after each run.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402


def readers(pid, knot):
    """Run-queue wait (ns) and wake-ups of the UDP reader threads (every
    thread for Knot)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
            _, wait, slices = map(int, open(f"/proc/{pid}/task/{tid}/schedstat").read().split())
        except OSError:
            continue
        if knot or name.startswith("dns-udp"):
            out[tid] = (wait, slices)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--meshdns", default="target/release/meshdns")
    ap.add_argument("--knotd", default=None, help="also run Knot (knotd path; default: none)")
    ap.add_argument("--size", type=int, default=10000, help="names (default: 10000)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=6, help="dnsperf run per round (default: 6)")
    ap.add_argument("--qps", type=int, default=20000)
    ap.add_argument("--hogs", type=int, default=0, help="busy loops running during each run (default: 0)")
    args = ap.parse_args()
    if not 1 <= args.rounds <= 20 or not 1 <= args.seconds <= 60 or not 0 <= args.hogs <= 64:
        load.die("--rounds 1-20, --seconds 1-60, --hogs 0-64")
    meshdns = os.path.abspath(args.meshdns)
    variants = [(f"slice {m}", load.Meshdns(meshdns, None, m, True, None, ["--udp-sched-slice", m]))
                for m in ("auto", "100us", "0")]
    if args.knotd:
        variants.append(("knot", load.Knot(args.knotd, 2, None)))
    d = tempfile.mkdtemp(prefix="meshdns-slice-")
    load.generate(args.size, 100000, 1, d)
    perf = types.SimpleNamespace(dnsperf=load.find_tool("dnsperf"), clients=4, threads=1, outstanding=200,
                                 client_cpus=None)
    out_path = os.path.join(d, "dnsperf.out")
    rows = {label: [] for label, _ in variants}
    for r in range(args.rounds):
        for label, server in variants:
            port = load.free_port()
            p = server.start(d, port)
            if not load.first_answer(port, load.name(args.size - 1), load.address(args.size - 1), p, 60):
                load.die(f"{label}: no answer")
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
            try:
                time.sleep(0.5)
                a, t0 = readers(p.pid, label == "knot"), load.cpu_ticks(p.pid)
                load.dnsperf(perf, port, os.path.join(d, "queries.txt"), args.seconds, args.qps, True, out_path)
                b, t1 = readers(p.pid, label == "knot"), load.cpu_ticks(p.pid)
            finally:
                for h in hogs:
                    h.kill()
                    h.wait()
            server.stop(p)
            st, text = load.parse_dnsperf(out_path, True, 1 / args.seconds)
            done = int(re.search(r"Queries completed:\s+(\d+)", text).group(1))
            lost = int(re.search(r"Queries lost:\s+(\d+)", text).group(1))
            cpu = (t1 - t0) / os.sysconf("SC_CLK_TCK") / max(done, 1) * 1e6
            wait = sum(b[t][0] - a[t][0] for t in b if t in a)
            wakeups = sum(b[t][1] - a[t][1] for t in b if t in a)
            row = (cpu, st["lat_p50"] * 1e3, st["lat_p99"] * 1e3, wait / max(wakeups, 1) / 1e3, lost)
            rows[label].append(row)
            print(f"round {r + 1} {label:12s} CPU {row[0]:6.2f} µs/q  p50 {row[1]:.3f} ms  p99 {row[2]:.3f} ms  "
                  f"run-queue wait {row[3]:6.1f} µs/wake-up  lost {lost}", flush=True)
    print(f"\nmedians, {args.rounds} rounds of {args.seconds} s at {args.qps} qps, {args.size} names, "
          f"{args.hogs} hogs:")
    for label, rs in rows.items():
        cols = list(zip(*rs))
        print(f"  {label:12s} CPU {statistics.median(cols[0]):6.2f} µs/q  p50 {statistics.median(cols[1]):.3f} ms  "
              f"p99 {statistics.median(cols[2]):.3f} ms  wait {statistics.median(cols[3]):6.1f} µs  "
              f"lost {sum(cols[4])}")


if __name__ == "__main__":
    main()
