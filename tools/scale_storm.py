#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Audit: a fork storm and an exec storm for STORM s while a long-lived process holds known bytes,
profiled system-wide for SECS s (no filter). Usage: scale_storm.py SECS STORM [profiler args].
Prints, per report, the long-lived process's figures, drops, and the profiler's CPU, RSS, fds."""
import json, os, subprocess, sys, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
secs, storm = int(sys.argv[1]), float(sys.argv[2])
wl = os.path.join(root, "build/workloads/scale_hold")
prof = subprocess.Popen([os.path.join(root, "asizeof-bpf"), "-f", "json", "-n", "5", "-i", "2",
                         "-d", str(secs)] + sys.argv[3:],
                        stdout=subprocess.PIPE, stderr=open("/tmp/hs/storm.err", "w"))
time.sleep(3)
hold = subprocess.Popen([wl, "hold", "100"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
assert hold.stdout.readline().startswith(b"ready")
want = (100 * 1000 + 666, 102, 103, 1)

def stat(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    rss = int(open("/proc/%d/statm" % pid).read().split()[1]) * 4096
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK"), rss, len(os.listdir("/proc/%d/fd" % pid))

started = None
reps = 0
for line in prof.stdout:
    r = json.loads(line)
    reps += 1
    if reps == 2:
        forks = subprocess.Popen([wl, "storm", str(storm)], stdout=subprocess.PIPE)
        execs = subprocess.Popen(["/bin/sh", "-c", "end=$(($(date +%%s)+%d)); n=0; while [ $(date +%%s) -lt $end ]; do "
                                  "/bin/true; n=$((n+1)); done; echo $n" % int(storm)], stdout=subprocess.PIPE)
        started = time.time()
    try:
        c, rss, fds = stat(prof.pid)
    except Exception:
        c = rss = fds = 0
    q = [q for q in r["processes"] if q["pid"] == hold.pid]
    got = (q[0]["live_bytes"], q[0]["live_allocs"], q[0]["allocs"], q[0]["frees"]) if q else None
    d = {k: v for k, v in r["dropped"].items() if v}
    print("t=%5.1f procs %4d hold %s %s cpu %.1fs rss %.1f MiB fds %d dropped %s" % (
        r["elapsed_s"], len(r["processes"]), "exact" if got == want else got, "" if not q else "",
        c, rss / 2**20, fds, d), flush=True)
    if r["final"]:
        break
print("rc", prof.wait(), "forks", forks.stdout.read().strip(), "execs", execs.stdout.read().strip())
hold.stdin.close(); hold.wait(); forks.wait(); execs.wait()
