#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""make bench: the driver behind tools/bench.sh.

Interleaves the configurations (A B C ... A B C ...) for ROUNDS rounds on two workloads that time
themselves (so attach and detach are not counted): build/bench/bench_alloc (its hot-loop clock)
and Debian's gcc cc1 compiling a file generated here (its -ftime-report TOTAL wall time). Then
measures the profiler's own cost with build/bench/bench_stacks holding blocks on 10k distinct
stacks. Prints medians and min-max; asserts nothing about timings.

Also runs bench_alloc built -DDEPTH=DEEP (the unwinder's cost per frame) and reports what DWARF
unwinding adds per allocation against one uprobe trap, and the unwind tables' build cost; and
bench_alloc built -DPATHS=PATHS with frame pointers (2^PATHS distinct stacks that share their
outer frames, as a large program's do), where --unwind fp gets the same complete stacks: what
DWARF unwinding itself costs, apart from having complete stacks at all. And bench_alloc under
jemalloc and tcmalloc (LD_PRELOAD, where installed): untraced, full mode and its floor, as their
entry points are probed where the prologue decoder put them. And bench_alloc built -DLARGE
(blocks from glibc's mmap path: the mmap and munmap probes, which a single-stepped first
instruction makes ~10x dearer, show here and nowhere else), built -DALIGNED=64 (posix_memalign
pairs: its probe placed past glibc's flag test) and -DREMAP (reallocs of a mapped block: glibc's
mremap, followed by its syscall tracepoints with DWARF unwinding, probed with --unwind fp).

Environment (defaults in brackets): ROUNDS [9], PAIRS [200000], CC1_FUNCS [40], STACKS [10000],
HOLD [10] seconds of the CPU/RSS run, DEEP [24] extra frames of bench_alloc_deep, PATHS [13]
levels of bench_alloc_paths, BPF_ROUNDS [3, at most ROUNDS] interleaved runs of each BPF run-time
figure (cc1's is noisy: 9 or more to trust its sign), SAMPLE_BYTES
[524288], LARGE [262144] bytes and LARGE_PAIRS [20000] of bench_alloc_large, QUIET_WAIT [120] seconds to wait for another profiler's uprobes to go away mid-run,
BENCH_DIR [build/bench].
"""

import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / "asizeof-bpf"
PEER = REPO / "tools" / "bench_peer.bt"


def env_int(name, default, lo=1):
    v = os.environ.get(name, "")
    if not v:
        return default
    try:
        n = int(v)
    except ValueError:
        die("%s=%r is not an integer" % (name, v), 2)
    if n < lo:
        die("%s=%d must be at least %d" % (name, n, lo), 2)
    return n


def die(msg, code=1):
    print("bench: " + msg, file=sys.stderr, flush=True)
    sys.exit(code)


def warn(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


ROUNDS = env_int("ROUNDS", 9)
DEEP = env_int("DEEP", 24)  # extra frames of bench_alloc_deep
PATHS = env_int("PATHS", 13)  # bench_alloc_paths: 2^PATHS distinct stacks
DEEP_CONFIGS = ("untraced", "full", "fp", "floor")
# bench_alloc under other allocator libraries (LD_PRELOAD): their entry points are placed too
LIBS = [(name, path) for name, path in (("jemalloc", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
                                        ("tcmalloc", "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"))
        if os.path.exists(path)]
LIB_CONFIGS = ("untraced", "full", "floor")
PAIRS = env_int("PAIRS", 200000, 100)
# bench_alloc -DLARGE: blocks of LARGE bytes and more, each from glibc's mmap path
LARGE_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}  # fixed: no dynamic threshold to outgrow
LARGE = env_int("LARGE", 262144, 131072)  # at least the threshold: every block mmapped
LARGE_PAIRS = env_int("LARGE_PAIRS", 20000, 100)
CC1_FUNCS = env_int("CC1_FUNCS", 40)
STACKS = env_int("STACKS", 10000)
HOLD = env_int("HOLD", 10)
SAMPLE_BYTES = env_int("SAMPLE_BYTES", 524288)
BPF_ROUNDS = env_int("BPF_ROUNDS", min(3, ROUNDS))
QUIET_WAIT = env_int("QUIET_WAIT", 120, 0)
OUT = Path(os.environ.get("BENCH_DIR") or REPO / "build" / "bench")
BPFTOOL = shutil.which("bpftool") or "/usr/sbin/bpftool"
BPFTRACE = shutil.which("bpftrace")
CLK_TCK = os.sysconf("SC_CLK_TCK")
RUN_TIMEOUT = 300  # any single run; a hang is a failure, never a stuck bench
PEER_ENV = dict(os.environ, BPFTRACE_MAP_KEYS_MAX="262144")

# ------------------------------------------------------------------ child processes

_children = []


def spawn(argv, **kw):
    """Popen in our process group (a Ctrl-C of make, or a killpg of the bench, reaches it too);
    every child is registered so that none outlives the bench."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    p = subprocess.Popen([str(a) for a in argv], **kw)
    _children.append(p)
    return p


def finish(p, sig=signal.SIGINT, timeout=30):
    """Stop one child we started: sig, then SIGKILL after timeout. Returns its exit code."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    for f in (p.stdin, p.stdout, p.stderr):
        if f:
            try:
                f.close()
            except OSError:
                pass
    if p in _children:
        _children.remove(p)
    return p.returncode


def reap_all():
    for p in list(_children):
        finish(p, signal.SIGINT, 10)


class Lines:
    """Reads a child's pipe line by line in a thread, stamping each line's arrival time."""

    def __init__(self, f):
        self.lines = []  # (monotonic time, bytes)
        self.cv = threading.Condition()
        self.eof = False
        self.t = threading.Thread(target=self._run, args=(f,), daemon=True)
        self.t.start()

    def _run(self, f):
        try:
            for raw in iter(f.readline, b""):
                with self.cv:
                    self.lines.append((time.monotonic(), raw))
                    self.cv.notify_all()
        except (OSError, ValueError):
            pass
        with self.cv:
            self.eof = True
            self.cv.notify_all()

    def wait_for(self, pred, timeout, start=0):
        """Index of the first line from `start` on for which pred(text) holds; None on EOF or
        timeout."""
        end = time.monotonic() + timeout
        i = start
        with self.cv:
            while True:
                while i < len(self.lines):
                    if pred(self.lines[i][1].decode("utf-8", "replace")):
                        return i
                    i += 1
                left = end - time.monotonic()
                if self.eof or left <= 0:
                    return None
                self.cv.wait(left)

    def text(self):
        with self.cv:
            return b"".join(line for _, line in self.lines).decode("utf-8", "replace")

    def join(self, timeout=30):
        self.t.join(timeout)


# ------------------------------------------------------------------ other profilers' uprobes


def _bpftool_json(*args):
    p = subprocess.run([BPFTOOL, "-j", *args], capture_output=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("bpftool %s: %s" % (" ".join(args), p.stderr.decode(errors="replace").strip()))
    try:
        return json.loads(p.stdout or b"[]") or []
    except json.JSONDecodeError:
        return []


def uprobe_entries(exclude_pids=()):
    """Uprobe attachments in the system: perf events of type uprobe/uretprobe, and uprobe_multi
    links (bpftool 7.1 prints their type as the number 12), except those of exclude_pids."""
    found = []
    for e in _bpftool_json("perf", "list"):
        if e.get("fd_type") in ("uprobe", "uretprobe") and e.get("pid") not in exclude_pids:
            found.append("perf %s pid %s %s+%s" % (e.get("fd_type"), e.get("pid"), e.get("filename"), e.get("offset")))
    multi = [e for e in _bpftool_json("link", "list") if e.get("type") in (12, "uprobe_multi")]
    if multi:
        holders = _link_holders()
        for e in multi:
            pids = holders.get(e.get("id"), set())
            if not pids or not pids <= set(exclude_pids):
                found.append("uprobe_multi link %s (pids %s)" % (e.get("id"), sorted(pids) or "?"))
    return found


def _link_holders():
    """{link id: {pid, ...}} from /proc/*/fdinfo (bpftool 7.1 does not show link holders)."""
    holders = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            fds = os.listdir("/proc/%s/fdinfo" % d)
        except OSError:
            continue
        for fd in fds:
            try:
                with open("/proc/%s/fdinfo/%s" % (d, fd)) as f:
                    m = re.search(r"^link_id:\s*(\d+)", f.read(), re.M)
            except OSError:
                continue
            if m:
                holders.setdefault(int(m.group(1)), set()).add(int(d))
    return holders


def wait_quiet(timeout):
    """True once no uprobe is attached anywhere (ours are released asynchronously: a few
    seconds of grace); False if some stay for `timeout` seconds."""
    end = time.monotonic() + max(timeout, 3)
    while True:
        found = uprobe_entries()
        if not found:
            return True, []
        if time.monotonic() >= end:
            return False, found
        time.sleep(0.5)


# ------------------------------------------------------------------ builds and inputs


def build(out, src, flags, extra=()):
    """Compile src into out unless out is newer than src."""
    src = REPO / src
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return True
    # built under a temporary name and renamed: a concurrent bench never runs a partial file
    tmp = out.with_name("%s.%d.tmp" % (out.name, os.getpid()))
    p = subprocess.run(["cc", *flags, "-o", str(tmp), str(src), *extra], capture_output=True, timeout=600)
    if p.returncode != 0:
        warn("cannot build %s: %s" % (out, p.stderr.decode(errors="replace").strip()[-2000:]))
        tmp.unlink(missing_ok=True)
        return False
    os.replace(tmp, out)
    return True


def build_symbolize(tool="bench_symbolize"):
    """tools/TOOL.c linked with the profiler's own objects (as the unit tests are); optional:
    None when they are missing or do not link right now."""
    out = OUT / ("%s.%d" % (tool, os.getpid()))
    objs = sorted(str(o) for o in (REPO / "build" / "user").glob("*.o") if o.name != "main.o")
    pb = REPO / "build" / "profile.pb-c.o"
    if not objs:
        return None
    if pb.exists():
        objs.append(str(pb))
    flags = ["-O2", "-g", "-Wall", "-Wextra", "-std=gnu11", "-D_GNU_SOURCE", "-I" + str(REPO / "include"),
             "-I" + str(REPO / "user"), "-I" + str(REPO / "build")]
    libs = ["-lm", "-lbpf", "-lelf", "-ldw", "-lz", "-lpthread", "-lstdc++", "-lncursesw", "-lmicrohttpd",
            "-lprotobuf-c"]
    p = subprocess.run(["cc", *flags, "-o", str(out), str(REPO / "tools" / (tool + ".c")), *objs, *libs],
                       capture_output=True, timeout=600)
    if p.returncode != 0:
        warn("%s does not link (skipped): %s" % (tool, p.stderr.decode(errors="replace").strip()[-500:]))
        return None
    return out


CC1_HEADERS = ("stdio.h", "stdlib.h", "string.h")


def cc1_input(nfuncs):
    """A C file of nfuncs loop- and branch-heavy functions over glibc's stdio/stdlib/string
    headers, preprocessed by this machine's gcc: cc1 -O2 then makes ~10k allocator calls per
    function (~0.9M for 40), like an ordinary compile."""
    src = OUT / ("cc1_input_%d.c" % nfuncs)
    out = OUT / ("cc1_input_%d.i" % nfuncs)
    parts = ["#include <%s>" % h for h in CC1_HEADERS]
    for i in range(nfuncs):
        m = 4 + i % 8
        parts.append("""
struct s{i} {{ int a, b; double c[{m}]; struct s{i} *next; }};
int f{i}(struct s{i} *p, int n, const char *str)
{{
	int acc = {i};
	for (int k = 0; k < n; k++) {{
		if (p->a > k)
			acc += p->b * k;
		else if (str[k % 7] == 'x')
			acc -= (int)p->c[k % {m}];
		switch ((acc ^ k) & 7) {{
		case 0: acc += strlen(str); break;
		case 1: acc *= 3; break;
		case 2: p = p->next ? p->next : p; break;
		case 3: acc += snprintf(0, 0, "%d", k); break;
		default: acc ^= k << 2;
		}}
	}}
	for (int j = 0; j < {m}; j++)
		p->c[j] = p->c[j] * 0.5 + acc;
	return acc + (n > 3 ? f{prev}((void *)p, n - 1, str) : 0);
}}""".format(i=i, m=m, prev=max(i - 1, 0)))
    text = "\n".join(parts) + "\n"
    if not (src.exists() and src.read_text() == text and out.exists()):
        tmp_src = src.with_name("%s.%d.c" % (src.stem, os.getpid()))
        tmp_out = out.with_name("%s.%d.i" % (out.stem, os.getpid()))
        tmp_src.write_text(text)
        p = subprocess.run(["gcc", "-E", "-o", str(tmp_out), str(tmp_src)], capture_output=True, timeout=120)
        if p.returncode != 0:
            die("gcc -E %s: %s" % (src, p.stderr.decode(errors="replace").strip()))
        os.replace(tmp_src, src)
        os.replace(tmp_out, out)
    return out


def find_cc1():
    cc1 = Path("/usr/lib/gcc/x86_64-linux-gnu/12/cc1")
    if cc1.exists():
        return cc1
    p = subprocess.run(["gcc", "-print-prog-name=cc1"], capture_output=True, text=True)
    cand = Path(p.stdout.strip())
    return cand if cand.is_absolute() and cand.exists() else None


# ------------------------------------------------------------------ configurations


class Config:
    def __init__(self, key, name, opts=None, peer=False):
        self.key, self.name, self.opts, self.peer = key, name, opts, peer
        self.na = None  # reason it cannot run, shown instead of figures

    @property
    def untraced(self):
        return self.opts is None and not self.peer


def configs():
    helptext = subprocess.run([str(BIN), "--help"], capture_output=True, text=True).stdout
    sample = ["--sample-bytes", str(SAMPLE_BYTES)]
    cs = [
        Config("untraced", "untraced"),
        Config("full", "asizeof-bpf (full)", []),
        Config("floor", "empty probes (full's floor)", ["--empty-probes"]),
        Config("fp", "asizeof-bpf --unwind fp", ["--unwind", "fp"]),
        Config("sample", "asizeof-bpf --sample-bytes %d" % SAMPLE_BYTES, sample),
        Config("sfloor", "empty probes (sampling's floor)", sample + ["--empty-probes"]),
        Config("peer", "bpftrace peer (bench_peer.bt)", peer=True),
    ]
    have_sample = "sample-bytes" in helptext
    for c in cs:
        if c.key in ("sample", "sfloor") and not have_sample:
            c.na = "n/a (not built)"
        elif c.key == "fp" and "--unwind" not in helptext:
            c.na = "n/a (not built)"
        elif c.key == "peer" and not BPFTRACE:
            c.na = "n/a (no bpftrace)"
        elif c.opts and "--empty-probes" in c.opts:
            # hidden option: a usage error (2) means this binary does not have it
            p = subprocess.run([str(BIN), *c.opts, "-f", "json", "-o", "/dev/null", "--", "/bin/true"],
                               capture_output=True, text=True, timeout=RUN_TIMEOUT)
            if p.returncode == 2:
                c.na = "n/a (not built)"
    return cs


def peer_attached(bt_pid):
    """bpftrace 0.17 attaches its 7 libc uprobes system-wide, one perf event each."""
    n = 0
    for e in _bpftool_json("perf", "list"):
        if e.get("pid") == bt_pid and e.get("fd_type") in ("uprobe", "uretprobe") and "libc" in str(e.get("filename")):
            n += 1
    return n >= 7


def run_peer(argv_held, parse, what):
    """Run argv_held (a program that prints "ready PID" and waits for a line on stdin) under
    the bpftrace peer: start it, start bpftrace on its pid, wait until bpftrace's uprobes are all
    in place, release it, parse its output, then stop bpftrace."""
    w = spawn(argv_held, stdin=subprocess.PIPE)
    wout, werr = Lines(w.stdout), Lines(w.stderr)
    bt = None
    try:
        i = wout.wait_for(lambda s: s.startswith("ready "), 30)
        if i is None:
            raise RuntimeError("%s did not start: %s" % (what, werr.text().strip()))
        pid = int(wout.lines[i][1].split()[1])
        bt = spawn([BPFTRACE, PEER, pid], env=PEER_ENV)
        bterr = Lines(bt.stderr)
        Lines(bt.stdout)
        end = time.monotonic() + 60
        while not peer_attached(bt.pid):
            if bt.poll() is not None or time.monotonic() > end:
                raise RuntimeError("bpftrace did not attach: %s" % bterr.text().strip()[-500:])
            time.sleep(0.05)
        w.stdin.write(b"go\n")
        w.stdin.flush()
        w.wait(timeout=RUN_TIMEOUT)
        wout.join()
        werr.join()
        return parse(wout.text() + werr.text())
    finally:
        finish(w, signal.SIGKILL)
        if bt:
            finish(bt, signal.SIGINT, 60)


HOLDER = ("import os, sys; print('ready', os.getpid(), flush=True); sys.stdin.readline(); "
          "os.execv(sys.argv[1], sys.argv[1:])")


def run_cmd(argv, timeout=RUN_TIMEOUT, env=None):
    p = spawn(argv, env=env)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        finish(p, signal.SIGKILL)
        raise RuntimeError("timed out: %s" % " ".join(map(str, argv)))
    _children.remove(p)
    return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def traced_argv(c, cmd, report):
    return [BIN, *c.opts, "-f", "json", "-n", "1", "-i", "3600", "-o", report, "--", *cmd]


def parse_pair(text):
    m = re.search(r"^ns_per_pair ([\d.]+)$", text, re.M)
    if not m:
        raise RuntimeError("no ns_per_pair in output: %r" % text[-500:])
    return float(m.group(1))


def parse_total(text):
    m = re.search(r"^ TOTAL\s*:\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)", text, re.M)
    if not m:
        raise RuntimeError("no -ftime-report TOTAL in cc1's output: %r" % text[-500:])
    return float(m.group(3))


class Bench:
    def __init__(self):
        self.alloc = OUT / "bench_alloc"
        self.deep = OUT / "bench_alloc_deep"
        self.paths = OUT / "bench_alloc_paths"
        self.large = OUT / "bench_alloc_large"
        self.aligned = OUT / "bench_alloc_aligned"
        self.remap = OUT / "bench_alloc_remap"
        self.stacks = OUT / "bench_stacks"
        self.stacks_nog = OUT / "bench_stacks_nog"
        self.cc1 = None
        self.cc1_args = None
        self.cc1_counts = None  # (allocs, frees) counted by the full mode's report
        self.cc1_unwind = None  # what the unwinder did there (the report's "unwind")
        self.retries = 0
        self.trap = None  # one uprobe trap, ns (section 3's measure; the goals quote it)

    # one measurement of workload `wl` under configuration c
    def measure(self, wl, c):
        report = OUT / ("report.%d.json" % os.getpid())
        env = None
        if wl in ("alloc", "deep"):
            cmd = [self.alloc if wl == "alloc" else self.deep, PAIRS]
            parse = parse_pair
        elif wl in ("large", "remap"):
            cmd, parse = [self.large if wl == "large" else self.remap, LARGE_PAIRS], parse_pair
            env = dict(os.environ, **LARGE_ENV)
        elif wl == "aligned":
            cmd, parse = [self.aligned, PAIRS], parse_pair
        elif wl in dict(LIBS):
            # the profiler resolves the command's libraries with the environment it is given
            cmd, parse = [self.alloc, PAIRS], parse_pair
            env = dict(os.environ, LD_PRELOAD=dict(LIBS)[wl])
        else:
            cmd = [self.cc1, *self.cc1_args]
            parse = parse_total
        if c.untraced:
            rc, out, err = run_cmd(cmd, env=env)
            if rc != 0:
                raise RuntimeError("%s exited %d: %s" % (cmd[0], rc, err.strip()[-500:]))
            return parse(out + err)
        if c.peer:
            if wl == "alloc":
                return run_peer([self.alloc, PAIRS, "--wait"], parse, "bench_alloc")
            return run_peer([sys.executable, "-c", HOLDER, *cmd], parse, "cc1")
        rc, out, err = run_cmd(traced_argv(c, cmd, report), env=env)
        if rc != 0:
            raise RuntimeError("asizeof-bpf %s exited %d: %s" % (" ".join(c.opts), rc, err.strip()[-500:]))
        v = parse(out + err)
        if wl == "cc1" and c.key == "full" and self.cc1_counts is None:
            self.cc1_counts, self.cc1_unwind = cc1_facts(report)
        return v

    def measure_clean(self, wl, c):
        """One measurement with nobody else's uprobes attached before or after it (else it is
        repeated); odd failures (the binary being rebuilt, ...) are retried too."""
        last = None
        for attempt in range(4):
            ok, found = wait_quiet(QUIET_WAIT)
            if not ok:
                die("another profiler's uprobes stay attached (%s): the figures would be wrong" % "; ".join(found[:3]))
            try:
                v = self.measure(wl, c)
            except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as e:
                last = e
                self.retries += 1
                warn("%s / %s failed (%s), retrying" % (wl, c.name, str(e).strip()[:300]))
                time.sleep(2)
                continue
            ok, found = wait_quiet(3)
            if ok:
                return v
            self.retries += 1
            warn("uprobes of another process appeared during %s / %s: repeating it" % (wl, c.name))
        warn("%s / %s: giving up: %s" % (wl, c.name, last))
        return None


def cc1_facts(report):
    """From the full mode's final report on cc1: (allocations, frees) it counted, and what the
    unwinder did there (its "unwind"); None for what cannot be read."""
    try:
        last = [json.loads(x) for x in report.read_text().splitlines() if x.strip()][-1]
        procs = last.get("processes", [])
        counts = sum(p.get("allocs", 0) for p in procs), sum(p.get("frees", 0) for p in procs)
    except (OSError, ValueError, IndexError, AttributeError):
        return None, None
    return counts, last.get("unwind")


# ------------------------------------------------------------------ the profiler's own cost


def proc_cpu_ticks(pid):
    """(utime, stime) in clock ticks: fields 14 and 15 of /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def proc_status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


class Held:
    """bench_stacks processes waiting to allocate (--wait)."""

    def __init__(self, binary, n):
        self.p = spawn([binary, n, "--wait"], stdin=subprocess.PIPE)
        self.out = Lines(self.p.stdout)
        Lines(self.p.stderr)
        i = self.out.wait_for(lambda s: s.startswith("ready "), 30)
        if i is None:
            raise RuntimeError("bench_stacks did not start")
        self.pid = int(self.out.lines[i][1].split()[1])

    def send(self):
        self.p.stdin.write(b"go\n")
        self.p.stdin.flush()

    def allocate(self):
        self.send()
        if self.out.wait_for(lambda s: s.startswith("holding "), 120) is None:
            raise RuntimeError("bench_stacks did not allocate")

    def close(self):
        try:
            self.send()
        except OSError:
            pass
        finish(self.p, signal.SIGKILL, 5)


def profile_run(pids, args, during=None):
    """asizeof-bpf -p PID... ARGS -f json: returns the times of its phases. during(prof) runs
    once it has attached; then SIGINT: the final report is the last stdout line, detach is the
    time from that line to the exit."""
    argv = [BIN]
    for pid in pids:
        argv += ["-p", pid]
    argv += ["-f", "json", *args]
    t0 = time.monotonic()
    prof = spawn(argv)
    out, err = Lines(prof.stdout), Lines(prof.stderr)
    try:
        i = err.wait_for(lambda s: s.startswith("asizeof-bpf: attached to "), 60)
        if i is None:
            raise RuntimeError("asizeof-bpf did not attach: %s" % err.text().strip()[-500:])
        res = {"attach": err.lines[i][0] - t0}
        if during:
            during(prof, res)
        n_before = len(out.lines)
        t_sig = time.monotonic()
        prof.send_signal(signal.SIGINT)
        prof.wait(timeout=RUN_TIMEOUT)
        t_exit = time.monotonic()
        out.join()
        err.join()
        if prof.returncode != 0:
            raise RuntimeError("asizeof-bpf exited %d: %s" % (prof.returncode, err.text().strip()[-500:]))
        if len(out.lines) <= n_before:
            raise RuntimeError("no final report")
        t_fin, last = out.lines[-1]
        res.update(final=t_fin - t_sig, detach=t_exit - t_fin, last=last)
        return res
    finally:
        finish(prof, signal.SIGINT)


def fmt_ms(v):
    return "%.0f ms" % (v * 1e3) if v is not None else "failed"


def med_range(vals, scale=1e3, unit="ms", prec=0):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "failed"
    f = "%%.%df" % prec
    return (f + " %s [" + f + "-" + f + "]") % (statistics.median(vals) * scale, unit, min(vals) * scale,
                                                 max(vals) * scale)


def retrying(what, fn, tries=3):
    for k in range(tries):
        ok, found = wait_quiet(QUIET_WAIT)
        if not ok:
            die("another profiler's uprobes stay attached (%s)" % "; ".join(found[:3]))
        try:
            return fn()
        except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as e:
            warn("%s failed (%s)%s" % (what, str(e).strip()[:300], ", retrying" if k + 1 < tries else ""))
            time.sleep(2)
    return None


def own_cost(b, lines):
    """The profiler's CPU and memory at -i 1 with STACKS live stacks, attach and detach times,
    the final report of all stacks, and the symbolizer alone."""
    # attach / detach: 1 and 4 idle targets, interleaved
    att = {1: [], 4: []}
    det = {1: [], 4: []}
    held = [Held(b.stacks, 1) for _ in range(4)]
    try:
        for r in range(ROUNDS):
            for k in (1, 4):
                res = retrying("attach to %d targets" % k,
                               lambda: profile_run([h.pid for h in held[:k]], ["-n", "1", "-i", "3600"]))
                if res:
                    att[k].append(res["attach"])
                    det[k].append(res["detach"])
    finally:
        for h in held:
            h.close()

    # CPU and RSS at -i 1 while STACKS stacks are live
    def cpu_run():
        h = Held(b.stacks, STACKS)
        try:
            def during(prof, res):
                h.allocate()
                time.sleep(1.5)  # the first report with every stack
                c0, t0 = proc_cpu_ticks(prof.pid), time.monotonic()
                time.sleep(HOLD)
                c1, t1 = proc_cpu_ticks(prof.pid), time.monotonic()
                res["cpu_user"] = (c1[0] - c0[0]) / CLK_TCK / (t1 - t0)
                res["cpu_sys"] = (c1[1] - c0[1]) / CLK_TCK / (t1 - t0)
                res["cpu"] = res["cpu_user"] + res["cpu_sys"]
                res["hwm"] = proc_status_kb(prof.pid, "VmHWM")
                res["rss"] = proc_status_kb(prof.pid, "VmRSS")
            return profile_run([h.pid], ["-i", "1"], during)
        finally:
            h.close()

    cpu = retrying("the CPU/RSS run", cpu_run)

    # the final report of every stack (-n 0): snapshot + symbolization + JSON of STACKS stacks
    def full_report():
        h = Held(b.stacks, STACKS)
        try:
            def during(prof, res):
                h.allocate()
                time.sleep(1)
            res = profile_run([h.pid], ["-n", "0", "-i", "3600"], during)
            rep = json.loads(res["last"])
            frames = [f.get("addr") for s in rep.get("stacks", []) for f in s.get("frames", [])]
            res.update(nstacks=len(rep.get("stacks", [])), nframes=len(frames), distinct=len(set(frames)),
                       size=len(res["last"]))
            return res
        finally:
            h.close()

    rep = retrying("the final-report run", full_report)

    # the symbolizer alone, on STACKS distinct leaf addresses, with and without debug info
    sym = {}
    symbin = build_symbolize()
    try:
        for key, binary in (("g", b.stacks), ("nog", b.stacks_nog)):
            if symbin and binary.exists():
                sym[key] = retrying("symbolizer timing", lambda: symbolize(symbin, binary))
    finally:
        if symbin:
            symbin.unlink(missing_ok=True)

    depth = " of %d frames" % round(rep["nframes"] / rep["nstacks"]) if rep and rep["nstacks"] else ""
    lines.append("4. The profiler's own cost: asizeof-bpf -p PID of bench_stacks, %d live blocks on %d distinct"
                 % (STACKS, STACKS))
    lines.append("   stacks%s (-O0 -g -fno-omit-frame-pointer)" % depth)
    if cpu:
        lines.append("   CPU at -i 1 -f json (top 10 each second), over %d s: %.2f%% of a core (user %.2f%%, system %.2f%%)"
                     % (HOLD, cpu["cpu"] * 100, cpu["cpu_user"] * 100, cpu["cpu_sys"] * 100))
        lines.append("   memory: peak RSS (VmHWM) %.1f MiB, RSS at the end %.1f MiB"
                     % (cpu["hwm"] / 1024, cpu["rss"] / 1024))
        lines.append("   detach with %d live blocks (SIGINT -> exit, minus the final report): %s"
                     % (STACKS, fmt_ms(cpu["detach"])))
    else:
        lines.append("   CPU/RSS run: failed")
    lines.append("   attach (start -> \"attached to\", BPF load included), median [min-max] of %d:" % ROUNDS)
    lines.append("     1 target %s; 4 targets %s" % (med_range(att[1]), med_range(att[4])))
    if att[1] and att[4]:
        lines.append("     -> %.0f ms per extra target" % ((statistics.median(att[4]) - statistics.median(att[1])) / 3 * 1e3))
    lines.append("   detach of idle targets (SIGINT -> exit, minus the final report):")
    lines.append("     1 target %s; 4 targets %s" % (med_range(det[1]), med_range(det[4])))
    if rep:
        lines.append("   final report of all stacks (-f json -n 0; SIGINT -> its last byte: snapshot, symbolization, JSON):")
        lines.append("     %.2f s for %d stacks, %d frames, %d distinct addresses, %.1f MB of JSON"
                     % (rep["final"], rep["nstacks"], rep["nframes"], rep["distinct"], rep["size"] / 1e6))
    else:
        lines.append("   final report of all stacks: failed")
    if sym:
        lines.append("   symbolizer alone (tools/bench_symbolize.c, user/symbolizer.c on %d distinct addresses):" % STACKS)
        for key, label in (("g", "with -g (one CU, 10k functions):"), ("nog", "without debug info:")):
            s = sym.get(key)
            if s:
                total = s["first_ms"] / 1e3 + s["cold_ns_per_frame"] * (s["frames"] - 1) / 1e9
                lines.append("     %-33s %.2f s in all: first frame %.0f ms (opens the module), then cold %s"
                             % (label, total, s["first_ms"], fmt_us(s["cold_ns_per_frame"])))
                lines.append("     %-33s per frame, warm %s; %d/%d named"
                             % ("", fmt_us(s["warm_ns_per_frame"]), s["named"], s["frames"]))
    else:
        lines.append("   symbolizer alone: n/a (bench_symbolize did not link)")
    return {"cpu": cpu, "att": att, "det": det, "rep": rep, "sym": sym}


def trap_split(b, rounds=BPF_ROUNDS):
    """One uprobe trap, apart from what a return probe costs: bench_alloc untraced, with empty
    entry probes only (malloc's and free's: two traps a pair) and with the whole floor (and
    malloc's return probe), interleaved. Returns (trap, return probe) stats, or (None, None)."""
    cs = [Config("untraced", "untraced"), Config("entry", "empty entry probes", ["--empty-probes=entry"]),
          Config("floor", "empty probes", ["--empty-probes"])]
    got = {c.key: [] for c in cs}
    for _ in range(rounds):
        for c in cs:
            got[c.key].append(b.measure_clean("alloc", c))
    return per_round_diff(got, "entry", "untraced", 1 / 2), per_round_diff(got, "floor", "entry")


def unwind_cost(b, cs, res, lines):
    """What DWARF unwinding adds per allocation (full vs --unwind fp, the same rounds), against
    the cost of one uprobe trap here, and what building the tables costs."""
    lines.append("3. stack unwinding (--unwind dwarf, the default, vs --unwind fp)")
    keys = {c.key for c in cs if not c.na}
    if not {"full", "fp", "floor", "untraced"} <= keys:
        lines.append("   n/a (a configuration is missing)")
        return
    third = per_round_diff(res["alloc"], "floor", "untraced", 1 / 3)
    tr, ret = trap_split(b)
    if tr and ret:
        # a return probe leaves through a system call (x86-64, 6.11+), not a trap: cheaper
        lines.append("   one uprobe trap (an empty entry probe: (entry probes' floor - untraced) / 2 per pair):"
                     " %.0f ns (%.0f-%.0f)" % tr)
        lines.append("   a return probe (floor - entry probes' floor): %.0f ns (%.0f-%.0f); (floor - untraced) / 3:"
                     " %s ns" % (ret + ("%.0f" % third[0] if third else "n/a",)))
    elif third:
        tr = third
        lines.append("   one uprobe trap (empty probe, (floor - untraced) / 3 per pair): %.0f ns (%.0f-%.0f)" % tr)
    else:
        lines.append("   one uprobe trap: failed")
        return
    b.trap = tr[0]
    for wl, depth in (("alloc", 6), ("deep", 6 + DEEP)):
        s = per_round_diff(res[wl], "full", "fp")
        if not s:
            lines.append("   %s: failed" % wl)
            continue
        lines.append("   bench_alloc%s, %d frames per stack: %+.0f ns per allocation (%.0f-%.0f per round)"
                     " = %.2f traps, %.0f ns per frame"
                     % ("" if wl == "alloc" else " -DDEPTH=%d" % DEEP, depth, s[0], s[1], s[2],
                        s[0] / tr[0] if tr[0] > 0 else float("nan"), s[0] / depth))
    s = per_round_diff(res["cc1"], "full", "fp", 1e9 / b.cc1_counts[0]) if b.cc1_counts and b.cc1_counts[0] else None
    if s:
        lines.append("   cc1: %+.0f ns per allocation (%.0f-%.0f per round) = %.2f traps"
                     % (s[0], s[1], s[2], s[0] / tr[0] if tr[0] > 0 else float("nan")))
    bpf_times(b, tr[0], lines)
    u = b.cc1_unwind
    if u and u.get("stacks"):
        n = u["stacks"]
        frames = u["frames_unwound"] + u["frames_checked"]
        lines.append("   cc1, per stack: %.1f frames (%.0f%% checked against the last stack), %.2f table"
                     " searches, %.2f reads of the user stack"
                     % (frames / n, 100.0 * u["frames_checked"] / max(frames, 1), u["rule_searches"] / n,
                        u.get("stack_reads", 0) / n))
    depth = deep_depth(b)
    if depth:
        lines.append("   depth reached in bench_alloc -DDEPTH=%d: %d frames, down to %s (truncated: %s)" % depth)
    tool = build_symbolize("bench_cfi")
    libs = [p for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6")
            if os.path.exists(p)] + [str(b.cc1)]
    if not tool:
        lines.append("   table build: n/a (bench_cfi does not link)")
        return
    try:
        p = subprocess.run([str(tool), "5", *libs], capture_output=True, text=True, timeout=RUN_TIMEOUT)
    finally:
        tool.unlink(missing_ok=True)
    if p.returncode != 0:
        lines.append("   table build: failed (%s)" % p.stderr.strip()[-200:])
        return
    lines.append("   table build (median of 5, once per module file; rows are 16 bytes in the kernel):")
    for ln in p.stdout.splitlines():
        path, rows, nbytes, med, lo, hi = ln.split()
        lines.append("     %-44s %8s rows %8.0f KiB %7s ms (%s-%s)"
                     % (os.path.realpath(path), rows, int(nbytes) / 1024, med, lo, hi))


def bpf_time(b, cmd, unwind):
    """BPF run time per allocation (all programs: entry, return, free), from -v's "own cost"
    (kernel run-time accounting, on while -v holds it), over the allocations the report counted."""
    report = OUT / ("bpftime.%d.json" % os.getpid())
    try:
        ok, found = wait_quiet(QUIET_WAIT)
        if not ok:
            return None
        rc, out, err = run_cmd([str(BIN), "-v", "--unwind", unwind, "-f", "json", "-n", "1", "-i", "3600",
                                "-o", str(report), "--", *map(str, cmd)])
        m = re.findall(r"own cost: BPF [\d.]+ s over (\d+) runs \(([\d.]+) ns each\)", err)
        if rc != 0 or not m:
            return None
        rep = [json.loads(ln) for ln in report.read_text().splitlines() if ln.strip()][-1]
        allocs = sum(p["allocs"] for p in rep["processes"])
        # runs x ns each: the seconds are printed to the millisecond, ns per run to the ns
        return int(m[-1][0]) * float(m[-1][1]) / allocs if allocs else None
    except (OSError, ValueError, IndexError, KeyError, RuntimeError):
        return None
    finally:
        report.unlink(missing_ok=True)


def bpf_times(b, trap, lines, rounds=BPF_ROUNDS):
    """The unwinder's added cost as the kernel accounts it: steadier than the difference of two
    timed medians (no trap, no noise of the workload's own run), one run each, interleaved."""
    lines.append("   BPF run time per allocation, all programs (kernel.bpf_stats_enabled; medians of %d"
                 " interleaved runs):" % rounds)
    for name, cmd in (("bench_alloc, 6 frames", [b.alloc, PAIRS]),
                      ("bench_alloc -DDEPTH=%d, %d frames" % (DEEP, 6 + DEEP), [b.deep, PAIRS]),
                      ("cc1", [b.cc1, *b.cc1_args]),
                      ("bench_alloc -DPATHS=%d (*)" % PATHS, [b.paths, PAIRS])):
        got = {"dwarf": [], "fp": []}
        for _ in range(rounds):
            for u in ("dwarf", "fp"):
                got[u].append(bpf_time(b, cmd, u))
        d, f, diff = stats(got["dwarf"]), stats(got["fp"]), per_round_diff(got, "dwarf", "fp")
        if not d or not f or not diff:
            lines.append("     %-36s n/a" % name)
            continue
        # the difference is the median of the rounds' paired differences (one round: dwarf, fp)
        lines.append("     %-36s dwarf %5.0f ns, fp %5.0f ns: %+.0f ns (%+.0f..%+.0f) = %.2f traps"
                     % (name, d[0], f[0], diff[0], diff[1], diff[2],
                        diff[0] / trap if trap > 0 else float("nan")))
    lines.append("     (*) %d distinct stacks of %d frames that share their outer frames, built with frame"
                 % (2 ** PATHS, PATHS + 6))
    lines.append("         pointers: --unwind fp gets the same complete stacks (to main: 2 frames fewer),"
                 " so this is")
    lines.append("         what DWARF unwinding costs over walking frame pointers, apart from having"
                 " complete stacks")


def deep_depth(b):
    """(DEEP, frames, outermost function, truncated) of the deep workload's loop stack."""
    report = OUT / ("deep.%d.json" % os.getpid())
    try:
        rc, out, err = run_cmd([str(BIN), "-f", "json", "-n", "1", "-s", "live", "-o", str(report), "--",
                                str(b.deep), "20000"])
        if rc != 0:
            return None
        rep = [json.loads(ln) for ln in report.read_text().splitlines() if ln.strip()][-1]
        st = rep["stacks"][0]
        real = [f for f in st["frames"] if not f["inlined"]]
        return DEEP, len(real), real[-1]["func"], st["truncated"]
    except (OSError, ValueError, IndexError, KeyError):
        return None
    finally:
        report.unlink(missing_ok=True)


def fmt_us(ns):
    return "%.1f us" % (ns / 1e3) if ns >= 1000 else "%.0f ns" % ns


def symbolize(symbin, binary):
    """Resolve, in a live bench_stacks, an address inside each of its leaf functions."""
    h = Held(binary, 1)
    try:
        base = None
        real = os.path.realpath(str(binary))
        with open("/proc/%d/maps" % h.pid) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[5] == real and int(parts[2], 16) == 0:
                    base = int(parts[0].split("-")[0], 16)
                    break
        if base is None:
            raise RuntimeError("bench_stacks is not mapped")
        nm = subprocess.run(["nm", "--defined-only", str(binary)], capture_output=True, text=True, timeout=60)
        addrs = [int(ln.split()[0], 16) for ln in nm.stdout.splitlines()
                 if re.search(r" [tT] leaf_1\d{4}$", ln)][:STACKS]
        if not addrs:
            raise RuntimeError("no leaf symbols in %s" % binary)
        # an address inside each function (the symbolizer looks up ip - 1, as for a return address)
        data = "".join("%x\n" % (base + a + 17) for a in addrs)
        p = subprocess.run([str(symbin), str(h.pid)], input=data, capture_output=True, text=True, timeout=RUN_TIMEOUT)
        if p.returncode != 0:
            raise RuntimeError("bench_symbolize: %s" % p.stderr.strip())
        return {k: float(v) for k, v in (ln.split() for ln in p.stdout.splitlines() if ln.strip())}
    finally:
        h.close()


# ------------------------------------------------------------------ tables


def stats(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def per_round_diff(res, a, b, scale=1.0):
    """Median, min and max over rounds of (res[a] - res[b]) * scale: configurations run in the
    same round are paired, which cancels what the machine did meanwhile."""
    return stats([(x - y) * scale for x, y in zip(res.get(a, []), res.get(b, [])) if x is not None and y is not None])


def trap_ns(res_a):
    """One uprobe trap: the empty-probe floor has 3 per malloc+free pair (entry, return, free)."""
    s = per_round_diff(res_a, "floor", "untraced", 1 / 3)
    return s[0] if s else None


def per_round_ratio(a, b):
    r = [x / y for x, y in zip(a, b) if x is not None and y]
    return (min(r), max(r)) if r else None


def table(title, unit_fmt, cs, res, lines):
    lines.append(title)
    lines.append("   %-36s %10s  %-19s %11s  %s" % ("configuration", "median", "min-max", "vs untraced",
                                                    "vs its floor (per-round range)"))
    base = stats(res["untraced"])
    for c in cs:
        if c.na:
            lines.append("   %-36s %10s" % (c.name, c.na))
            continue
        s = stats(res[c.key])
        if not s:
            lines.append("   %-36s %10s" % (c.name, "failed"))
            continue
        med, lo, hi = s
        vs = "%10.2fx" % (med / base[0]) if base and base[0] else "%11s" % "-"
        rng = (unit_fmt + "-" + unit_fmt) % (lo, hi)
        lines.append(("   %-36s %10s  %-19s %s  %s" % (c.name, unit_fmt % med, rng, vs, floor_ratio(c, res))).rstrip())


def floor_ratio(c, res):
    floor = {"full": "floor", "sample": "sfloor"}.get(c.key)
    if not floor or not res.get(floor):
        return ""
    a, b = stats(res[c.key]), stats(res[floor])
    if not a or not b:
        return ""
    rr = per_round_ratio(res[c.key], res[floor])
    return "%.2fx (%.2f-%.2f)" % (a[0] / b[0], rr[0], rr[1]) if rr else ""


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    osname = "?"
    try:
        with open("/etc/os-release") as f:
            m = re.search(r'^PRETTY_NAME="?([^"\n]*)', f.read(), re.M)
            osname = m.group(1) if m else "?"
    except OSError:
        pass
    bt = subprocess.run([BPFTRACE, "--version"], capture_output=True, text=True).stdout.strip() if BPFTRACE else "none"
    return ("machine: %d cores, %s; kernel %s; %s; glibc %s; %s; load average %s"
            % (os.cpu_count(), model, platform.release(), osname, platform.libc_ver()[1], bt,
               " ".join(open("/proc/loadavg").read().split()[:3])))


def goals(res_a, res_c, own, lines, res_d=None, cc1_allocs=None, trap=None):
    def med(res, k):
        s = stats(res.get(k, []))
        return s[0] if s else None

    def verdict(ok):
        return "met" if ok else "NOT met"

    lines.append("goals (issue 5):")
    full, floor = med(res_a, "full"), med(res_a, "floor")
    if full and floor:
        r = full / floor
        lines.append("   full mode within 1.3x of its floor per malloc+free pair: %.2fx (%.0f vs %.0f ns): %s"
                     % (r, full, floor, verdict(r <= 1.3)))
    # the same paired per-round figures and trap as section 3
    trap = trap if trap else trap_ns(res_a)
    if trap:
        for res, depth in ((res_a, 6), (res_d or {}, 6 + DEEP)):
            s = per_round_diff(res, "full", "fp")
            if s:
                lines.append("   (issue 3) DWARF unwinding adds less per allocation than one uprobe trap, %d frames:"
                             " %+.0f ns vs %.0f ns: %s" % (depth, s[0], trap, verdict(s[0] < trap)))
        # a real program: cc1's stacks are ~21 frames of big frames and many call sites
        s = per_round_diff(res_c, "full", "fp", 1e9 / cc1_allocs) if cc1_allocs else None
        if s:
            lines.append("   (issue 3) DWARF unwinding adds less per allocation than one uprobe trap, cc1:"
                         " %+.0f ns vs %.0f ns: %s" % (s[0], trap, verdict(s[0] < trap)))
    base, cfull, cpeer = med(res_c, "untraced"), med(res_c, "full"), med(res_c, "peer")
    if base and cfull and cpeer and cpeer > base:
        r = (cfull - base) / (cpeer - base)
        lines.append("   cc1 slowdown at most a quarter of bpftrace's extra time: %.2f (+%.2f s vs +%.2f s): %s"
                     % (r, cfull - base, cpeer - base, verdict(r <= 0.25)))
    for res, wl in ((res_a, "bench_alloc"), (res_c, "cc1")):
        s, sf = med(res, "sample"), med(res, "sfloor")
        if s and sf:
            lines.append("   sampling within 1.2x of its floor (%s): %.2fx: %s" % (wl, s / sf, verdict(s / sf <= 1.2)))
    cpu = own.get("cpu")
    if cpu:
        lines.append("   profiler <= 2%% of a core at -i 1 with %d stacks: %.2f%%: %s"
                     % (STACKS, cpu["cpu"] * 100, verdict(cpu["cpu"] <= 0.02)))
        lines.append("   profiler <= 64 MiB RSS: peak %.1f MiB: %s" % (cpu["hwm"] / 1024, verdict(cpu["hwm"] <= 65536)))
    for label, dets in (("1 target", own["det"].get(1, []) + ([cpu["detach"]] if cpu else [])),
                        ("4 targets", own["det"].get(4, []))):
        if dets:
            lines.append("   detach <= 500 ms, %s: at most %.0f ms over %d runs: %s"
                         % (label, max(dets) * 1e3, len(dets), verdict(max(dets) <= 0.5)))


# ------------------------------------------------------------------ main


def main():
    if os.geteuid() != 0:
        die("must run as root (BPF, uprobes)")
    if not BIN.exists():
        die("%s is not built (make)" % BIN)
    if not os.access(BPFTOOL, os.X_OK):
        die("bpftool not found: cannot check that no other profiler is attached (make deps)")
    found = uprobe_entries()
    if found:
        time.sleep(3)  # ours from a previous run may still be being released
        found = uprobe_entries()
    if found:
        die("another profiler's uprobes are attached (%s): results would be wrong; stop it first"
            % "; ".join(found[:3]))
    OUT.mkdir(parents=True, exist_ok=True)
    b = Bench()
    ok = build(b.alloc, "tools/bench_alloc.c", ["-O2"])
    ok &= build(b.deep, "tools/bench_alloc.c", ["-O2", "-DDEPTH=%d" % DEEP])
    ok &= build(b.paths, "tools/bench_alloc.c", ["-O2", "-DPATHS=%d" % PATHS, "-fno-omit-frame-pointer"])
    ok &= build(b.large, "tools/bench_alloc.c", ["-O2", "-DLARGE=%d" % LARGE])
    ok &= build(b.aligned, "tools/bench_alloc.c", ["-O2", "-DALIGNED=64"])
    ok &= build(b.remap, "tools/bench_alloc.c", ["-O2", "-DREMAP=%d" % LARGE])
    ok &= build(b.stacks, "tools/bench_stacks.c", ["-O0", "-g", "-fno-omit-frame-pointer"])
    ok &= build(b.stacks_nog, "tools/bench_stacks.c", ["-O0", "-fno-omit-frame-pointer"])
    if not ok:
        die("cannot build the benchmark programs")
    b.cc1 = find_cc1()
    if not b.cc1:
        die("gcc's cc1 not found (make deps installs gcc)")
    inp = cc1_input(CC1_FUNCS)
    b.cc1_args = ["-quiet", "-O2", "-ftime-report", inp, "-o", "/dev/null"]
    cs = configs()
    t_start = time.monotonic()
    head = [machine(), "asizeof-bpf %s; %d interleaved rounds (A B C ... A B C ...); medians and min-max"
            % (subprocess.run([str(BIN), "-V"], capture_output=True, text=True).stdout.split()[-1], ROUNDS)]
    print("\n".join(head), flush=True)

    libs = [name for name, _ in LIBS]
    wls = ("alloc", "deep", "cc1", "large", "aligned", "remap", *libs)
    res = {wl: {c.key: [] for c in cs} for wl in wls}
    for r in range(ROUNDS):
        for wl in wls:
            for c in cs:
                if c.na or (wl in ("deep", "remap") and c.key not in DEEP_CONFIGS) or \
                        (wl in (*libs, "large", "aligned") and c.key not in LIB_CONFIGS):
                    continue
                res[wl][c.key].append(b.measure_clean(wl, c))
        print("bench: round %d/%d done (%.0f s)" % (r + 1, ROUNDS, time.monotonic() - t_start), file=sys.stderr,
              flush=True)
    (OUT / ("report.%d.json" % os.getpid())).unlink(missing_ok=True)

    lines = []
    table("1. bench_alloc: %d malloc+free pairs (16-4111 bytes, 1 in 16 kept), ns per pair by its own clock"
          % PAIRS, "%.1f", cs, res["alloc"], lines)
    lines.append("")
    for name, path in LIBS:
        table("1b. bench_alloc under %s (LD_PRELOAD=%s), ns per pair" % (name, os.path.basename(path)),
              "%.1f", [c for c in cs if c.key in LIB_CONFIGS], res[name], lines)
        lines.append("")
    table("1c. bench_alloc -DLARGE=%d: %d malloc+free pairs of %d-%d bytes, each an mmap and an munmap\n"
          "    (MALLOC_MMAP_THRESHOLD_=%s), ns per pair" % (LARGE, LARGE_PAIRS, LARGE, LARGE + 4095,
                                                          LARGE_ENV["MALLOC_MMAP_THRESHOLD_"]),
          "%.1f", [c for c in cs if c.key in LIB_CONFIGS], res["large"], lines)
    lines.append("")
    table("1d. bench_alloc -DALIGNED=64: %d posix_memalign(64)+free pairs of 16-4111 bytes, ns per pair"
          % PAIRS, "%.1f", [c for c in cs if c.key in LIB_CONFIGS], res["aligned"], lines)
    lines.append("")
    table("1e. bench_alloc -DREMAP=%d: %d reallocs of one block between %d and %d bytes, each an mremap\n"
          "    (MALLOC_MMAP_THRESHOLD_=%s), ns per realloc" % (LARGE, LARGE_PAIRS, LARGE, LARGE + 8192,
                                                             LARGE_ENV["MALLOC_MMAP_THRESHOLD_"]),
          "%.1f", [c for c in cs if c.key in DEEP_CONFIGS], res["remap"], lines)
    lines.append("")
    counts = ""
    if b.cc1_counts:
        counts = ", %d allocations + %d frees of non-NULL" % b.cc1_counts
    table("2. cc1 -O2 on a generated file (%d function(s) over %s%s),\n   seconds of cc1's -ftime-report TOTAL wall"
          % (CC1_FUNCS, "/".join(CC1_HEADERS), counts), "%.2f", cs, res["cc1"], lines)
    rc = res["cc1"]
    base, peer = stats(rc["untraced"]), stats(rc["peer"])
    if base and peer and peer[0] > base[0]:
        for k in ("full", "sample"):
            s = stats(rc[k])
            if s:
                lines.append("   our extra time / bpftrace extra time (%s): %.2f (+%.2f s / +%.2f s)"
                             % (k, (s[0] - base[0]) / (peer[0] - base[0]), s[0] - base[0], peer[0] - base[0]))
    lines.append("")
    unwind_cost(b, cs, res, lines)
    lines.append("")
    print("\n".join(lines), flush=True)
    lines2 = []
    own = own_cost(b, lines2)
    lines2.append("")
    goals(res["alloc"], res["cc1"], own, lines2, res["deep"], b.cc1_counts[0] if b.cc1_counts else None, b.trap)
    lines2.append("(total %.0f s; %d measurement(s) repeated; load average now %s)"
                  % (time.monotonic() - t_start, b.retries, " ".join(open("/proc/loadavg").read().split()[:3])))
    print("\n".join(lines2), flush=True)


if __name__ == "__main__":
    # a plain kill of the bench still stops what it started (bpftrace's probes are system-wide)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        main()
    except KeyboardInterrupt:
        reap_all()
        die("interrupted", 130)
    finally:
        reap_all()
