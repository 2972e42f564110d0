# SPDX-License-Identifier: MIT
"""Shared helpers of the end-to-end tests: running the profiler and the workloads, reading its
JSON reports, aggregating stacks by call site, and watching for probes left behind."""

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "asizeof-bpf"
WORKLOADS = REPO / "build" / "workloads"
BPFTOOL = "/usr/sbin/bpftool"

ATTACHED_RE = re.compile(r"^asizeof-bpf: attached to ")
COUNT_KEYS = ("live_bytes", "live_allocs", "alloc_bytes", "allocs", "frees")
# drop counters that must stay 0 in every test here: nothing may go untracked
MUST_BE_ZERO_DROPS = (
    "allocs_map_full",
    "aggs_map_full",
    "procs_map_full",
    "stacks_map_full",
    "stack_unresolved",
    "thread_state_unavailable",
    "missed_frees",
    "stack_preempted",
    "events_lost",
    "procs_untraced",
    "stack_swept",
)

# Generous: these bound waits on events that normally take milliseconds.
ATTACH_TIMEOUT = 60
EXIT_TIMEOUT = 60


IN_CI = os.environ.get("CI", "").strip().lower() == "true"


def skip_or_fail(msg):
    """Skip a test that cannot run here, except with CI=true in the environment: fail."""
    import pytest

    if IN_CI:
        pytest.fail(msg + " (CI=true: not skipping)", pytrace=False)
    pytest.skip(msg)


def workload(name):
    return str(WORKLOADS / name)


# ---------------------------------------------------------------- process bookkeeping


class Reaper:
    """Every process a test starts is registered here and killed at teardown."""

    def __init__(self):
        self.procs = []

    def add(self, p):
        self.procs.append(p)
        return p

    def cleanup(self):
        for p in self.procs:
            # not reaped yet: its pid, and so its process group (it leads one: every process
            # here starts a new session), cannot have been reused; this also ends a command
            # the profiler launched if the profiler did not
            if p.returncode is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            for f in (p.stdin, p.stdout, p.stderr):
                if f:
                    try:
                        f.close()
                    except OSError:
                        pass
        self.procs = []

    def pids(self):
        return {p.pid for p in self.procs}


class LineReader:
    """Reads a pipe line by line in a thread; lines are kept and also queued."""

    def __init__(self, f):
        self.f = f
        self.lines = []
        self.q = queue.Queue()
        self.done = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            for raw in iter(self.f.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.lines.append(line)
                self.q.put(line)
        except (OSError, ValueError):
            pass
        finally:
            self.done.set()
            self.q.put(None)

    def get(self, timeout):
        """Next line, or None at EOF. Raises TimeoutError."""
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("no line within %.0f s" % timeout) from None

    def join(self, timeout=10):
        self.t.join(timeout)


class Workload:
    """A workload driven through stdin/stdout (attach mode, growth)."""

    def __init__(self, reaper, argv, env=None):
        self.p = reaper.add(
            subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                env=env,
            )
        )
        self.out = LineReader(self.p.stdout)
        self.err = LineReader(self.p.stderr)
        line = self.out.get(30)
        assert line and line.startswith("ready "), "workload did not start: %r %r" % (line, self.err.lines)
        self.pid = int(line.split()[1])
        assert self.pid == self.p.pid

    def send(self, cmd):
        self.p.stdin.write((cmd + "\n").encode())
        self.p.stdin.flush()

    def reply(self, timeout=60):
        line = self.out.get(timeout)
        assert line is not None, "workload ended early: stderr %r" % self.err.lines
        return line

    def expect_json(self, cmd, timeout=60):
        self.send(cmd)
        return json.loads(self.reply(timeout))

    def wait(self, timeout=EXIT_TIMEOUT):
        return self.p.wait(timeout=timeout)


