# SPDX-License-Identifier: MIT
"""Fleet outputs: `-f collapsed` and `-f pprof` files checked site by site against a workload
that knows its bytes (pprof read by Debian's `go tool pprof`), and the `serve` daemon: its
/metrics body checked by `promtool` and scraped by a real Prometheus server queried through its
HTTP API, /debug/pprof/heap read by `go tool pprof` over HTTP, errors, and SIGTERM."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse

import pytest

import fleet_tools as ft
import helpers
from helpers import Profiler, Workload

SERVE_INTERVAL = "0.2"


def launch_sites(env, tmp_path, args):
    """Run alloc_sites (launch mode) under the profiler with args; return its expectation."""
    exp_file = tmp_path / "exp.json"
    rc, out, err = helpers.run_profiler(args + ["--", env["workloads"]["alloc_sites"], "launch", str(exp_file)])
    assert rc == 0, err
    exp = json.loads(exp_file.read_text())
    assert exp["proc"]["live_bytes"] > 0
    return exp


# ---------------------------------------------------------------- files


@pytest.mark.parametrize(
    "weight,key",
    [(None, "live_bytes"), ("live_bytes", "live_bytes"), ("alloc_bytes", "alloc_bytes"), ("allocs", "allocs")],
)
def test_collapsed_sums_per_site(env, tmp_path, weight, key):
    """Folded stacks, root first (the comm), innermost last: the lines ending in each site's
    function sum to its exact figure; nothing else appears; zero-weight stacks are left out."""
    out = tmp_path / "stacks.folded"
    args = ["-f", "collapsed", "-o", str(out)] + (["--weight", weight] if weight else [])
    exp = launch_sites(env, tmp_path, args)
    stacks = ft.parse_collapsed(out.read_text())
    assert stacks, "no folded stack at all"
    got = {}
    for frames, w in stacks:
        assert frames[0] == "alloc_sites", frames
        assert len(frames) >= 2, frames
        assert w > 0
        site = ft.site_of(frames[-1])
        got[site] = got.get(site, 0) + w
    want = {name: s[key] for name, s in exp["sites"].items() if s[key]}
    assert got == want
    assert sum(got.values()) == exp["proc"][key]
    # sorted, one line per distinct stack
    texts = [";".join(f) for f, _ in stacks]
    assert texts == sorted(texts) and len(set(texts)) == len(texts)


def test_collapsed_says_on_stderr_what_it_does_not_hold(env, tmp_path):
    """Folded stacks have no place for a note (flamegraph.pl reads `stack count` lines only):
    blocks left out by --min-size and every drop counter are said on stderr, the file stays
    folded lines only; the counts are the ones the stacks miss."""
    out = tmp_path / "lossy.folded"
    rc, _, err = helpers.run_profiler(["-f", "collapsed", "--max-allocs", "1024", "--min-size", "100",
                                       "--max-depth", "2", "-o", str(out), "--",
                                       env["workloads"]["cxx_bulk"], str(tmp_path / "exp.json")])
    assert rc == 0, err
    stacks = ft.parse_collapsed(out.read_text())
    assert stacks and all("[truncated]" in f for f, _ in stacks), stacks
    lines = err.splitlines()
    assert "asizeof-bpf: blocks under 100 bytes (--min-size) are not in the collapsed stacks" in lines, err
    dropped = [l for l in lines if l.startswith("asizeof-bpf: dropped: ")]
    assert len(dropped) == 1, err
    counters = dict(kv.split("=") for kv in dropped[0].split(": ", 2)[2].split(" (")[0].split())
    full = int(counters["allocs_map_full"])
    # 100,000 kept blocks of 200 B, and the C++ runtime's few: each in the stacks or dropped
    held = sum(w for f, w in stacks if f[-1].startswith("operator new")) // 200
    assert 1000 <= held <= 1024, stacks
    assert 100000 <= held + full <= 100000 + 20, (held, full)
    assert int(counters["stack_truncated"]) >= 100000, counters

    # nothing lost, every size: nothing said
    rc, _, err = helpers.run_profiler(["-f", "collapsed", "-o", str(out), "--",
                                       env["workloads"]["cxx_bulk"], str(tmp_path / "exp.json")])
    assert rc == 0, err
    assert "dropped" not in err and "min-size" not in err, err


def test_pprof_file_read_by_go_pprof(env, tmp_path):
    """`-f pprof`: go tool pprof -raw shows every site with its exact four values, -top and
    -traces read it too."""
    out = tmp_path / "heap.pb.gz"
    exp = launch_sites(env, tmp_path, ["-f", "pprof", "-o", str(out)])
    assert out.read_bytes()[:2] == b"\x1f\x8b", "not gzipped"
    raw = ft.parse_raw(ft.go_pprof(tmp_path, ["-raw", str(out)]))
    ft.check_raw_sites(raw, exp)
    for s in raw["samples"]:
        assert s["labels"]["comm"] == "alloc_sites"
        assert int(s["labels"]["pid"]) == exp["pid"]
    top = ft.go_pprof(tmp_path, ["-top", "-sample_index=inuse_space", str(out)])
    assert "site_big_mmap" in top and "Type: inuse_space" in top
    traces = ft.go_pprof(tmp_path, ["-traces", str(out)])
    assert "site_realloc_mmap" in traces
    # pprof's web UI renders its flame graph of the file
    port = ft.free_port()
    ui = env["reaper"].add(subprocess.Popen(
        ["go", "tool", "pprof", "-http=127.0.0.1:%d" % port, "-no_browser", str(out)],
        env=ft.go_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    try:
        def page():
            try:
                return ft.http_get("http://127.0.0.1:%d/ui/flamegraph" % port, timeout=5)
            except OSError:
                return None

        status, body, _ = ft.wait_for(page, 60, "pprof's web UI")
        assert status == 200
        for site in ("site_realloc_mmap", "site_big_mmap", "site_calloc"):
            assert site.encode() in body, site
    finally:
        os.killpg(ui.pid, signal.SIGKILL)  # `go tool` runs pprof as its child
        ui.wait(timeout=30)


def _first_mapping(tmp_path, src):
    """(go tool pprof's File:, the path of mapping 1) of a profile."""
    top = ft.go_pprof(tmp_path, ["-top", src])
    raw = ft.go_pprof(tmp_path, ["-raw", src])
    return re.search(r"^File: (.*)$", top, re.M).group(1), raw.split("\nMappings\n", 1)[1].split()[2]


def test_pprof_mapping_zero_is_the_main_binary(env, tmp_path):
    """profile.proto: mapping[0] is the main binary (go tool pprof's File:), although the first
    samples start in libstdc++ (operator new): in a -f pprof file and in serve's profile (both
    were libstdc++.so.6.0.30)."""
    cxx = env["workloads"]["alloc_cxx"]
    want = (os.path.basename(cxx), os.path.realpath(cxx))
    out = tmp_path / "heap.pb.gz"
    rc, _, err = helpers.run_profiler(["-f", "pprof", "-o", str(out), "--", cxx, str(tmp_path / "exp.json")])
    assert rc == 0, err
    assert _first_mapping(tmp_path, str(out)) == want

    wl = Workload(env["reaper"], [cxx, "attach"])
    prof = Profiler(env["reaper"], ["serve", "--listen", "127.0.0.1:0", "-i", SERVE_INTERVAL, "-p", str(wl.pid)])
    prof.wait_attached()
    _, port = ft.wait_serving(prof)
    base = "http://127.0.0.1:%d" % port
    exp = wl.expect_json("go")

    def counted():
        text = ft.http_get(base + "/metrics")[1].decode()
        return ft.metric_value(text, "asizeof_allocations_total", comm="alloc_cxx") == exp["proc"]["allocs"] or None

    ft.wait_for(counted, 30, "the workload's allocations in /metrics")
    for q in ("", "?pid=%d" % wl.pid, "?seconds=3600"):
        status, body, _ = ft.http_get(base + "/debug/pprof/heap" + q)
        assert status == 200
        served = tmp_path / "served.pb.gz"
        served.write_bytes(body)
        assert _first_mapping(tmp_path, str(served)) == want, q
    prof.p.send_signal(signal.SIGTERM)
    assert prof.p.wait(timeout=10) == 0
    wl.send("exit")
    assert wl.wait() == 0


def _raw_mappings(tmp_path, src):
    """[(path, build id or None)] of a profile's mappings, as go tool pprof -raw lists them."""
    raw = ft.go_pprof(tmp_path, ["-raw", src]).split("\nMappings\n", 1)[1]
    out = []
    for line in raw.splitlines():
        m = re.match(r"^\s*\d+: 0x[0-9a-f]+/0x[0-9a-f]+/0x[0-9a-f]+ (.*?)\s*((?:\[\w+\])*)$", line)
        if m:
            words = m.group(1).rsplit(" ", 1)
            bid = words[1] if len(words) == 2 and re.fullmatch(r"[0-9a-f]{16,128}", words[1]) else None
            out.append((words[0] if bid else m.group(1), bid))
    return out


def test_pprof_mapping_build_id_is_the_mapped_files(env, tmp_path):
    """profile.proto mappings carry the build-id of the file each process maps, read through the
    symbolizer's descriptor: two programs at one path in two mount namespaces (two containers'
    images) had the first one's build-id both, and a program deleted while it ran had none."""
    src = env["workloads"]["alloc_sites"].replace("build/workloads/alloc_sites", "tests/workloads/alloc_sites.c")
    ids = {"a": "a5" * 19 + "0a", "b": "a5" * 19 + "0b", "c": "a5" * 19 + "0c"}
    for k, bid in ids.items():
        subprocess.run(["gcc", "-O2", "-g", "-o", str(tmp_path / k), src, "-lpthread",
                        "-Wl,--build-id=0x" + bid], check=True)
    ns_dir = tmp_path / "ns"
    ns_dir.mkdir()
    script = "mount -t tmpfs none {d} && cp {src} {d}/app && exec {d}/app attach"
    wls = [Workload(env["reaper"], ["unshare", "-m", "--propagation", "private", "sh", "-c",
                                    script.format(d=ns_dir, src=tmp_path / k)]) for k in ("a", "b")]
    shutil.copy(str(tmp_path / "c"), str(tmp_path / "app_c"))
    wls.append(Workload(env["reaper"], [str(tmp_path / "app_c"), "attach"]))
    os.unlink(str(tmp_path / "app_c"))
    out = tmp_path / "heap.pb.gz"
    args = ["-f", "pprof", "-o", str(out)]
    for wl in wls:
        args += ["-p", str(wl.pid)]
    prof = Profiler(env["reaper"], args)
    prof.wait_attached()
    for wl in wls:
        wl.expect_json("go")
    for wl in wls:
        wl.send("exit")
        assert wl.wait() == 0
    assert prof.drain() == 0, prof.err.lines
    maps = _raw_mappings(tmp_path, str(out))
    assert {b for p, b in maps if p == str(ns_dir / "app")} == {ids["a"], ids["b"]}, maps
    assert {b for p, b in maps if p == str(tmp_path / "app_c") + " (deleted)"} == {ids["c"]}, maps


def test_pprof_marks_cut_stacks_and_blocks_without_one(env, tmp_path):
    """As the collapsed format does: a stack cut at --max-depth ends (outermost) in a
    [truncated] location, blocks recorded under no stack (--max-stacks full) are a sample whose
    one location is [unknown]; both have no address and no mapping, and pprof counts them."""
    out = tmp_path / "cut.pb.gz"
    launch_sites(env, tmp_path, ["-f", "pprof", "--max-depth", "2", "-o", str(out)])
    raw = ft.parse_raw(ft.go_pprof(tmp_path, ["-raw", str(out)]))
    assert raw["samples"]
    for s in raw["samples"]:
        assert len(s["locs"]) == 3 and raw["locs"][s["locs"][-1]] == "[truncated]", (s, raw["locs"])
        assert "[truncated]" not in [raw["locs"][l] for l in s["locs"][:-1]]

    out = tmp_path / "full.pb.gz"
    rc, _, err = helpers.run_profiler(["-f", "pprof", "--max-stacks", "64", "-o", str(out), "--",
                                       env["workloads"]["lifecycle"], "many-stacks", str(tmp_path), "120"])
    assert rc == 0, err
    raw = ft.parse_raw(ft.go_pprof(tmp_path, ["-raw", str(out)]))
    unknown = [s for s in raw["samples"] if [raw["locs"][l] for l in s["locs"]] == ["[unknown]"]]
    assert len(unknown) == 1, raw["samples"]
    # 120 blocks of 10 bytes, those under no stack all in that sample
    assert sum(s["values"][3] for s in raw["samples"]) == 1200, raw["samples"]
    assert unknown[0]["values"][3] > 0 and unknown[0]["values"][3] % 10 == 0, unknown
    top = ft.go_pprof(tmp_path, ["-top", str(out)])
    assert "[unknown]" in top


def test_pprof_comments_say_what_was_not_counted(env, tmp_path):
    """A profile whose blocks did not all fit (--max-allocs), or left small ones out
    (--min-size), must not read as the whole heap: its comments (go tool pprof -comments) say
    so, with the same counters as the JSON report's `dropped`."""
    out = tmp_path / "lossy.pb.gz"
    rc, _, err = helpers.run_profiler(["-f", "pprof", "--max-allocs", "1024", "--min-size", "100",
                                       "-o", str(out), "--", env["workloads"]["cxx_bulk"],
                                       str(tmp_path / "exp.json")])
    assert rc == 0, err
    comments = ft.go_pprof(tmp_path, ["-comments", str(out)]).splitlines()
    assert not any("every allocation counted" in c for c in comments), comments
    assert "blocks under 100 bytes (--min-size) are not counted" in comments, comments
    dropped = [c for c in comments if c.startswith("dropped: ")]
    assert len(dropped) == 1, comments
    counters = dict(kv.split("=") for kv in dropped[0][len("dropped: "):].split())
    full = int(counters["allocs_map_full"])
    raw = ft.parse_raw(ft.go_pprof(tmp_path, ["-raw", str(out)]))
    recorded = sum(s["values"][0] for s in raw["samples"])
    # 100,000 kept blocks of 200 B, and the C++ runtime's few: each recorded or dropped
    assert 1000 <= recorded <= 1024, recorded
    assert 100000 <= recorded + full <= 100000 + 20, (recorded, full)


# ---------------------------------------------------------------- serve


class Served:
    """alloc_sites in attach mode, served by `serve -p PID` on a free loopback port."""

    def __init__(self, env, extra=(), prog=None, comm="alloc_sites"):
        self.comm = comm
        self.wl = Workload(env["reaper"], [prog or env["workloads"]["alloc_sites"], "attach"])
        self.prof = Profiler(
            env["reaper"],
            ["serve", "--listen", "127.0.0.1:0", "-i", SERVE_INTERVAL, "-p", str(self.wl.pid), *extra],
        )
        self.prof.wait_attached()
        host, self.port = ft.wait_serving(self.prof)
        assert host == "127.0.0.1"
        self.base = "http://127.0.0.1:%d" % self.port

    def get(self, path):
        return ft.http_get(self.base + path)

    def metrics(self):
        status, body, ctype = self.get("/metrics")
        assert status == 200, (status, body)
        assert ctype.startswith("text/plain; version=0.0.4"), ctype
        return body.decode()

    def wait_live(self, exp):
        """Until /metrics shows every event the workload reported."""
        p = exp["proc"]

        def ready():
            text = self.metrics()
            lbl = {"comm": self.comm}
            if (ft.metric_value(text, "asizeof_live_bytes", **lbl) == p["live_bytes"]
                    and ft.metric_value(text, "asizeof_allocations_total", **lbl) == p["allocs"]
                    and ft.metric_value(text, "asizeof_frees_total", **lbl) == p["frees"]):
                return text
            return None

        return ft.wait_for(ready, 30, "the workload's events in /metrics")

    def stop(self):
        """SIGTERM: exit 0 within a second, no BPF object left in the process before it ends."""
        t0 = time.monotonic()
        self.prof.p.send_signal(signal.SIGTERM)
        rc = self.prof.p.wait(timeout=10)
        took = time.monotonic() - t0
        assert rc == 0, self.prof.err.lines
        assert took < 1.0, "serve took %.2f s to exit after SIGTERM" % took
        return rc


def test_serve_metrics_and_pprof(env, tmp_path):
    """/metrics: exact per-group figures, `promtool check metrics` clean; /debug/pprof/heap read
    by go tool pprof over HTTP: exact in-use bytes per site; filters; SIGTERM."""
    sv = Served(env)
    exp = sv.wl.expect_json("go")
    text = sv.wait_live(exp)
    t_settled = time.monotonic()
    p = exp["proc"]
    exe = os.path.realpath(env["workloads"]["alloc_sites"])
    lbl = {"comm": "alloc_sites", "exe": exe}
    assert ft.metric_value(text, "asizeof_live_bytes", **lbl) == p["live_bytes"]
    assert ft.metric_value(text, "asizeof_live_blocks", **lbl) == p["live_allocs"]
    assert ft.metric_value(text, "asizeof_allocated_bytes_total", **lbl) == p["alloc_bytes"]
    assert ft.metric_value(text, "asizeof_allocations_total", **lbl) == p["allocs"]
    assert ft.metric_value(text, "asizeof_frees_total", **lbl) == p["frees"]
    assert ft.metric_value(text, "asizeof_dropped_events_total", reason="unknown_frees") == p["unknown_frees"]
    for reason in helpers.MUST_BE_ZERO_DROPS:
        assert ft.metric_value(text, "asizeof_dropped_events_total", reason=reason) == 0
    assert ft.metric_value(text, "asizeof_tracked_processes") == 1
    assert ft.metric_value(text, "asizeof_build_info") == 1
    assert ft.metric_value(text, "asizeof_sample_bytes") == 0  # exact
    assert "pid=" not in text, "a pid label without --pid-labels"
    # the exposition format, checked by Prometheus' own linter: no output at all
    promtool = ft.need_tool("promtool")
    chk = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert chk.returncode == 0 and not chk.stdout.strip() and not chk.stderr.strip(), (chk.stdout, chk.stderr)

    # the profile, fetched by go tool pprof itself, as from any Go program
    url = sv.base + "/debug/pprof/heap"
    raw = ft.parse_raw(ft.go_pprof(tmp_path, ["-raw", url]))
    ft.check_raw_sites(raw, exp)
    status, body, ctype = sv.get("/debug/pprof/heap")
    assert status == 200 and ctype == "application/octet-stream" and body[:2] == b"\x1f\x8b"
    # filters: this pid and this name give the same; another pid or name, nothing
    for q in ("?pid=%d" % exp["pid"], "?comm=alloc_sites"):
        ft.check_raw_sites(ft.parse_raw(ft.go_pprof(tmp_path, ["-raw", url + q])), exp)
    for q in ("?pid=%d" % helpers.free_pid(), "?comm=nobody"):
        assert ft.parse_raw(ft.go_pprof(tmp_path, ["-raw", url + q]))["samples"] == []
    # a window longer than the run: everything since attach; a window after the last change
    # (the workload is idle now): nothing changed
    ft.check_raw_sites(ft.parse_raw(ft.go_pprof(tmp_path, ["-raw", url + "?seconds=3600"])), exp)
    time.sleep(1.5)
    assert ft.parse_raw(ft.go_pprof(tmp_path, ["-raw", url + "?seconds=0.5"]))["samples"] == []

    # the workload frees everything: a window that starts in the idle time before (its base
    # snapshot at least 0.75 s away from both ends) shows exactly minus what was live
    time.sleep(max(0.0, t_settled + 2.0 - time.monotonic()))
    t_free = time.monotonic()
    exp2 = sv.wl.expect_json("free")
    sv.wait_live(exp2)
    window = time.monotonic() - (t_settled + t_free) / 2
    status, body, _ = sv.get("/debug/pprof/heap?seconds=%.3f" % window)
    assert status == 200
    delta_file = tmp_path / "delta.pb.gz"
    delta_file.write_bytes(body)
    got = ft.raw_by_site(ft.parse_raw(ft.go_pprof(tmp_path, ["-raw", str(delta_file)])))
    want = {n: [0, 0, -e["live_allocs"], -e["live_bytes"]] for n, e in exp["sites"].items() if e["live_allocs"]}
    assert got == want

    sv.stop()
    assert not [l for l in sv.prof.err.lines if "error" in l.lower()], sv.prof.err.lines
    sv.wl.send("exit")
    assert sv.wl.wait() == 0


def test_serve_scraped_by_prometheus(env, tmp_path):
    """A real Prometheus server scrapes serve every second; its query API returns the
    workload's exact live bytes and allocation counters."""
    sv = Served(env)
    exp = sv.wl.expect_json("go")
    sv.wait_live(exp)
    prom = ft.Prometheus(env["reaper"], tmp_path, ["127.0.0.1:%d" % sv.port])
    try:
        p = exp["proc"]

        def scraped():
            r = prom.query('asizeof_live_bytes{comm="alloc_sites"}')
            return r if r else None

        res = ft.wait_for(scraped, 60, "Prometheus to scrape serve")
        assert len(res) == 1, res
        labels, value = res[0]
        assert value == p["live_bytes"]
        assert labels["job"] == "asizeof" and labels["instance"] == "127.0.0.1:%d" % sv.port
        assert labels["exe"] == os.path.realpath(env["workloads"]["alloc_sites"])
        assert prom.query('asizeof_allocated_bytes_total{comm="alloc_sites"}')[0][1] == p["alloc_bytes"]
        assert prom.query('asizeof_allocations_total{comm="alloc_sites"}')[0][1] == p["allocs"]
        assert prom.query("asizeof_tracked_processes")[0][1] == 1
        assert prom.query('up{job="asizeof"}')[0][1] == 1
    finally:
        prom.stop()
    sv.stop()
    sv.wl.send("exit")
    assert sv.wl.wait() == 0


def test_serve_exec_leaves_the_old_images_counts_in_its_group(env, tmp_path):
    """A process seen by a first snapshot, then allocating and exec'ing into another program
    within one interval: the old image's counts (none of them seen in a snapshot before the
    exec) stay in the old program's group, the new image's go to the new program's."""
    lifecycle = env["workloads"]["lifecycle"]
    other = tmp_path / "other-image"
    shutil.copy(lifecycle, other)
    prof = Profiler(env["reaper"], ["serve", "--listen", "127.0.0.1:0", "-i", "3", "--", lifecycle,
                                    "exec-other", str(tmp_path), str(other)], stdin=subprocess.PIPE)
    prof.wait_attached()
    _, port = ft.wait_serving(prof)

    # the new image writes its expectation after its allocations; a snapshot after that shows them
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("*.json")):
        assert time.monotonic() < deadline, "the new image did not run: %r" % prof.err.lines
        time.sleep(0.1)
    text = ""
    while time.monotonic() < deadline:
        text = ft.http_get("http://127.0.0.1:%d/metrics" % port)[1].decode()
        if re.search(r'^asizeof_allocations_total\{comm="other-image",[^}]*\} 6$', text, re.M):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the new image's 6 allocations never shown:\n%s\n%r" % (text, prof.err.lines))
    old = {"comm": "lifecycle", "exe": os.path.realpath(lifecycle)}
    new = {"comm": "other-image", "exe": str(other)}
    for labels, (alloc_bytes, allocs, frees) in ((old, (24000, 8, 1)), (new, (7404, 6, 1))):
        assert ft.metric_value(text, "asizeof_allocated_bytes_total", **labels) == alloc_bytes, text
        assert ft.metric_value(text, "asizeof_allocations_total", **labels) == allocs, text
        assert ft.metric_value(text, "asizeof_frees_total", **labels) == frees, text
    prof.p.stdin.write(b"\n")
    prof.p.stdin.flush()
    assert prof.p.wait(timeout=30) == 0, prof.err.lines


