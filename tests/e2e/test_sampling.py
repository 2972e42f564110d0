# SPDX-License-Identifier: MIT
"""Sampling mode (--sample-bytes N) against exact figures, and cost-aware probe placement.

Accuracy: with Poisson sampling a site of small blocks gets about total/N samples, so its
estimate has a relative standard deviation of about 1/sqrt(total/N). The sites here allocate at
least ~5,000 periods (sd <= 1.4%), so the 5% bound is > 3.5 standard deviations: a failure is a
bias, not bad luck."""

import json
import os
import math
import re
import shutil
import signal
import subprocess

import pytest

import fleet_tools
import helpers

PERIOD = 4096


@pytest.fixture(scope="module")
def sampled_run(bpf_ok, guarded, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sampling")
    wl = helpers.workload("sampling_sites")
    report, expected = tmp / "report.json", tmp / "expected.json"
    rc, out, err = guarded.run(["--sample-bytes", str(PERIOD), "-f", "json", "-n", "0", "-i", "5",
                                "-o", str(report), "--", wl, str(expected)])
    assert rc == 0, err
    return helpers.parse_reports(report.read_text()), json.loads(expected.read_text())


def test_estimates_are_marked(sampled_run):
    reps, _ = sampled_run
    final = helpers.final_report(reps)
    assert final["sampled"] is True
    assert final["sample_bytes"] == PERIOD


def test_collapsed_and_metrics_say_they_are_estimates(env, tmp_path):
    """Folded stacks have no place for a note: stderr says their weights are estimates (and
    says nothing of the kind for exact ones); serve's asizeof_sample_bytes gauge gives the
    period."""
    wl = helpers.workload("simple_sites")
    for extra, said in ((["--sample-bytes", str(PERIOD)], True), ([], False)):
        out = tmp_path / "stacks.folded"
        rc, _, err = helpers.run_profiler(extra + ["-f", "collapsed", "-o", str(out), "--", wl, "launch", str(tmp_path / "exp.json")])
        assert rc == 0, err
        assert ("sampled (--sample-bytes %d): the collapsed stacks' weights are estimates" % PERIOD in err) == said, err
    target = helpers.Workload(env["reaper"], [env["workloads"]["alloc_sites"], "attach"])
    prof = helpers.Profiler(env["reaper"], ["serve", "--listen", "127.0.0.1:0", "-i", "0.2",
                                            "--sample-bytes", str(PERIOD), "-p", str(target.pid)])
    prof.wait_attached()
    _, port = fleet_tools.wait_serving(prof)
    status, body, _ = fleet_tools.http_get("http://127.0.0.1:%d/metrics" % port)
    assert status == 200
    assert fleet_tools.metric_value(body.decode(), "asizeof_sample_bytes") == PERIOD
    prof.p.send_signal(signal.SIGTERM)
    assert prof.p.wait(timeout=30) == 0
    target.send("exit")
    assert target.wait() == 0


def test_text_and_top_say_they_are_estimates(bpf_ok, tmp_path):
    """Every text report's header and every top screen's name the period; exact runs do not."""
    wl = helpers.workload("simple_sites")
    for extra, said in ((["--sample-bytes", str(PERIOD)], True), ([], False)):
        for cmd in ([], ["top", "-b", "-i", "0.2"]):
            rc, out, err = helpers.run_profiler(cmd + extra + ["--", wl, "launch", str(tmp_path / "exp.json")])
            assert rc == 0, err
            heads = re.findall(r"^asizeof-bpf (?:final report|report|top) .*$", out, re.M)
            assert heads, out
            if cmd:
                marks = [h for h in heads if h.endswith("sampled, 1 byte in %d: estimates" % PERIOD)]
            else:
                marks = re.findall(r"^sampled: one byte in %d, figures are estimates$" % PERIOD, out, re.M)
            assert len(marks) == (len(heads) if said else 0), (cmd, extra, out)


def test_estimates_within_5_percent(sampled_run):
    reps, exp = sampled_run
    final = helpers.final_report(reps)
    got = helpers.by_frame0(final, exp["pid"])
    for site in ("site_small", "site_mid", "site_big"):
        want = exp["sites"][site]["live_bytes"]
        assert want >= 5000 * PERIOD or site == "site_big"
        live = got[site]["live_bytes"]
        assert abs(live - want) <= 0.05 * want, "%s: estimate %d, exact %d" % (site, live, want)


def test_block_count_estimates_are_unbiased(sampled_run):
    """A sampled block of size s stands for 1/p(s) blocks, p = 1 - e^(-s/N): a whole number, so
    rounded up with the probability of its fraction (rounding to the nearest made blocks of
    twice the period count 1 for 1.16: -13.5%). site_mid: 8192-byte blocks, p = 0.865; the
    count's standard deviation is sqrt(n (p E[c^2 | sampled] - 1)), 37 for 5,000 blocks."""
    reps, exp = sampled_run
    got = helpers.by_frame0(helpers.final_report(reps), exp["pid"])
    n = exp["sites"]["site_mid"]["live_allocs"]
    p = 1 - math.exp(-8192 / PERIOD)
    w = 1 / p  # blocks per sample: 1 or 2, 2 with probability w - 1
    sd = math.sqrt(n * (p * ((2 - w) + 4 * (w - 1)) - 1))
    est = got["site_mid"]["live_allocs"]
    assert abs(est - n) <= 5 * sd, "site_mid: %d blocks estimated, %d exact (sd %.0f)" % (est, n, sd)
    # blocks far above the period are always sampled, one for one
    assert got["site_big"]["live_allocs"] == exp["sites"]["site_big"]["live_allocs"]
    # small blocks (~0.05 sampled, ~20 each): within 5% like their bytes
    n = exp["sites"]["site_small"]["live_allocs"]
    assert abs(got["site_small"]["live_allocs"] - n) <= 0.05 * n


def test_freed_site_estimate_is_exactly_zero(sampled_run):
    # a freed sampled block subtracts exactly the weight it added
    reps, exp = sampled_run
    got = helpers.by_frame0(helpers.final_report(reps), exp["pid"])
    assert got["site_churn"]["live_bytes"] == 0
    assert got["site_churn"]["live_allocs"] == 0
    assert got["site_churn"]["allocs"] > 0


def test_no_unknown_frees_reported_when_sampling(sampled_run):
    # frees of unsampled blocks are expected, not "unknown"
    reps, _ = sampled_run
    assert helpers.final_report(reps)["dropped"]["unknown_frees"] == 0


def test_bad_sample_bytes(bpf_ok):
    # 2^32: a sampled 1-byte block stood for 2^32 blocks, which wrapped to 0 in the kernel's
    # 32-bit count and dropped it; 2^40, 2^64 and beyond, overflowing
    for bad in ("0", "-5", "abc", "1e3", "4294967296", "1099511627776", "18446744073709551616",
                "99999999999999999999999", "", "0x1000", "4096k"):
        rc, out, err = helpers.run_profiler(["--sample-bytes", bad, "--", "/bin/true"])
        helpers.check_one_error_line(rc, out, err, want_rc=2, mentions="--sample-bytes")


def test_min_size_is_exact_at_the_threshold(bpf_ok, guarded, tmp_path):
    """--min-size 4096: every block of 4096 bytes or more counted exactly (calloc by n*m, a
    block realloc grows across by its new size at the realloc, one shrunk below freed), none
    below, no unknown frees for the unrecorded ones; the report says the threshold."""
    wl = helpers.workload("min_size_sites")
    report, expected = tmp_path / "report.json", tmp_path / "expected.json"
    rc, out, err = guarded.run(["--min-size", "4096", "-f", "json", "-n", "0", "-i", "60",
                                "-o", str(report), "--", wl, str(expected)])
    assert rc == 0, err
    exp = json.loads(expected.read_text())
    final = helpers.final_report(helpers.parse_reports(report.read_text()))
    assert final["min_size"] == 4096 and final["sampled"] is False, final
    helpers.check_sites(final, exp["pid"], exp["sites"])
    helpers.check_proc_exact(final, exp["pid"], exp["proc"])
    helpers.check_proc_is_sum_of_stacks(final, exp["pid"])
    helpers.check_drops(final, unknown_frees=0)


def test_min_size_off_by_default(bpf_ok, guarded, tmp_path):
    report = tmp_path / "report.json"
    rc, out, err = guarded.run(["-f", "json", "-o", str(report), "--", "/bin/true"])
    assert rc == 0, err
    assert helpers.final_report(helpers.parse_reports(report.read_text()))["min_size"] == 0


def test_bad_min_size(bpf_ok):
    # the error gives the range the program takes (2^48: a size no allocation reaches)
    for bad in ("-1", "abc", " 5", "", "1k", "0x1000", "281474976710657", "18446744073709551616",
                "99999999999999999999999"):
        rc, out, err = helpers.run_profiler(["--min-size", bad, "--", "/bin/true"])
        helpers.check_one_error_line(rc, out, err, want_rc=2, mentions="is not 0-281474976710656 bytes")


def test_free_probe_placement_by_disassembly(env):
    """free is probed at its first emulated instruction: on this glibc the push after
    `test %rdi,%rdi; je`; the disassembly must agree with the offset the profiler chose."""
    rc, out, err = helpers.run_profiler(["-vv", "-f", "json", "--", "/bin/true"])
    assert rc == 0, err
    m = re.search(r"free probed at \+(\d+)", err)
    assert m, "no placement line in -vv output"
    skip = int(m.group(1))
    libc = helpers.libc_path()
    nm = subprocess.run(["nm", "-D", libc], capture_output=True, text=True).stdout
    addr = int(re.search(r"^([0-9a-f]+) T free@@", nm, re.M).group(1), 16)
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn",
                          "--start-address=%#x" % addr, "--stop-address=%#x" % (addr + 16), libc],
                         capture_output=True, text=True).stdout
    insns = re.findall(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$", dis, re.M)
    by_addr = {int(a, 16): (op, args) for a, op, args in insns}
    assert by_addr[addr][0] == "test" and by_addr[addr][1].replace(" ", "") == "%rdi,%rdi"
    first_after = sorted(a for a in by_addr if a > addr)
    assert by_addr[first_after[0]][0] == "je"
    assert first_after[1] == addr + skip, "probe not at the instruction after je"
    assert by_addr[addr + skip][0] == "push"
    # glibc 2.36: mmap moves past mov %ecx,%r10d and test $0xfff,%r9d to its jne; memalign,
    # posix_memalign, valloc and pvalloc past their cmpb $0,x(%rip) to a je or a push. Each
    # moved probe sits on an instruction the kernel emulates, after instructions that store
    # nothing (single-stepped there: ~30 us a call on this machine, against ~1 us emulated).
    moved = dict((n, int(k)) for n, k in re.findall(r"(\w+) probed at \+(\d+)", err))
    assert sorted(moved) == ["free", "memalign", "mmap", "posix_memalign", "pvalloc",
                             "valloc"], err
    for name, skip in moved.items():
        a = int(re.search(r"^([0-9a-f]+) [TW] %s@@" % name, nm, re.M).group(1), 16)
        dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "--start-address=%#x" % a,
                              "--stop-address=%#x" % (a + 24), libc],
                             capture_output=True, text=True).stdout
        ins = {int(x, 16): (op, args) for x, op, args in
               re.findall(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$", dis, re.M)}
        assert a + skip in ins, (name, skip, dis)
        op = ins[a + skip][0]
        assert op == "push" or op.startswith("j") or op in ("call", "nop"), (name, op)
        for x in sorted(ins):
            if x >= a + skip:
                break
            op, args = ins[x][0], ins[x][1].split("#")[0].strip()
            assert op in ("test", "cmp", "cmpb", "mov", "je", "jne"), (name, ins[x])
            assert op != "mov" or args.rsplit(",", 1)[-1].startswith("%"), (name, ins[x])


def test_mappings_made_inside_unrecorded_calls_are_not_the_programs(bpf_ok, guarded, tmp_path):
    """With uprobe sessions an unrecorded call's return is skipped, so its depth is not held:
    glibc's own mmap for a 1 MiB block inside it must still not count as the program's."""
    wl = helpers.workload("sampling_sites")
    report, expected = tmp_path / "report.json", tmp_path / "expected.json"
    rc, out, err = guarded.run(["--sample-bytes", str(PERIOD), "--min-size", "2000000", "-f", "json", "-n", "0",
                                "-i", "60", "-o", str(report), "--", wl, str(expected)])
    assert rc == 0, err
    exp = json.loads(expected.read_text())
    p = helpers.proc_of(helpers.final_report(helpers.parse_reports(report.read_text())), exp["pid"])
    assert (p["mmap_bytes"], p["mmap_regions"]) == (0, 0), p
    assert p["allocs"] == 0, p  # nothing reaches 2,000,000 bytes


def test_mappings_inside_unrecorded_calls_with_another_tracers_return_probe(bpf_ok, guarded, tmp_path):
    """The same with bpftrace's return probe on libc's mmap: at our probe (past mmap's first
    instructions) the return address is bpftrace's trampoline, which says nothing of who called
    mmap: glibc's own mmap was counted as the program's (mmap_bytes 1 MiB and more)."""
    bt = shutil.which("bpftrace")
    if not bt:
        helpers.skip_or_fail("no bpftrace (make deps installs it)")
    tracer = subprocess.Popen([bt, "-e", 'uretprobe:/lib/x86_64-linux-gnu/libc.so.6:mmap { @n = count(); }'],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        lines = []
        while not lines or "Attaching" not in lines[-1]:  # (after a warning or two)
            lines.append(tracer.stdout.readline().decode())
            assert lines[-1] and len(lines) < 20, lines
        wl = helpers.workload("sampling_sites")
        report, expected = tmp_path / "report.json", tmp_path / "expected.json"
        rc, out, err = guarded.run(["--sample-bytes", str(PERIOD), "--min-size", "2000000", "-f", "json", "-n",
                                    "0", "-i", "60", "-o", str(report), "--", wl, str(expected)])
    finally:
        os.killpg(tracer.pid, signal.SIGINT)
        tracer.wait(timeout=30)
    assert rc == 0, err
    exp = json.loads(expected.read_text())
    p = helpers.proc_of(helpers.final_report(helpers.parse_reports(report.read_text())), exp["pid"])
    assert (p["mmap_bytes"], p["mmap_regions"]) == (0, 0), p
    assert p["allocs"] == 0, p


@pytest.mark.parametrize("lib", ["/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
                                 "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"],
                         ids=["jemalloc", "tcmalloc"])
def test_operator_new_of_another_allocator_is_sampled_once(bpf_ok, guarded, tmp_path, lib):
    """jemalloc's operator new calls its malloc: an unrecorded new must keep its depth, or the
    malloc inside is sampled again (bytes counted twice in the countdown: estimates ~2x)."""
    wl = helpers.workload("cxx_bulk")
    report, expected = tmp_path / "report.json", tmp_path / "expected.json"
    rc, out, err = guarded.run(["--sample-bytes", str(PERIOD), "-f", "json", "-n", "0", "-i", "60",
                                "-o", str(report), "--", wl, str(expected)],
                               env=dict(os.environ, LD_PRELOAD=lib))
    assert rc == 0, err
    exp = json.loads(expected.read_text())
    got = helpers.by_frame0(helpers.final_report(helpers.parse_reports(report.read_text())),
                            helpers.final_report(helpers.parse_reports(report.read_text()))["processes"][0]["pid"])
    live = got["site_bulk()"]["live_bytes"]
    assert abs(live - exp["live_bytes"]) <= 0.05 * exp["live_bytes"], (live, exp)


# ---------------------------------------------------------------- the tails (sampling_tails)
#
# Bounds at 5 standard deviations of each estimate, computed from the site's live block sizes:
# a block of size s is sampled with probability p = 1 - e^(-s/N) and then counts s/p bytes, so
# the estimate of its bytes has variance s^2 (1/p - 1) (about s N for s << N: sqrt(B N) for B
# bytes). Every site has >= 78 expected samples (site_shrink; most have thousands), where the
# normal approximation holds well enough: a site fails by chance with probability ~1e-6, the
# ~15 sites of a run ~1e-5. A failure is a bias, not bad luck.


def _byte_sd(sizes, n):
    """A sampled block counts s/p bytes, in whole bytes rounded up with the probability of the
    fraction (which adds p f (1 - f) to its variance: only small periods notice)."""
    v = 0.0
    for s, c in sizes:
        if not s:
            continue
        p = -math.expm1(-s / n)
        f = s / p - math.floor(s / p)
        v += c * (s * s * (1 / p - 1) + p * f * (1 - f))
    return math.sqrt(v)


def _count_sd(sizes, n):
    """A sampled block counts 1/p blocks, rounded up with the probability of its fraction."""
    v = 0.0
    for s, c in sizes:
        if not s:
            continue
        p = -math.expm1(-s / n)
        w = 1 / p
        f = math.floor(w)
        v += c * (p * ((1 - (w - f)) * f * f + (w - f) * (f + 1) ** 2) - 1)
    return math.sqrt(v)


_tails = {}


def _tails_run(guarded, tmp_path_factory, period, preload=None):
    if (period, preload) not in _tails:
        tmp = tmp_path_factory.mktemp("sampling_tails")
        report, expected = tmp / "report.json", tmp / "expected.json"
        env = dict(os.environ, LD_PRELOAD=preload) if preload else None
        rc, out, err = guarded.run(["--sample-bytes", str(period), "-f", "json", "-n", "0", "-i", "60",
                                    "-o", str(report), "--", helpers.workload("sampling_tails"),
                                    str(period), str(expected)] + (["entry-points"] if preload else []),
                                   timeout=300, env=env)
        assert rc == 0, err
        exp = json.loads(expected.read_text())
        final = helpers.final_report(helpers.parse_reports(report.read_text()))
        _tails[period, preload] = final, exp, helpers.by_frame0(final, exp["pid"])
    return _tails[period, preload]


@pytest.fixture(scope="module")
def tails_run(bpf_ok, guarded, tmp_path_factory):
    return _tails_run(guarded, tmp_path_factory, PERIOD)


JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"


@pytest.mark.parametrize("period,preload", [(PERIOD, None), (1, None), (2, None),
                                            (PERIOD, JEMALLOC), (PERIOD, TCMALLOC)],
                         ids=["4096", "1", "2", "4096-jemalloc", "4096-tcmalloc"])
def test_tails_estimates_within_5_sigma(bpf_ok, guarded, tmp_path_factory, period, preload):
    """Blocks around the period (N/2, N, 2N), tiny blocks among huge ones, realloc chains
    (grown through unsampled sizes into sampled ones, shrunk the other way, from NULL), calloc,
    memalign, aligned_alloc, posix_memalign, valloc, and a site after allocations that cannot
    succeed (an overflowing calloc and a negative malloc once moved the countdown 2^40 bytes
    on and more: nothing after them was sampled). Periods of 1 and 2 bytes: blocks of 1, 3
    and 17 bytes (their weights, truncated to whole bytes, were 21-37% low). tcmalloc's valloc
    calls its memalign: an unsampled valloc skipped its return, so the memalign inside was
    sampled again (+37% at one period). With another allocator only the sites of calloc and
    the aligned allocators run: its probes single-step (~10 us a call)."""
    if preload and not os.path.exists(preload):
        helpers.skip_or_fail("%s is not installed" % preload)
    _, exp, got = _tails_run(guarded, tmp_path_factory, period, preload)
    assert exp["period"] == period
    bad = []
    for name, want in exp["sites"].items():
        if not want["live_bytes"]:
            continue
        g = got.get(name, {"live_bytes": 0, "live_allocs": 0})
        sd = _byte_sd(want["sizes"], period)
        if abs(g["live_bytes"] - want["live_bytes"]) > 5 * sd:
            bad.append("%s: %d bytes estimated, %d exact (sd %.0f)" % (name, g["live_bytes"], want["live_bytes"], sd))
        sd = _count_sd(want["sizes"], period)
        if abs(g["live_allocs"] - want["live_allocs"]) > 5 * sd:
            bad.append("%s: %d blocks estimated, %d exact (sd %.0f)" % (name, g["live_allocs"], want["live_allocs"], sd))
    assert not bad, bad


def test_tails_blocks_far_above_the_period_are_exact(tails_run):
    """Blocks of >= 16 periods are always sampled (p = 1 to within e^-16) and count as
    themselves: one block of their size, also among a million tiny ones, and after reallocs
    of them that failed."""
    _, exp, got = tails_run
    for name in ("site_huge", "mix_huge", "site_realloc_fail"):
        want = exp["sites"][name]
        assert (got[name]["live_bytes"], got[name]["live_allocs"], got[name]["allocs"]) == \
            (want["live_bytes"], want["live_allocs"], want["allocs"]), name


def test_tails_freed_blocks_leave_exactly_what_they_added(tails_run):
    """Freed (and realloc(p, 0)'d) sampled blocks come out exactly; unsampled frees cost
    nothing and are no unknown frees."""
    final, exp, got = tails_run
    for name in ("site_freed", "site_realloc_zero"):
        assert got[name]["allocs"] > 0, name
        assert (got[name]["live_bytes"], got[name]["live_allocs"]) == (0, 0), (name, got[name])
        assert got[name]["frees"] == got[name]["allocs"], (name, got[name])
    assert final["dropped"]["unknown_frees"] == 0
    assert helpers.proc_of(final, exp["pid"])["unknown_frees"] == 0
    for reason in helpers.MUST_BE_ZERO_DROPS:
        assert final["dropped"][reason] == 0, (reason, final["dropped"])


def test_tails_entry_points_and_process_totals(tails_run):
    """Each site under its entry point; the process's estimates are the sums of its stacks'."""
    final, exp, got = tails_run
    want = {"site_calloc": {"calloc"}, "site_memalign": {"memalign"},
            "site_aligned_alloc": {"memalign"}, "site_posix_memalign": {"posix_memalign"},
            "site_valloc": {"valloc"}, "site_grow": {"malloc", "realloc"},
            "site_shrink": {"malloc", "realloc"}, "site_realloc_null": {"malloc"}}
    for name, allocators in want.items():
        assert got[name]["allocators"] == allocators, (name, got[name])
    p = helpers.proc_of(final, exp["pid"])
    assert {k: p[k] for k in helpers.COUNT_KEYS} == helpers.sum_stacks(final, exp["pid"])
    assert final["sampled"] is True and final["sample_bytes"] == PERIOD