def wait_stderr(prof, *texts, timeout=60):
    """Wait until a Profiler's stderr has, for each of texts (a string or a compiled regex), a
    line with it: what it does after the fact (probing a library first seen, building a module's
    unwind table) it says (-v)."""
    def has(t, line):
        return t.search(line) if isinstance(t, re.Pattern) else t in line

    deadline = time.monotonic() + timeout
    while not all(any(has(t, line) for line in list(prof.err.lines)) for t in texts):
        if prof.p.poll() is not None and prof.err.done.is_set():
            raise AssertionError("profiler exited (%s) before saying %r; stderr: %r"
                                 % (prof.p.returncode, texts, prof.err.lines))
        if time.monotonic() > deadline:
            raise AssertionError("profiler did not say %r within %d s; stderr: %r" % (texts, timeout, prof.err.lines))
        time.sleep(0.02)


def send_after_stderr(prof, text, timeout=60):
    """Send a line to a Profiler's stdin (a launched command's) once its stderr has a line with
    text: a workload waiting for the profiler to say it probes it."""
    wait_stderr(prof, text, timeout=timeout)
    prof.p.stdin.write(b"\n")
    prof.p.stdin.flush()


def libc_path():
    """The libc the host's programs run with."""
    out = subprocess.run(["ldd", "/bin/true"], capture_output=True, text=True).stdout
    return re.search(r"libc\.so\.6 => (\S+)", out).group(1)


def attach_go_exit(reaper, wl, args):
    """Attach a profiler run with args to an attach-mode workload, have it work ("go") and
    exit: (final report, the workload's expectation)."""
    prof = Profiler(reaper, list(args) + ["-p", str(wl.pid)])
    prof.wait_attached()
    exp = wl.expect_json("go")
    wl.send("exit")
    assert wl.wait() == 0
    assert prof.drain() == 0, prof.err.lines
    return final_report(prof.reports), exp


