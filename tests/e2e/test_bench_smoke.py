# SPDX-License-Identifier: MIT
"""`make bench` smoke test: tools/bench.sh runs with tiny sizes and prints a well-formed table.
No timing is asserted (a benchmark's figures are not test results); counts are: the profiler's
final report holds exactly the stacks bench_stacks made, and the symbolizer names every frame."""

import os
import re
import signal
import subprocess
import time

import pytest

import helpers
from helpers import REPO

STACKS = 40
ENV = {"ROUNDS": "1", "PAIRS": "2000", "LARGE_PAIRS": "200", "CC1_FUNCS": "1", "STACKS": str(STACKS), "HOLD": "1", "QUIET_WAIT": "20"}
CONFIGS = (
    "untraced",
    "asizeof-bpf (full)",
    "empty probes (full's floor)",
    "asizeof-bpf --unwind fp",
    "asizeof-bpf --sample-bytes 524288",
    "empty probes (sampling's floor)",
    "bpftrace peer (bench_peer.bt)",
)
NUM = r"\d+(?:\.\d+)?"
ROW = re.compile(r"^   (.{36}) +(%s) +(%s)-(%s) +(%s)x(?:  (%s)x \((%s)-(%s)\))?$" % ((NUM,) * 7))
NA = re.compile(r"^   (.{36}) +n/a \((not built|no bpftrace)\)$")


def _uprobes_attached():
    """As the bench checks: uprobe perf events, or uprobe_multi links (bpftool 7.1: type 12)."""
    snap = helpers.probe_snapshot()
    return [e for (kind, *_), e in snap.items()
            if (kind == "perf" and e.get("fd_type") in ("uprobe", "uretprobe"))
            or (kind == "link" and e.get("type") in (12, "uprobe_multi"))]


@pytest.fixture(scope="module")
def bench(bpf_ok):
    # the bench refuses to run beside another profiler: give one that is running a minute
    deadline = time.monotonic() + 60
    while _uprobes_attached() and time.monotonic() < deadline:
        time.sleep(1)
    p = subprocess.Popen(["bash", str(REPO / "tools" / "bench.sh")], cwd=str(REPO), env=dict(os.environ, **ENV),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = p.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        pytest.fail("tools/bench.sh did not finish within 240 s", pytrace=False)
    out, err = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    if p.returncode == 1 and "another profiler" in err:
        helpers.skip_or_fail("another profiler's uprobes are attached: " + err.strip())
    return p.returncode, out, err


def _rows(out, title):
    """{configuration: match} of the table under the line starting with title."""
    lines = out.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith(title))
    rows = {}
    for line in lines[start + 1:]:
        if not line.startswith("   "):
            break
        m = ROW.match(line) or NA.match(line)
        if m:
            rows[m.group(1).strip()] = m
    return rows


def test_bench_runs(bench, probe_guard):
    rc, out, err = bench
    assert rc == 0, err
    first = out.splitlines()[0]
    assert re.match(r"^machine: \d+ cores, .+; kernel \S+; .+", first), first
    assert "failed" not in out, out
    assert "Traceback" not in err, err


@pytest.mark.parametrize("title", ["1. bench_alloc:", "2. cc1 -O2"])
def test_bench_table_well_formed(bench, title):
    rc, out, err = bench
    assert rc == 0, err
    rows = _rows(out, title)
    assert set(rows) == set(CONFIGS), out
    for name, m in rows.items():
        if m.re is NA:
            assert name != "untraced" and name != "asizeof-bpf (full)", m.group(0)
            continue
        med, lo, hi, vs = (float(m.group(k)) for k in (2, 3, 4, 5))
        assert lo <= med <= hi, m.group(0)
        assert lo == hi, "one round: one value: %s" % m.group(0)
        if name == "untraced":
            assert vs == 1.0, m.group(0)
        # the floor ratio is shown exactly for the two modes that have a floor
        has_floor = m.group(6) is not None
        assert has_floor == (name in ("asizeof-bpf (full)", "asizeof-bpf --sample-bytes 524288")), m.group(0)


def test_bench_large_blocks_table(bench):
    """Row 1c: blocks from glibc's mmap path, untraced, full mode and its floor."""
    rc, out, err = bench
    assert rc == 0, err
    rows = _rows(out, "1c. bench_alloc -DLARGE=262144")
    assert set(rows) == {"untraced", "asizeof-bpf (full)", "empty probes (full's floor)"}, out
    assert all(m.re is ROW for m in rows.values()), out


def test_bench_aligned_and_remap_tables(bench):
    """Rows 1d and 1e: posix_memalign pairs (untraced, full, its floor) and reallocs of a mapped
    block (the same and --unwind fp: mremap by its tracepoints, or probed)."""
    rc, out, err = bench
    assert rc == 0, err
    rows = _rows(out, "1d. bench_alloc -DALIGNED=64")
    assert set(rows) == {"untraced", "asizeof-bpf (full)", "empty probes (full's floor)"}, out
    assert all(m.re is ROW for m in rows.values()), out
    rows = _rows(out, "1e. bench_alloc -DREMAP=262144")
    assert set(rows) == {"untraced", "asizeof-bpf (full)", "empty probes (full's floor)",
                         "asizeof-bpf --unwind fp"}, out
    assert all(m.re is ROW for m in rows.values()), out