def test_serve_pid_labels(env):
    """--pid-labels N: per-process series with a pid label, for the top growers only."""
    sv = Served(env, ["--pid-labels", "1"])
    exp = sv.wl.expect_json("go")
    text = sv.wait_live(exp)
    pid = str(exp["pid"])
    assert ft.metric_value(text, "asizeof_process_live_bytes", pid=pid) == exp["proc"]["live_bytes"]
    assert ft.metric_value(text, "asizeof_process_growth_bytes", pid=pid) == exp["proc"]["live_bytes"]
    # never on the group series
    assert ft.metric_value(text, "asizeof_live_bytes", comm="alloc_sites") == exp["proc"]["live_bytes"]
    for line in text.splitlines():
        if line.startswith("asizeof_live_bytes{"):
            assert "pid=" not in line
    sv.stop()


def test_serve_http_errors(env):
    """404 elsewhere, 405 for other methods, /healthz, 400 for bad queries; serving goes on."""
    sv = Served(env)
    assert sv.get("/healthz")[:2] == (200, b"ok\n")
    for path in ("/", "/metricsx", "/debug/pprof/", "/debug/pprof/profile", "/debug/pprof/heap/x"):
        assert sv.get(path)[0] == 404, path
    for q in ("pid=abc", "pid=0", "pid=-1", "pid=99999999999", "pid=", "seconds=abc", "seconds=0", "seconds=-5",
              "seconds=inf", "seconds=1e9", "comm=", "comm=0123456789abcdef", "debug=1", "bogus=1",
              "pid=1&pid=2"):
        status, body, _ = sv.get("/debug/pprof/heap?" + q)
        assert status == 400, (q, status, body)
        assert body.strip() and b"\n" not in body.strip(), body
    req = urllib_request("POST", sv.base + "/metrics")
    assert req == 405
    assert sv.get("/debug/pprof/heap?gc=1&debug=0")[0] == 200
    assert sv.get("/metrics")[0] == 200
    sv.stop()


