#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Audit: N processes each holding known bytes, profiled system-wide (--comm scale_hold).
Usage: scale_many.py N K SECS. Prints per-report coverage/exactness and the profiler's CPU/RSS."""
import json, os, subprocess, sys, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
n, k, secs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
wl = os.path.join(root, "build/workloads/scale_hold")
prof = subprocess.Popen([os.path.join(root, "asizeof-bpf"), "-f", "json", "-n", "0", "-i", "2",
                         "-d", str(secs), "--comm", "scale_hold"] + sys.argv[4:],
                        stdout=subprocess.PIPE, stderr=open("/tmp/hs/many.err", "w"))
time.sleep(3)
procs = [subprocess.Popen([wl, "hold", str(k)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
         for _ in range(n)]
for p in procs:
    assert p.stdout.readline().startswith(b"ready")
pids = {p.pid for p in procs}
print("all %d ready" % n, flush=True)

def stat(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    rss = int(open("/proc/%d/statm" % pid).read().split()[1]) * 4096
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK"), rss

t0 = time.time(); c0, _ = stat(prof.pid)
reps = []
for line in prof.stdout:
    r = json.loads(line)
    reps.append(r)
    try:
        c, rss = stat(prof.pid)
    except Exception:
        c, rss = 0, 0
    got = {q["pid"]: q for q in r["processes"] if q["pid"] in pids}
    bad = [q for q in got.values() if (q["live_bytes"], q["live_allocs"], q["allocs"], q["frees"]) !=
           (k * 1000 + 666, k + 2, k + 3, 1)]
    print("t=%.0f seen %d/%d wrong %d cpu %.2fs rss %.1f MiB dropped %s" % (
        time.time() - t0, len(got), n, len(bad), c - c0, rss / 2**20, r["dropped"]), flush=True)
    if bad:
        print("  e.g.", bad[0])
    if len(got) == n and not bad:
        # stacks: every process's stacks sum and name its sites
        for pid in list(pids)[:5]:
            st = [s for s in r["stacks"] if s["pid"] == pid and s["live_bytes"]]
            print("  pid", pid, sorted((s["frames"][0]["func"], s["live_bytes"]) for s in st))
    if r["final"]:
        break
print("rc", prof.wait())
for p in procs:
    p.stdin.close()
for p in procs:
    p.wait()
