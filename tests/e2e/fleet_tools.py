# SPDX-License-Identifier: MIT
"""Helpers of test_fleet.py: reading collapsed stacks and `go tool pprof -raw` output, HTTP
requests to `serve`, and a real Prometheus server."""

import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import helpers

SERVING_RE = re.compile(r"^asizeof-bpf: serving on http://(\S+):(\d+)$")


def need_tool(name):
    path = shutil.which(name)
    if not path:
        helpers.skip_or_fail("%s is not installed (make deps)" % name)
    return path


def site_of(func):
    """The expectation key of an innermost frame (strdup variants -> "strdup")."""
    return "strdup" if helpers.is_strdup(func) else func


# ---------------------------------------------------------------- collapsed stacks

def parse_collapsed(text):
    """[(frames root first, weight)]; every line must be `frame;frame;... N`."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^(\S.*) (\d+)$", line)
        assert m, "not a folded stack line: %r" % line
        out.append((m.group(1).split(";"), int(m.group(2))))
    return out


# ---------------------------------------------------------------- go tool pprof

def go_env(tmp_path):
    """go tool pprof wants a home, a build cache and somewhere to save fetched profiles."""
    home = tmp_path / "gohome"
    home.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(HOME=str(home), GOCACHE=str(home / "cache"), GOPATH=str(home / "go"),
               PPROF_TMPDIR=str(home / "pprof"), GOFLAGS="")
    return env


def go_pprof(tmp_path, args, timeout=120):
    need_tool("go")
    p = subprocess.run(["go", "tool", "pprof", *args], capture_output=True, text=True,
                       env=go_env(tmp_path), timeout=timeout)
    assert p.returncode == 0, "go tool pprof %s: rc %d\n%s\n%s" % (args, p.returncode, p.stdout, p.stderr)
    return p.stdout


RAW_SAMPLE_RE = re.compile(r"^\s+(-?\d+)\s+(-?\d+)\s+(-?\d+)\s+(-?\d+): ([\d ]*)$")
RAW_LOC_RE = re.compile(r"^\s+(\d+): 0x([0-9a-f]+)(?: M=(\d+))?(?: (\S+) .*)?\s*$")


def parse_raw(text):
    """`go tool pprof -raw` output -> {"types": [...], "samples": [{"values", "locs",
    "labels"}], "locs": {id: innermost function or None}}."""
    lines = text.splitlines()
    res = {"types": None, "samples": [], "locs": {}}
    section = None
    for line in lines:
        if line.startswith("Samples:"):
            section = "samples"
            continue
        if line.startswith("Locations"):
            section = "locs"
            continue
        if line.startswith("Mappings"):
            section = "maps"
            continue
        if section == "samples":
            if res["types"] is None:
                res["types"] = [t.replace("[dflt]", "") for t in line.split()]
                continue
            m = RAW_SAMPLE_RE.match(line)
            if m:
                res["samples"].append({"values": [int(m.group(i)) for i in range(1, 5)],
                                       "locs": [int(x) for x in m.group(5).split()], "labels": {}})
                continue
            for k, v in re.findall(r"(\w+):\[([^\]]*)\]", line):
                res["samples"][-1]["labels"][k] = v
        elif section == "locs":
            m = RAW_LOC_RE.match(line)
            if m:
                # the first line of a location is its innermost (inlined) function
                res["locs"][int(m.group(1))] = m.group(4)
    assert res["types"] == ["alloc_objects/count", "alloc_space/bytes", "inuse_objects/count",
                            "inuse_space/bytes"], res["types"]
    return res


def raw_by_site(raw, pid=None):
    """Sum the four values per innermost function of each sample's leaf location."""
    agg = {}
    for s in raw["samples"]:
        if pid is not None and int(s["labels"]["pid"]) != pid:
            continue
        leaf = raw["locs"][s["locs"][0]] if s["locs"] else None
        a = agg.setdefault(site_of(leaf), [0, 0, 0, 0])
        for i in range(4):
            a[i] += s["values"][i]
    return agg