def test_serve_comm_filter_takes_the_name_as_shown(env, tmp_path):
    """?comm= takes a name that is not UTF-8 as its bytes (%FF) or as the profile and the metrics
    show it (U+FFFD for each byte, 18 bytes here): both select the process (the name as shown
    got 400, "not a process name (1-15 bytes)")."""
    prog = os.path.join(os.fsencode(str(tmp_path)), b"\xff" * 6)
    shutil.copy(env["workloads"]["alloc_sites"], prog)
    shown = "\ufffd" * 6
    sv = Served(env, prog=prog, comm=shown)
    exp = sv.wl.expect_json("go")
    text = sv.wait_live(exp)
    assert ft.metric_value(text, "asizeof_live_bytes", comm=shown) == exp["proc"]["live_bytes"]
    for q in ("%FF" * 6, urllib.parse.quote(shown)):
        status, body, _ = sv.get("/debug/pprof/heap?comm=" + q)
        assert status == 200, (q, status, body)
        prof = tmp_path / "heap.pb.gz"
        prof.write_bytes(body)
        raw = ft.parse_raw(ft.go_pprof(tmp_path, ["-raw", str(prof)]))
        ft.check_raw_sites(raw, exp)
        assert {s["labels"]["comm"] for s in raw["samples"]} == {shown}
    # one byte more than a comm holds, either way: refused
    for q in ("%FF" * 16, urllib.parse.quote("\ufffd" * 16)):
        assert sv.get("/debug/pprof/heap?comm=" + q)[0] == 400, q
    sv.stop()
    sv.wl.send("exit")
    assert sv.wl.wait() == 0