def wait_stopped(pid, timeout=30):
    """Wait until process pid is stopped (state T: it raised SIGSTOP itself)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/%d/stat" % pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.01)
    raise AssertionError("pid %d did not stop itself" % pid)


class Profiler:
    """The profiler run in the background, its stdout (JSON reports) and stderr read live."""

    def __init__(self, reaper, args, stdin=subprocess.DEVNULL, env=None):
        self.argv = [str(BIN)] + list(args)
        self.p = reaper.add(
            subprocess.Popen(
                self.argv,
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        )
        self.out = LineReader(self.p.stdout)
        self.err = LineReader(self.p.stderr)
        self.reports = []

    def wait_attached(self, timeout=ATTACH_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            for line in list(self.err.lines):
                if ATTACHED_RE.match(line):
                    return line
            if self.p.poll() is not None and self.err.done.is_set():
                raise AssertionError(
                    "profiler exited with %s before attaching; stderr: %r" % (self.p.returncode, self.err.lines)
                )
            if time.monotonic() > deadline:
                raise AssertionError("profiler did not attach within %d s; stderr: %r" % (timeout, self.err.lines))
            time.sleep(0.02)

    def next_report(self, timeout=30):
        """The next JSON report on stdout (None at EOF)."""
        while True:
            line = self.out.get(timeout)
            if line is None:
                return None
            if not line.strip():
                continue
            rep = json.loads(line)
            assert rep.get("type") == "report", line
            self.reports.append(rep)
            return rep

    def sync(self):
        """Read every report already on the pipe (without waiting); return how many were read
        in total. Any report produced after an event is counted after this returns."""
        while True:
            try:
                line = self.out.q.get_nowait()
            except queue.Empty:
                return len(self.reports)
            if line is None:
                self.out.q.put(None)
                return len(self.reports)
            if line.strip():
                rep = json.loads(line)
                assert rep.get("type") == "report", line
                self.reports.append(rep)

    def reports_after(self, n, count, timeout=30):
        """Wait until at least n + count reports have been read; return the last one."""
        while len(self.reports) < n + count:
            rep = self.next_report(timeout)
            assert rep is not None, "profiler stopped reporting; stderr %r" % self.err.lines
        return self.reports[n + count - 1]

    def drain(self, timeout=EXIT_TIMEOUT):
        """Wait for the profiler to exit; read every remaining report. Returns the exit status."""
        rc = self.p.wait(timeout=timeout)
        self.out.join()
        self.err.join()
        while True:
            try:
                line = self.out.q.get_nowait()
            except queue.Empty:
                break
            if line is None:
                break
            if line.strip():
                rep = json.loads(line)
                self.reports.append(rep)
        return rc

    def stop(self, sig=signal.SIGINT, timeout=EXIT_TIMEOUT):
        self.p.send_signal(sig)
        return self.drain(timeout)


def run_profiler(args, timeout=120, stdin=subprocess.DEVNULL, env=None, prefix=(), cwd=None):
    """Run the profiler to completion: (returncode, stdout, stderr). On timeout its whole
    process group (it and a command it launched) is killed and TimeoutExpired raised."""
    p = subprocess.Popen(
        [*prefix, str(BIN), *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        if p.returncode is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        raise
    return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def parse_reports(text):
    reps = []
    for line in text.splitlines():
        if line.strip():
            rep = json.loads(line)
            assert rep.get("type") == "report", line
            reps.append(rep)
    return reps


def final_report(reps):
    assert reps, "no report at all"
    finals = [r for r in reps if r["final"]]
    assert len(finals) == 1, "expected exactly one final report, got %d" % len(finals)
    assert reps[-1]["final"], "the final report is not the last one"
    return reps[-1]


# ---------------------------------------------------------------- report analysis


def proc_of(rep, pid):
    ps = [p for p in rep["processes"] if p["pid"] == pid]
    assert len(ps) == 1, "pid %d appears %d times in processes: %r" % (pid, len(ps), rep["processes"])
    return ps[0]


def stacks_of(rep, pid):
    return [s for s in rep["stacks"] if s["pid"] == pid]


def frame0_func(stack):
    fr = stack["frames"]
    return fr[0]["func"] if fr else None


def by_frame0(rep, pid):
    """Aggregate a process's stacks by the function of frames[0] (several stacks may share a
    call site: frames past the first come from a frame-pointer walk of code without frame
    pointers). Returns {func: {"live_bytes":..,..., "allocators": set}}."""
    agg = {}
    for s in stacks_of(rep, pid):
        f = frame0_func(s)
        a = agg.setdefault(f, dict({k: 0 for k in COUNT_KEYS}, allocators=set(), stacks=0))
        for k in COUNT_KEYS:
            a[k] += s[k]
        a["allocators"].add(s["allocator"])
        a["stacks"] += 1
    return agg


def sum_stacks(rep, pid, kind="heap"):
    """Totals of a process's stacks of one kind: heap blocks (the process's live_bytes...) or
    anonymous mappings the program made itself (its mmap_bytes)."""
    c = Counter()
    for s in stacks_of(rep, pid):
        if s["kind"] != kind:
            continue
        for k in COUNT_KEYS:
            c[k] += s[k]
    return {k: c[k] for k in COUNT_KEYS}


def is_strdup(func):
    return func is not None and "strdup" in func


CXX_DEMANGLE = {
    "_Znwm": "operator new(unsigned long)",
    "_ZnwmSt11align_val_t": "operator new(unsigned long, std::align_val_t)",
}


def norm_func(func):
    return CXX_DEMANGLE.get(func, func)


def check_sites(rep, pid, sites, group=None):
    """Every site of the workload's expectation, exactly. group(func) maps a frames[0] function
    to the expectation key (default: identity; strdup variants -> "strdup")."""
    if group is None:

        def group(f):
            return "strdup" if is_strdup(f) else f

    got = {}
    for f, a in by_frame0(rep, pid).items():
        g = got.setdefault(group(f), dict({k: 0 for k in COUNT_KEYS}, allocators=set()))
        for k in COUNT_KEYS:
            g[k] += a[k]
        g["allocators"] |= a["allocators"]
    errors = []
    for name, exp in sites.items():
        g = got.get(name, dict({k: 0 for k in COUNT_KEYS}, allocators=set()))
        want = {k: exp[k] for k in COUNT_KEYS}
        have = {k: g[k] for k in COUNT_KEYS}
        if have != want:
            errors.append("%s: expected %s, got %s" % (name, want, have))
        if exp["allocs"] and g["allocators"] != {exp["allocator"]}:
            errors.append("%s: expected allocator %s, got %s" % (name, exp["allocator"], sorted(g["allocators"])))
    assert not errors, "per-site mismatch (pid %d):\n  " % pid + "\n  ".join(errors)
    return got


def check_proc_is_sum_of_stacks(rep, pid):
    """A process's totals are its stacks' figures and what its retired aggregates had counted
    (none unless --max-stacks pressure retired some: see test_retire)."""
    p = proc_of(rep, pid)
    s = sum_stacks(rep, pid)
    s["allocs"] += p["retired_allocs"]
    s["frees"] += p["retired_allocs"]
    s["alloc_bytes"] += p["retired_alloc_bytes"]
    have = {k: p[k] for k in COUNT_KEYS}
    assert have == s, "pid %d: process totals %s != sum of its stacks %s" % (pid, have, s)
    m = sum_stacks(rep, pid, kind="mmap")
    assert (p["mmap_bytes"], p["mmap_regions"]) == (m["live_bytes"], m["live_allocs"]), (p, m)
    return p


def check_drops(rep, unknown_frees=None):
    d = rep["dropped"]
    bad = {k: d[k] for k in MUST_BE_ZERO_DROPS if d[k] != 0}
    assert not bad, "unexpected drops: %r" % d
    if unknown_frees is not None:
        assert d["unknown_frees"] == unknown_frees, "dropped.unknown_frees %d != %d" % (
            d["unknown_frees"],
            unknown_frees,
        )


def check_proc_exact(rep, pid, exp_proc):
    p = proc_of(rep, pid)
    keys = COUNT_KEYS + ("unknown_frees",)
    have = {k: p[k] for k in keys}
    want = {k: exp_proc[k] for k in keys}
    assert have == want, "pid %d: process totals %s != expected %s" % (pid, have, want)


def check_growth_consistent(reps, pids):
    """growth_bytes of every process and stack equals its live change since the previous report."""
    prev_proc, prev_stack = {}, {}
    for i, rep in enumerate(reps):
        for p in rep["processes"]:
            if p["pid"] not in pids:
                continue
            want = p["live_bytes"] - prev_proc.get(p["pid"], 0)
            assert p["growth_bytes"] == want, "report %d pid %d: growth_bytes %d, live went %d -> %d" % (
                i,
                p["pid"],
                p["growth_bytes"],
                prev_proc.get(p["pid"], 0),
                p["live_bytes"],
            )
        cur_stack = {}
        for s in rep["stacks"]:
            if s["pid"] not in pids:
                continue
            key = (s["pid"], s["stack_id"], s["allocator"])
            want = s["live_bytes"] - prev_stack.get(key, 0)
            assert s["growth_bytes"] == want, "report %d stack %r (%s): growth_bytes %d, live went %d -> %d" % (
                i,
                key,
                frame0_func(s),
                s["growth_bytes"],
                prev_stack.get(key, 0),
                s["live_bytes"],
            )
            cur_stack[key] = s["live_bytes"]
        # a stack missing now had its live bytes go to... it must not vanish while live
        for key, live in prev_stack.items():
            if key not in cur_stack:
                assert live == 0, "report %d: stack %r with %d live bytes vanished" % (i, key, live)
        prev_stack = cur_stack
        prev_proc = {p["pid"]: p["live_bytes"] for p in rep["processes"]}


# ---------------------------------------------------------------- schema

REPORT_KEYS = {"type", "time", "elapsed_s", "final", "unwind", "processes", "stacks", "dropped"}
UNWIND_KEYS = {"mode", "modules", "tables", "rows", "bytes", "build_ms", "stacks", "frames_unwound",
               "frames_checked", "rule_searches", "stack_reads", "stacks_repeated"}
PROC_KEYS = {
    "pid",
    "comm",
    "live_bytes",
    "live_allocs",
    "growth_bytes",
    "alloc_bytes",
    "allocs",
    "frees",
    "exited",
    "growth_total_bytes",
    "alloc_rate",
    "free_rate",
    "unknown_frees",
    "retired_allocs",
    "retired_alloc_bytes",
}
STACK_KEYS = {
    "pid",
    "comm",
    "allocator",
    "live_bytes",
    "live_allocs",
    "growth_bytes",
    "alloc_bytes",
    "allocs",
    "frees",
    "stack_id",
    "truncated",
    "frames",
}
FRAME_KEYS = {"addr", "func", "file", "line", "module", "inlined", "module_offset"}
DROP_KEYS = {
    "allocs_map_full",
    "aggs_map_full",
    "procs_map_full",
    "stacks_map_full",
    "stack_collisions",
    "stack_unresolved",
    "stack_truncated",
    "thread_state_unavailable",
    "unknown_frees",
    "missed_frees",
    "stack_incomplete",
    "unwind_table_full",
    "stack_preempted",
    "events_lost",
    "mappings_unindexed",
    "aggs_retired",
    "stack_swept",
}
ALLOCATORS = {"malloc", "calloc", "realloc", "memalign", "posix_memalign", "valloc", "pvalloc"}
MMAP_CALLS = {"mmap", "mremap"}


def check_schema(rep):
    assert set(rep) >= REPORT_KEYS, "report keys %r" % sorted(rep)
    assert isinstance(rep["final"], bool)
    assert set(rep["unwind"]) >= UNWIND_KEYS and rep["unwind"]["mode"] in ("dwarf", "fp"), rep["unwind"]
    assert isinstance(rep["time"], (int, float)) and rep["time"] > 1.6e9
    assert isinstance(rep["elapsed_s"], (int, float)) and rep["elapsed_s"] >= 0
    assert set(rep["dropped"]) >= DROP_KEYS, "dropped keys %r" % sorted(rep["dropped"])
    for p in rep["processes"]:
        assert set(p) >= PROC_KEYS, "process keys %r" % sorted(p)
        assert isinstance(p["exited"], bool)
        assert isinstance(p["comm"], str)
    for s in rep["stacks"]:
        assert set(s) >= STACK_KEYS, "stack keys %r" % sorted(s)
        assert s["kind"] in ("heap", "mmap"), s["kind"]
        assert s["allocator"] in (ALLOCATORS if s["kind"] == "heap" else MMAP_CALLS), s["allocator"]
        assert isinstance(s["truncated"], bool)
        # a string: jq and JavaScript round numbers above 2^53, and ids take 64 bits
        assert isinstance(s["stack_id"], str) and s["stack_id"].isdigit() and int(s["stack_id"]) < 2**64
        assert isinstance(s["frames"], list)
        for f in s["frames"]:
            assert set(f) >= FRAME_KEYS, "frame keys %r" % sorted(f)
            assert isinstance(f["addr"], int) and isinstance(f["inlined"], bool)


# ---------------------------------------------------------------- probes left behind


def _bpftool_json(*args):
    p = subprocess.run([BPFTOOL, *args, "-j"], capture_output=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("bpftool %s failed: %s" % (" ".join(args), p.stderr.decode(errors="replace")))
    text = p.stdout.decode().strip()
    return json.loads(text) if text else []


def probe_snapshot():
    """{key: entry} for every BPF link and every perf-event attachment in the system."""
    snap = {}
    for e in _bpftool_json("link", "list"):
        snap[("link", e.get("id"))] = e
    for e in _bpftool_json("perf", "list"):
        snap[("perf", e.get("pid"), e.get("fd"), e.get("prog_id"))] = e
    return snap


def _link_holders():
    """{link id: {pid, ...}} from every process's fdinfo (bpftool 7.1 does not list the pids
    holding a link)."""
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
                    text = f.read()
            except OSError:
                continue
            m = re.search(r"^link_id:\s*(\d+)", text, re.M)
            if m:
                holders.setdefault(int(m.group(1)), set()).add(int(d))
    return holders


def _holders(key, entry, link_holders):
    """pids holding a link, or the perf entry's pid."""
    if key[0] == "link":
        return link_holders.get(entry.get("id"), set())
    if "pid" in entry:
        return {entry["pid"]}
    return set()


