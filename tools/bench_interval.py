#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""What one report interval costs the profiler with many stacks of which few change.

Runs tools/bench_churn (N live stacks, R changing a second) under `asizeof-bpf -p PID -i 1`
for each binary given, RUNS times interleaved, and prints the profiler's CPU (user + system,
from /proc/PID/stat) per second of a steady window after warm-up, and the medians.

Usage: bench_interval.py [--runs 3] [--stacks 60000] [--rate 100] BINARY [BINARY ...]
"""
import argparse
import os
import statistics
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CHURN = os.path.join(HERE, "..", "build", "bench_churn")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def one(binary, stacks, rate, warm, window):
    w = subprocess.Popen([CHURN, str(stacks), str(rate)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    prof = None
    try:
        line = w.stdout.readline().split()
        assert line and line[0] == "ready", line
        prof = subprocess.Popen([binary, "-p", str(w.pid), "-i", "1", "-d",
                                 str(warm + window + 30), "-o", "/dev/null"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # blocks allocated before the probes are attached are not seen
        assert "attached" in prof.stderr.readline()
        w.stdin.write("go\n")
        w.stdin.flush()
        line = w.stdout.readline().split()
        assert line and line[0] == "holding", line
        time.sleep(warm)
        c0, t0 = cpu_s(prof.pid), time.monotonic()
        time.sleep(window)
        c1, t1 = cpu_s(prof.pid), time.monotonic()
        return (c1 - c0) / (t1 - t0)
    finally:
        if prof:
            prof.terminate()
            prof.wait()
        w.stdin.close()
        w.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--stacks", type=int, default=60000)
    ap.add_argument("--rate", type=int, default=100)
    ap.add_argument("--warm", type=float, default=8)
    ap.add_argument("--window", type=float, default=15)
    ap.add_argument("binaries", nargs="+")
    a = ap.parse_args()
    res = {b: [] for b in a.binaries}
    for r in range(a.runs):
        for b in a.binaries:
            v = one(b, a.stacks, a.rate, a.warm, a.window)
            res[b].append(v)
            print(f"run {r + 1} {b}: {100 * v:.2f}% of a core", flush=True)
    for b, v in res.items():
        print(f"median {b}: {100 * statistics.median(v):.2f}% of a core "
              f"({', '.join(f'{100 * x:.2f}' for x in v)})")


if __name__ == "__main__":
    main()