def urllib_request(method, url):
    import urllib.error
    import urllib.request

    r = urllib.request.Request(url, method=method, data=b"x")
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def test_serve_slow_client_does_not_stall(env):
    """Idle connections that never send a request neither block other clients nor sampling."""
    sv = Served(env)
    idle = []
    try:
        for _ in range(8):
            idle.append(socket.create_connection(("127.0.0.1", sv.port), timeout=5))
        half = socket.create_connection(("127.0.0.1", sv.port), timeout=5)
        half.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
        idle.append(half)
        exp = sv.wl.expect_json("go")
        t0 = time.monotonic()
        sv.wait_live(exp)
        assert time.monotonic() - t0 < 5
    finally:
        for s in idle:
            s.close()
    sv.stop()


def test_serve_port_in_use(env):
    """A busy port: one error line, exit 1, nothing attached (checked by probe_guard)."""
    wl = Workload(env["reaper"], [env["workloads"]["alloc_sites"], "attach"])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        rc, out, err = helpers.run_profiler(["serve", "--listen", "127.0.0.1:%d" % port, "-p", str(wl.pid)], timeout=60)
    helpers.check_one_error_line(rc, out, err, want_rc=1, mentions="127.0.0.1:%d" % port)
    assert "in use" in err
    wl.send("exit")
    assert wl.wait() == 0