def _comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


# processes a test here starts (directly or through the profiler's launch mode)
OUR_COMMS = {"alloc_sites", "alloc_growth", "alloc_threads", "alloc_cxx", "print_args", "sh", "true", "sleep"}


def leftover_probes(before, ours, wait=3.0):
    """Entries that appeared since `before` and are ours: held by a process we started (or one
    running one of our workloads), held by no live process, or unattributed. Entries held only by
    live processes we did not start (another profiler running on this machine) are not ours.
    Waits up to `wait` seconds for links being released asynchronously."""
    deadline = time.monotonic() + wait
    while True:
        after = probe_snapshot()
        new = {}
        fresh = [k for k in after if k not in before]
        link_holders = _link_holders() if any(k[0] == "link" for k in fresh) else {}
        for k in fresh:
            e = after[k]
            holders = _holders(k, e, link_holders)
            foreign = bool(holders) and all(
                h not in ours and _comm(h) is not None and _comm(h) not in OUR_COMMS for h in holders
            )
            if not foreign:
                new[k] = e
        if not new or time.monotonic() > deadline:
            return new
        time.sleep(0.1)


def bpf_fds_of(pid):
    """Open BPF objects (links, programs, maps) and perf events in a process's fd table."""
    found = []
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except FileNotFoundError:
        return found
    for fd in fds:
        try:
            t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if "bpf" in t or "perf_event" in t:
            found.append((fd, t))
    return found