def test_bench_cc1_counts_and_peer_ratio(bench):
    rc, out, err = bench
    assert rc == 0, err
    m = re.search(r"^2\. cc1 -O2 on a generated file \(1 function\(s\) over .*, (\d+) allocations \+ (\d+) frees",
                  out, re.M)
    assert m, out
    assert int(m.group(1)) > 1000 and int(m.group(2)) > 1000, m.group(0)
    if "bpftrace peer (bench_peer.bt)" in _rows(out, "2. cc1 -O2") and \
            _rows(out, "2. cc1 -O2")["bpftrace peer (bench_peer.bt)"].re is ROW:
        assert re.search(r"^   our extra time / bpftrace extra time \(full\): -?%s " % NUM, out, re.M), out


def test_bench_unwind_cost(bench):
    """Section 3: the trap cost, DWARF's extra cost per allocation at two depths, the depth the
    deep workload's stack reached (all its frames, down to _start), and table build figures for
    libc, libstdc++ and cc1."""
    rc, out, err = bench
    assert rc == 0, err
    assert re.search(r"^3\. stack unwinding", out, re.M), out
    # one trap is an entry probe's; a return probe (a system call, not a trap, on x86-64 6.11+) apart
    assert re.search(r"^   one uprobe trap \(an empty entry probe.*: -?%s ns \(-?%s--?%s\)$" % (NUM, NUM, NUM), out,
                     re.M), out
    assert re.search(r"^   a return probe \(floor - entry probes' floor\): -?%s ns \(-?%s--?%s\); "
                     r"\(floor - untraced\) / 3: -?%s ns$" % (NUM, NUM, NUM, NUM), out, re.M), out
    for frames in (6, 30):
        assert re.search(r"^   bench_alloc.*, %d frames per stack: [+-]%s ns per allocation" % (frames, NUM), out, re.M), out
    assert re.search(r"^   cc1: [+-]%s ns per allocation" % NUM, out, re.M), out
    m = re.search(r"^   depth reached in bench_alloc -DDEPTH=24: (\d+) frames, down to (\S+) \(truncated: (\w+)\)$",
                  out, re.M)
    assert m, out
    # malloc's caller run, 25 descend frames, main, two of libc's start-up, _start
    assert (int(m.group(1)), m.group(2), m.group(3)) == (30, "_start", "False"), m.group(0)
    for lib in ("libc.so.6", "libstdc++.so.6", "cc1"):
        m = re.search(r"^     \S*%s\S* +(\d+) rows +(\d+) KiB +%s ms" % (re.escape(lib), NUM), out, re.M)
        assert m and int(m.group(1)) > 1000, out
    # the same cost as the kernel accounts BPF run time, and what the unwinder did on cc1
    for name in ("bench_alloc, 6 frames", "bench_alloc -DDEPTH=24, 30 frames", "cc1"):
        assert re.search(r"^     %s +dwarf +%s ns, fp +%s ns: [+-]%s ns \([+-]%s\.\.[+-]%s\) = -?%s traps$"
                         % (re.escape(name), NUM, NUM, NUM, NUM, NUM, NUM), out, re.M), out
    assert re.search(r"^   cc1, per stack: %s frames \(%s%% checked against the last stack\), %s table searches, "
                     r"%s reads of the user stack$" % ((NUM,) * 4), out, re.M), out
    for frames in (6, 30):
        assert re.search(r"^   \(issue 3\) DWARF unwinding adds less per allocation than one uprobe trap, %d frames: "
                         r".*: (met|NOT met)$" % frames, out, re.M), out
    assert re.search(r"^   \(issue 3\) DWARF unwinding adds less per allocation than one uprobe trap, cc1: "
                     r"[+-]%s ns vs %s ns: (met|NOT met)$" % (NUM, NUM), out, re.M), out


def test_bench_own_cost(bench):
    rc, out, err = bench
    assert rc == 0, err
    assert re.search(r"^   CPU at -i 1 .*: %s%% of a core \(user %s%%, system %s%%\)$" % (NUM, NUM, NUM), out, re.M), out
    assert re.search(r"^   memory: peak RSS \(VmHWM\) %s MiB" % NUM, out, re.M), out
    assert re.search(r"^     1 target %s ms \[%s-%s\]; 4 targets %s ms" % ((NUM,) * 4), out, re.M), out
    m = re.search(r"^     %s s for (\d+) stacks, (\d+) frames, (\d+) distinct addresses" % NUM, out, re.M)
    assert m, out
    # every block of bench_stacks is on its own stack, each ending in its own leaf function
    assert int(m.group(1)) == STACKS, m.group(0)
    assert int(m.group(3)) >= STACKS, m.group(0)
    assert int(m.group(2)) > int(m.group(1)), m.group(0)
    named = re.findall(r"; (\d+)/(\d+) named$", out, re.M)
    if "bench_symbolize did not link" not in out:
        assert len(named) == 2, out
        for a, b in named:
            assert int(a) == int(b) == STACKS, out
    assert re.search(r"^goals \(issue 5\):$", out, re.M), out
    for label in ("1 target", "4 targets"):
        assert re.search(r"^   detach <= 500 ms, %s: at most %s ms over \d+ runs: (met|NOT met)$" % (label, NUM), out, re.M), out