@pytest.mark.parametrize(
    "args,mentions",
    [
        (["--listen", "localhost"], "--listen"),
        (["--listen", "1.2.3:80"], "--listen"),
        (["--listen", "127.0.0.1:65536"], "--listen"),
        (["--listen", "[::1:80"], "--listen"),
        (["--pid-labels", "x", "-p", "1"], "--pid-labels"),
        (["-i", "0", "-p", "1"], "-i"),
        (["-p", "1", "--", "/bin/true"], "-p"),
        (["-p", "1", "--comm", "x"], "--comm"),
        (["--bogus"], "--bogus"),
    ],
)
def test_serve_usage_errors(profiler_bin, args, mentions):
    rc, out, err = helpers.run_profiler(["serve", *args], timeout=30)
    helpers.check_one_error_line(rc, out, err, want_rc=2, mentions=mentions)


@pytest.mark.parametrize("listen", ["224.0.0.1:0", "239.255.0.1:0", "255.255.255.255:0", "[ff02::1]:0"])
def test_serve_refuses_multicast_and_broadcast_listen(profiler_bin, listen):
    """A TCP listener binds to a multicast or broadcast address, but no client can connect to
    it: a usage error (it was "serving on http://224.0.0.1:..." that nothing could reach). The
    command after -- keeps a wrongly accepted address from starting a system-wide run."""
    rc, out, err = helpers.run_profiler(["serve", "--listen", listen, "--", "/bin/true"], timeout=30)
    helpers.check_one_error_line(rc, out, err, want_rc=2, mentions=listen)
    assert "multicast or broadcast" in err, err