# ---------------------------------------------------------------- errors


def check_one_error_line(rc, out, err, want_rc=None, mentions=None):
    """One error line, printable, starting "asizeof-bpf: " (and naming `mentions`, the option or
    value at fault, when given); exit status non-zero, below 128 (and want_rc if given)."""
    lines = [l for l in err.splitlines() if l.strip()]
    detail = "rc=%s stderr=%r" % (rc, err)
    assert rc != 0, "exit status 0 for an error; " + detail
    assert 0 < rc < 128, "crashed or killed by a signal; " + detail
    if want_rc is not None:
        assert rc == want_rc, "exit status %d, expected %d; %s" % (rc, want_rc, detail)
    assert "Traceback" not in err and "Segmentation" not in err and "core dumped" not in err, detail
    assert len(lines) == 1, "expected exactly one stderr line; " + detail
    assert lines[0].startswith("asizeof-bpf: "), "stderr line does not start with 'asizeof-bpf: '; " + detail
    assert lines[0].isprintable() and "\ufffd" not in lines[0], "unprintable bytes in the error; " + detail
    if mentions is not None:
        assert mentions in lines[0], "the error does not name %r; %s" % (mentions, detail)


def free_pid():
    """A pid that is not in use (checked, not reserved)."""
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    for pid in range(pid_max - 1, 300, -1):
        if not os.path.exists("/proc/%d" % pid):
            return pid
    raise RuntimeError("no free pid")


STRIPPED_STATIC_C = r"""
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
void *volatile kept[16];
int main(int argc, char **argv)
{
	char c;

	for (int i = 0; i < 16; i++)
		kept[i] = malloc(1000);
	if (argc > 1 && !strcmp(argv[1], "wait"))
		while (read(0, &c, 1) > 0)
			;
	else
		usleep(800000); /* looked at after its exec: at 1, 4, 16, 64 and 256 ms */
	return 0;
}
"""


def stripped_static(d):
    """A static program without symbols: no malloc the profiler can find. It keeps 16 blocks,
    then exits after 0.8 s, or with argument "wait" at the end of its stdin."""
    src, out = d / "stripped_static.c", d / "stripped_static"
    src.write_text(STRIPPED_STATIC_C)
    p = subprocess.run(["gcc", "-O2", "-static", "-s", "-o", str(out), str(src)], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return str(out)