def check_raw_sites(raw, exp, pid=None):
    """Every site of the workload's expectation, exactly: alloc_objects = allocs, alloc_space =
    alloc_bytes, inuse_objects = live_allocs, inuse_space = live_bytes. Sites that never
    allocated must be absent."""
    got = raw_by_site(raw, pid)
    errors = []
    for name, e in exp["sites"].items():
        want = [e["allocs"], e["alloc_bytes"], e["live_allocs"], e["live_bytes"]]
        have = got.get(name, [0, 0, 0, 0])
        if have != want:
            errors.append("%s: expected %s, got %s" % (name, want, have))
    extra = set(got) - set(exp["sites"])
    assert not errors, "pprof per-site mismatch:\n  " + "\n  ".join(errors)
    assert not extra, "samples at no site of the workload: %r" % {k: got[k] for k in extra}
    return got


# ---------------------------------------------------------------- HTTP

def http_get(url, timeout=10):
    """(status, body bytes, content type); HTTP errors are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read(), r.headers.get("Content-Type")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type")


def metric_value(text, name, **labels):
    """The value of the one series of `name` whose labels include `labels`."""
    found = []
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        assert m, "bad exposition line %r" % line
        if m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            found.append(float(m.group(3)))
    assert len(found) == 1, "%s%r: %d series in\n%s" % (name, labels, len(found), text)
    return found[0]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_serving(prof, timeout=helpers.ATTACH_TIMEOUT):
    """The (host, port) `serve` printed once listening."""
    deadline = time.monotonic() + timeout
    while True:
        for line in list(prof.err.lines):
            m = SERVING_RE.match(line)
            if m:
                return m.group(1), int(m.group(2))
        if prof.p.poll() is not None and prof.err.done.is_set():
            raise AssertionError("serve exited with %s before serving; stderr: %r" % (prof.p.returncode, prof.err.lines))
        assert time.monotonic() < deadline, "serve did not start within %d s; stderr: %r" % (timeout, prof.err.lines)
        time.sleep(0.02)


def wait_for(pred, timeout, what):
    """Poll pred() (returning a value or None) until it gives a value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last is not None:
            return last
        time.sleep(0.1)
    raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))


class PrefixedProfiler(helpers.Profiler):
    """The profiler started through a wrapper (setpriv ...) that execs it in the same process."""

    def __init__(self, reaper, prefix, args):
        self.argv = [*prefix, str(helpers.BIN), *args]
        self.p = reaper.add(
            subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
        )
        self.out = helpers.LineReader(self.p.stdout)
        self.err = helpers.LineReader(self.p.stderr)
        self.reports = []


# ---------------------------------------------------------------- Prometheus

class Prometheus:
    """A real Prometheus server on loopback scraping `targets` every second."""

    def __init__(self, reaper, tmp_path, targets):
        need_tool("prometheus")
        d = tmp_path / "prom"
        d.mkdir()
        cfg = d / "prom.yml"
        cfg.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: asizeof\n    static_configs:\n"
            "      - targets: [%s]\n" % ", ".join("'%s'" % t for t in targets)
        )
        self.port = free_port()
        self.log = open(d / "prometheus.log", "wb")
        self.p = reaper.add(
            subprocess.Popen(
                ["prometheus", "--config.file=%s" % cfg, "--storage.tsdb.path=%s" % (d / "data"),
                 "--web.listen-address=127.0.0.1:%d" % self.port],
                stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        self.base = "http://127.0.0.1:%d" % self.port

    def query(self, expr):
        """Instant query: [(labels, value)]."""
        import json

        url = self.base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            status, body, _ = http_get(url, timeout=5)
        except (urllib.error.URLError, ConnectionError, OSError):
            return None  # not listening yet
        if status != 200:
            return None
        doc = json.loads(body)
        assert doc["status"] == "success", doc
        return [(r["metric"], float(r["value"][1])) for r in doc["data"]["result"]]

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=15)
        self.log.close()