def test_serve_launched_command_exits(env):
    """serve -- CMD: ends with the command's status once it exits."""
    rc, _, err = helpers.run_profiler(
        ["serve", "--listen", "127.0.0.1:0", "-i", SERVE_INTERVAL, "--", "/bin/sh", "-c", "exit 3"], timeout=60
    )
    assert rc == 3, err
    assert any(ft.SERVING_RE.match(l) for l in err.splitlines()), err


def test_serve_system_wide_comm(env, tmp_path):
    """System-wide with --comm: a process started after serve, under a name of its own, runs
    every site and exits; its group's counters are exact, and stay once it is forgotten."""
    name = ("fsw%d" % os.getpid())[:15]
    wl_bin = tmp_path / name
    shutil.copy(env["workloads"]["alloc_sites"], wl_bin)
    prof = Profiler(env["reaper"], ["serve", "--listen", "127.0.0.1:0", "-i", SERVE_INTERVAL, "--comm", name])
    assert "all processes" in prof.wait_attached()
    _, port = ft.wait_serving(prof)
    exp_file = tmp_path / "exp.json"
    wl = env["reaper"].add(subprocess.Popen([str(wl_bin), "launch", str(exp_file)], start_new_session=True))
    assert wl.wait(timeout=60) == 0
    exp = json.loads(exp_file.read_text())
    p = exp["proc"]
    base = "http://127.0.0.1:%d" % port

    def counters():
        status, body, _ = ft.http_get(base + "/metrics")
        assert status == 200
        text = body.decode()
        if 'comm="%s"' % name not in text:
            return None
        return tuple(ft.metric_value(text, m, comm=name) for m in (
            "asizeof_allocated_bytes_total", "asizeof_allocations_total", "asizeof_frees_total",
            "asizeof_live_bytes"))

    want = (p["alloc_bytes"], p["allocs"], p["frees"], 0)
    ft.wait_for(lambda: counters() if counters() == want else None, 30, "the exited workload's counters")
    # the exited process is forgotten after its last report: its counts stay in the group
    time.sleep(1.0)
    assert counters() == want
    t0 = time.monotonic()
    prof.p.send_signal(signal.SIGTERM)
    assert prof.p.wait(timeout=10) == 0
    assert time.monotonic() - t0 < 1.0


def unit_capabilities():
    """The capabilities tools/asizeof-bpf.service grants, as setpriv names them, minus any this
    machine's bounding set lacks (CAP_SYS_RESOURCE is only needed before kernel 5.11)."""
    text = (helpers.REPO / "tools" / "asizeof-bpf.service").read_text()
    line = next(l for l in text.splitlines() if l.startswith("AmbientCapabilities="))
    caps = line.split("=", 1)[1].split()
    with open("/proc/self/status") as f:
        bnd = int(next(l for l in f if l.startswith("CapBnd:")).split()[1], 16)
    numbers = {"CAP_DAC_READ_SEARCH": 2, "CAP_SYS_PTRACE": 19, "CAP_SYS_RESOURCE": 24, "CAP_PERFMON": 38,
               "CAP_BPF": 39}
    assert set(caps) == set(numbers), caps
    return [c for c in caps if bnd >> numbers[c] & 1]


def test_serve_unprivileged_with_unit_capabilities(env, tmp_path):
    """As user nobody with only the systemd unit's capabilities: a root-owned process is
    traced, its exact figures served, its frames symbolized; without them: one error line."""
    setpriv = ft.need_tool("setpriv")
    caps = ",".join("+" + c[4:].lower() for c in unit_capabilities())
    drop = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    rc, out, err = helpers.run_profiler(["serve", "--listen", "127.0.0.1:0", "-p", "1"], prefix=drop, timeout=30)
    helpers.check_one_error_line(rc, out, err, want_rc=1, mentions="CAP_BPF")

    wl = Workload(env["reaper"], [env["workloads"]["alloc_sites"], "attach"])
    prof = ft.PrefixedProfiler(env["reaper"], drop + ["--inh-caps=" + caps, "--ambient-caps=" + caps],
                               ["serve", "--listen", "127.0.0.1:0", "-i", SERVE_INTERVAL, "-p", str(wl.pid)])
    _, port = ft.wait_serving(prof)
    with open("/proc/%d/status" % prof.p.pid) as f:
        assert re.search(r"^Uid:\s+65534\s", f.read(), re.M), "not running as nobody"
    exp = wl.expect_json("go")
    base = "http://127.0.0.1:%d" % port

    def live():
        text = ft.http_get(base + "/metrics")[1].decode()
        v = ft.metric_value(text, "asizeof_allocations_total", comm="alloc_sites")
        return text if v == exp["proc"]["allocs"] else None

    text = ft.wait_for(live, 30, "the workload's events in /metrics")
    assert ft.metric_value(text, "asizeof_live_bytes", comm="alloc_sites",
                           exe=os.path.realpath(env["workloads"]["alloc_sites"])) == exp["proc"]["live_bytes"]
    ft.check_raw_sites(ft.parse_raw(ft.go_pprof(tmp_path, ["-raw", base + "/debug/pprof/heap"])), exp)
    t0 = time.monotonic()
    prof.p.send_signal(signal.SIGTERM)
    assert prof.p.wait(timeout=10) == 0
    assert time.monotonic() - t0 < 1.0
    wl.send("exit")
    assert wl.wait() == 0


def _raw(port, data, timeout=5.0):
    """Send bytes on one connection, read until the server closes it or goes quiet."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        pass
    s.close()
    return out


def test_serve_keeps_connections_and_answers_pipelined_requests(env):
    """HTTP/1.1 keep-alive: three pipelined requests on one connection, three answers (every
    answer closed the connection, and requests after the first were dropped)."""
    sv = Served(env)
    req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    out = _raw(sv.port, req * 3, timeout=2.0)
    assert out.count(b"HTTP/1.1 200") == 3, out
    assert b"Connection: close" not in out, out
    sv.stop()


def test_serve_takes_absolute_form_urls(env):
    """HTTP/1.1 servers must take a request target in absolute-form ("GET http://host/metrics",
    as sent through proxies): it got 404, the path compared with the whole URL."""
    sv = Served(env)
    for target, want in ((b"http://127.0.0.1/metrics", b"# HELP asizeof_"), (b"HTTP://x:1/healthz", b"ok\n"),
                         (b"http://x/debug/pprof/heap?seconds=abc", b"seconds: 'abc'")):
        out = _raw(sv.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 " + (b"400" if b"abc" in target else b"200")), (target, out[:200])
        assert want in out, (target, out[:300])
    for target in (b"http://x", b"http://x/nothere"):
        out = _raw(sv.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 404"), (target, out[:200])
    sv.stop()


def test_serve_query_edge_cases(env):
    """A NUL in a value (%00) is refused, not cut there; 1,000 parameters get an answer at
    once (past ~500, libmicrohttpd's default connection memory ran out: no answer, 10 s)."""
    sv = Served(env)
    assert sv.get("/debug/pprof/heap?comm=alloc_sites%00x")[0] == 400
    t0 = time.monotonic()
    out = _raw(sv.port, b"GET /debug/pprof/heap?" + b"&".join(b"gc=%d" % i for i in range(1000)) +
               b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400"), out[:100]
    assert time.monotonic() - t0 < 2.0
    sv.stop()


def test_serve_answers_while_slow_clients_hold_connections(env):
    """64 clients sending their headers a byte a second hold their connections (libmicrohttpd
    times out idle ones only): the others are still answered (64 was the limit), and SIGTERM
    still ends serving at once."""
    sv = Served(env)
    slow = []
    for _ in range(64):
        s = socket.create_connection(("127.0.0.1", sv.port), timeout=5)
        s.sendall(b"G")
        slow.append(s)
    try:
        for _ in range(3):
            time.sleep(1)
            for s in slow:
                s.sendall(b"E")
            assert sv.get("/healthz")[:2] == (200, b"ok\n")
        sv.stop()
    finally:
        for s in slow:
            s.close()


def test_serve_counts_an_image_it_cannot_probe(env, tmp_path):
    """serve -- CMD whose command execs into a static program whose malloc cannot be found:
    asizeof_dropped_events_total{reason="procs_untraced"} is 1 (it was said on stderr only)."""
    prog = helpers.stripped_static(tmp_path)
    prof = Profiler(env["reaper"], ["serve", "--listen", "127.0.0.1:0", "-i", SERVE_INTERVAL, "--", "/bin/sh",
                                    "-c", "exec %s wait" % prog], stdin=subprocess.PIPE)
    prof.wait_attached()
    host, port = ft.wait_serving(prof)

    def counted():
        status, body, _ = ft.http_get("http://%s:%d/metrics" % (host, port))
        assert status == 200, (status, body)
        v = ft.metric_value(body.decode(), "asizeof_dropped_events_total", reason="procs_untraced")
        return v if v == 1 else None

    assert ft.wait_for(counted, 30, "procs_untraced in /metrics") == 1
    prof.p.stdin.close()  # the command's stdin: it exits at its end, and serve with it
    rc = prof.p.wait(timeout=helpers.EXIT_TIMEOUT)
    assert rc == 0, prof.err.lines
    assert any("its new image is not traced" in l for l in prof.err.lines), prof.err.lines
