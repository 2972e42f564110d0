# SPDX-License-Identifier: MIT
"""`asizeof-bpf top`: the live view in a real terminal (tmux: capture-pane, send-keys), and the
batch output checked exactly against what the workloads hold.

Workloads: top_grower (one call site, STEP bytes every PERIOD ms, then holds) and top_churner
(allocates and frees all the time without growing)."""

import itertools
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

import helpers
from helpers import BIN, REPO, WORKLOADS, Profiler, Workload

TOP_WORKLOADS = ("top_grower", "top_churner")
GROWER_SITE = "top_grow_site (top_grower.c:"
HEADER = "asizeof-bpf top - "
COLOR_SGR = re.compile(r"\x1b\[[0-9;]*?(?:3[0-7]|4[0-7]|38|48)[;m]")


@pytest.fixture(scope="session")
def top_wl():
    """Builds the top workloads exactly as the Makefile does, when missing or stale."""
    out = {}
    for name in TOP_WORKLOADS:
        src = REPO / "tests" / "workloads" / (name + ".c")
        exe = WORKLOADS / name
        if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
            WORKLOADS.mkdir(parents=True, exist_ok=True)
            p = subprocess.run(["gcc", "-O2", "-g", "-Wall", "-o", str(exe), str(src), "-lpthread"],
                               capture_output=True, timeout=300)
            if p.returncode:
                pytest.fail("cannot build %s: %s" % (name, p.stderr.decode(errors="replace")), pytrace=False)
        out[name] = str(exe)
    return out


# ---------------------------------------------------------------- tmux

_sock_ids = itertools.count()


class Tmux:
    """One tmux server of our own (its own socket), one session running the profiler; the pane
    stays after the profiler exits so that its exit status can be read."""

    def __init__(self, tmp_path, args, width=160, height=45, env=""):
        if not shutil.which("tmux"):
            helpers.skip_or_fail("tmux is not installed")
        self.sock = "asz-top-%d-%d" % (os.getpid(), next(_sock_ids))
        self.err = tmp_path / ("top-%s.err" % self.sock)
        self.status = tmp_path / ("top-%s.status" % self.sock)
        # the pane's shell waits for the profiler and writes its exit status
        cmd = "env %s %s %s 2>%s; echo $? >%s" % (env, BIN, " ".join(args), self.err, self.status)
        # one tmux command line: the option is set before the server can notice an exit
        self.tmux("new-session", "-d", "-x", str(width), "-y", str(height), "-s", "top", cmd,
                  ";", "set-option", "-t", "top", "remain-on-exit", "on", check=True)
        shell = int(self.pane("#{pane_pid}"))
        deadline = time.monotonic() + 10
        while True:
            try:
                with open("/proc/%d/task/%d/children" % (shell, shell)) as f:
                    kids = f.read().split()
            except FileNotFoundError:
                kids = []
            if kids:
                self.pid = int(kids[0])
                break
            assert time.monotonic() < deadline, "the profiler did not start: %r" % self.stderr()
            time.sleep(0.005)

    def tmux(self, *args, check=False):
        p = subprocess.run(["tmux", "-L", self.sock, "-f", "/dev/null", *args], capture_output=True,
                           text=True, timeout=20)
        if check:
            assert p.returncode == 0, "tmux %s: %s" % (" ".join(args), p.stderr)
        return p

    def pane(self, fmt):
        return self.tmux("display-message", "-p", "-t", "top", fmt, check=True).stdout.strip()

    def screen(self, escapes=False):
        args = ["capture-pane", "-p", "-t", "top"] + (["-e"] if escapes else [])
        return self.tmux(*args, check=True).stdout.split("\n")

    def keys(self, *keys):
        self.tmux("send-keys", "-t", "top", *keys, check=True)

    def stderr(self):
        try:
            return self.err.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self):
        """The profiler is running (a zombie waiting for tmux counts as gone)."""
        try:
            with open("/proc/%d/stat" % self.pid) as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except (FileNotFoundError, ProcessLookupError, IndexError):
            # gone between the open and the read: ESRCH
            return False

    def wait_attached(self):
        deadline = time.monotonic() + helpers.ATTACH_TIMEOUT
        while "attached to " not in self.stderr():
            assert self.alive(), "the profiler exited before attaching: %r" % self.stderr()
            assert time.monotonic() < deadline, "not attached: %r" % self.stderr()
            time.sleep(0.02)
        return time.monotonic()

    def wait_screen(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            lines = self.screen()
            if pred(lines):
                return lines
            assert self.alive(), "the profiler exited: %r" % self.stderr()
            assert time.monotonic() < deadline, "%s: not on screen within %.1f s:\n%s" % (
                what, timeout, "\n".join(lines))
            time.sleep(0.05)

    def wait_exit(self, timeout):
        """Seconds until the profiler's process is gone."""
        t0 = time.monotonic()
        while self.alive():
            assert time.monotonic() - t0 < timeout + 5, "the profiler did not exit"
            time.sleep(0.005)
        return time.monotonic() - t0

    def exit_status(self):
        """The profiler's exit status, as its shell saw it ("143": killed by SIGTERM)."""
        deadline = time.monotonic() + 10
        while True:
            text = self.status.read_text() if self.status.exists() else ""
            if text.endswith("\n"):
                return text.strip()
            assert time.monotonic() < deadline, "no exit status"
            time.sleep(0.02)

    def close(self):
        self.tmux("kill-server")
        # kill-server hangs the pane up: the profiler must go by itself; if not, it is killed
        # (its pid cannot be reused while tmux has not reaped it... checked by name anyway)
        for _ in range(200):
            if not self.alive():
                break
            time.sleep(0.01)
        if self.alive() and helpers._comm(self.pid) == "asizeof-bpf":
            os.kill(self.pid, signal.SIGKILL)


def table(lines):
    """Rows of the process table: lists of fields, after the head line (PID COMM ...)."""
    for i, l in enumerate(lines):
        if l.split()[:2] == ["PID", "COMM"]:
            rows = []
            for r in lines[i + 1:]:
                f = r.split()
                if not f or not f[0].isdigit():
                    break
                rows.append(f)
            return rows
    return []


def first_row_pid(lines):
    rows = table(lines)
    return int(rows[0][0]) if rows else None


@pytest.fixture
def tmux_session(tmp_path):
    sessions = []

    def start(*a, **kw):
        t = Tmux(tmp_path, *a, **kw)
        sessions.append(t)
        return t

    yield start
    for t in sessions:
        t.close()


def test_top_tmux_grower_first_enter_quit(env, top_wl, tmux_session):
    """In a 160x45 terminal: a process growing 4 MiB every 100 ms beside two churners is the
    first row within two refreshes; Enter shows its call site (and Enter again its frames); q
    exits within a second with status 0, the terminal restored, no probe left."""
    reaper = env["reaper"]
    grower = Workload(reaper, [top_wl["top_grower"], str(4 << 20), "100", "0"])
    churn1 = Workload(reaper, [top_wl["top_churner"]])
    churn2 = Workload(reaper, [top_wl["top_churner"], "100", "10"])
    before = helpers.probe_snapshot()
    t = tmux_session(["top", "-i", "1", "-p", str(grower.pid), "-p", str(churn1.pid), "-p",
                      str(churn2.pid)], env="LANG=C.UTF-8")
    attached = t.wait_attached()
    assert re.match(r"asizeof-bpf: attached to 3 processes \(\d+ \S+ links\); q quits$",
                    t.stderr().strip()), t.stderr()
    # refreshes at 1 s and 2 s after the attach; the third would be at 3 s
    lines = t.wait_screen(lambda l: first_row_pid(l) == grower.pid, attached + 2.8 - time.monotonic(),
                          "the grower as the first row")
    rows = table(lines)
    assert {int(r[0]) for r in rows} == {grower.pid, churn1.pid, churn2.pid}, rows
    g = rows[0]
    assert g[1] == "top_grower", g
    # LIVE and GROWTH are "N.N MiB" (two fields each): growth over one interval of ~10 steps
    assert g[3] == "MiB" and g[5] == "MiB" and float(g[4].lstrip("+")) >= 16, g
    assert lines[0].startswith(HEADER), lines[0]
    assert any(l.startswith("Processes: 3 traced, 0 exited") for l in lines), lines
    assert lines[44].startswith(" q quit"), lines[44]
    # colours are on (NO_COLOR unset): the selection is black on cyan
    assert "\x1b[46m" in "\n".join(t.screen(escapes=True))

    t.keys("Enter")
    lines = t.wait_screen(lambda l: any(GROWER_SITE in x for x in l), 3, "the grower's call site")
    assert any(x.startswith("Call stacks of %d top_grower by growth" % grower.pid) for x in lines), lines
    site_rows = [x for x in lines if GROWER_SITE in x]
    assert site_rows[0].startswith("+  1  malloc "), site_rows
    t.keys("Enter")
    t.wait_screen(lambda l: any(x.strip().startswith("main (top_grower.c:") for x in l), 3,
                  "the expanded frames of the grower's stack")

    t0 = time.monotonic()
    t.keys("q")
    took = t.wait_exit(1.0)
    assert took < 1.0, "q took %.2f s to exit" % took
    assert t.exit_status() == "0"
    after = t.screen()
    assert not any("PID" in x or "top_grower" in x for x in after), "terminal not restored:\n" + "\n".join(after)
    assert t.stderr().count("\n") == 1, t.stderr()
    left = helpers.leftover_probes(before, {t.pid})
    assert not left, "probes left behind: %r" % left
    # the targets were never disturbed
    for w in (grower, churn1, churn2):
        assert w.p.poll() is None
    assert time.monotonic() - t0 < 10


def test_top_tmux_resize_exited_sigterm(env, top_wl, tmux_session):
    """A storm of resizes while it refreshes leaves a clean narrow layout (columns dropped,
    nothing wrapped); NO_COLOR means no colour; targets that exit stay on screen marked exited
    (the view waits for q); SIGTERM exits within a second, status 0, no probe left."""
    reaper = env["reaper"]
    grower = Workload(reaper, [top_wl["top_grower"], "-w", "65536", "10", "8"])
    churn = Workload(reaper, [top_wl["top_churner"]])
    before = helpers.probe_snapshot()
    t = tmux_session(["top", "-i", "0.2", "-p", str(grower.pid), "-p", str(churn.pid)],
                     env="LANG=C.UTF-8 NO_COLOR=1")
    t.wait_attached()
    grower.send("go")
    assert wait_held(grower) == [8 * 65536, 8]
    t.wait_screen(lambda l: len(table(l)) == 2, 3, "both processes")

    # resizes while it refreshes every 200 ms
    for i in range(12):
        w, h = (50, 15) if i % 2 else (120, 30)
        t.tmux("resize-window", "-t", "top", "-x", str(w), "-y", str(h), check=True)
        time.sleep(0.03)
    t.tmux("resize-window", "-t", "top", "-x", "50", "-y", "15", check=True)

    def narrow_ok(lines):
        head = [x for x in lines if x.split()[:2] == ["PID", "COMM"]]
        return (len(lines) >= 15 and lines[14].startswith(" q quit") and head and "FREE/s" not in head[0]
                and "LIVE" in head[0] and "GROWTH" in head[0])

    lines = t.wait_screen(narrow_ok, 3, "the narrow layout")
    assert all(len(x) <= 50 for x in lines), lines
    assert lines[0].startswith(HEADER), lines
    rows = table(lines)
    assert {int(r[0]) for r in rows} == {grower.pid, churn.pid}, lines
    assert [r[1:4] for r in rows if int(r[0]) == grower.pid] == [["top_grower", "512.0", "KiB"]], lines
    assert not COLOR_SGR.search("\n".join(t.screen(escapes=True)))

    # back to full width (tmux may hand the new size to the pane a little later)
    t.tmux("resize-window", "-t", "top", "-x", "160", "-y", "45", check=True)

    def wide(lines):
        return any(x.split()[:2] == ["PID", "COMM"] and "FREE/s" in x for x in lines)

    t.wait_screen(wide, 3, "the full layout")
    grower.send("exit")
    churn.send("exit")
    assert grower.wait() == 0 and churn.wait() == 0
    lines = t.wait_screen(lambda l: any("all targets exited" in x for x in l) and wide(l), 5,
                          "all targets exited")
    rows = table(lines)
    assert len(rows) == 2 and all(r[-1] == "exited" for r in rows), "\n".join(lines)
    assert any(l.startswith("Processes: 0 traced, 2 exited") for l in lines), lines
    time.sleep(0.5)
    assert t.alive(), "the profiler ended by itself: it should wait for q"

    os.kill(t.pid, signal.SIGTERM)
    took = t.wait_exit(1.0)
    assert took < 1.0, "SIGTERM took %.2f s" % took
    assert t.exit_status() == "0"
    assert not any("PID" in x for x in t.screen()), "terminal not restored"
    left = helpers.leftover_probes(before, {t.pid})
    assert not left, "probes left behind: %r" % left


# ---------------------------------------------------------------- batch


def screens(lines):
    """Batch output -> list of screens (lists of lines), split at each header."""
    out = []
    for l in lines:
        if l.startswith(HEADER):
            out.append([])
        if out:
            out[-1].append(l)
    return out


def stack_rows(screen, pid):
    """Rows of the "Top stacks of PID" table of a batch screen (fields)."""
    rows, inside = [], False
    for l in screen:
        if l.startswith("Top stacks of %d " % pid):
            inside = True
            continue
        if inside:
            f = l.split()
            if not l.strip():
                break
            if f and f[0].isdigit():
                rows.append(f)
    return rows


def finish(prof, sig=None, timeout=helpers.EXIT_TIMEOUT):
    """Signal the profiler (unless sig is None), wait for its exit, read all its output (text:
    Profiler.drain would parse JSON). Returns the exit status."""
    if sig is not None:
        prof.p.send_signal(sig)
    rc = prof.p.wait(timeout=timeout)
    prof.out.join()
    prof.err.join()
    return rc


def wait_held(wl):
    while True:
        line = wl.reply()
        if line.startswith("held "):
            return [int(x) for x in line.split()[1:]]


def wait_screens(prof, n, timeout=30):
    deadline = time.monotonic() + timeout
    while sum(l.startswith(HEADER) for l in list(prof.out.lines)) < n:
        assert prof.p.poll() is None, "profiler exited: %r" % prof.err.lines
        assert time.monotonic() < deadline, "no screen %d; stderr %r" % (n, prof.err.lines)
        time.sleep(0.02)


def test_top_tmux_keys_from_the_terminal_when_stdin_is_not_one(env, tmux_session):
    """`top < /dev/null` in a terminal: the keys come from the terminal (q quits once the
    command has exited, status 0); with no terminal to read keys from at all (setsid: no
    controlling terminal), the view ends by itself once every target has exited."""
    t = tmux_session(["top", "-i", "0.2", "--", "/bin/sleep", "0.5", "</dev/null"])
    t.wait_attached()
    t.wait_screen(lambda l: any("all targets exited" in x for x in l), 10, "all targets exited")
    time.sleep(0.3)
    assert t.alive(), "the profiler ended by itself: it should wait for q"
    t.keys("q")
    t.wait_exit(5)
    assert t.exit_status() == "0", t.stderr()

    t = tmux_session(["top", "-i", "0.2", "--", "/bin/sleep", "0.5", "</dev/null"], env="setsid -w")
    t.wait_exit(20)
    assert t.exit_status() == "0", t.stderr()


def clean_screen(height, junk):
    """A predicate: the view is whole on a terminal of this height (header first, the table's
    head, the status line last) and junk is nowhere."""
    def ok(lines):
        return (len(lines) >= height and lines[0].startswith(HEADER)
                and lines[1].startswith("Processes: ") and any(x.split()[:2] == ["PID", "COMM"] for x in lines)
                and lines[height - 1].startswith(" q quit") and not any(junk in x for x in lines))
    return ok


def test_top_tmux_launched_command_output_is_painted_over(env, tmux_session):
    """top -- CMD: the command writes to the terminal the view is drawn on (here three lines,
    scrolling it); the next refresh paints the whole view again, not just what changed. (The
    command starts no process: the status line would rightly say one is not traced.)"""
    before = helpers.probe_snapshot()
    script = ("import os, time; time.sleep(1); print('scribble\\nscribble\\nscribble', flush=True); "
              "os.execv('/bin/sleep', ['sleep', '1000'])")
    t = tmux_session(["top", "-i", "0.3", "--", "/usr/bin/python3", "-c", '"%s"' % script],
                     width=80, height=20, env="LANG=C.UTF-8")
    t.wait_attached()
    # the command has written (its first allocations come after the echo's)
    t.wait_screen(lambda l: any(r[1] == "sleep" for r in table(l)), 10, "the command as sleep")
    t.wait_screen(clean_screen(20, "scribble"), 10, "the whole view painted over the output")
    t.keys("q")
    t.wait_exit(5)
    assert t.exit_status() == "0", t.stderr()
    left = helpers.leftover_probes(before, {t.pid})
    assert not left, "probes left behind: %r" % left


def test_top_tmux_ctrl_l_repaints(env, top_wl, tmux_session):
    """Something else writes to the terminal (a background job, a wall message): Ctrl-L paints
    the whole view again."""
    grower = Workload(env["reaper"], [top_wl["top_grower"], "4096", "100", "0"])
    t = tmux_session(["top", "-i", "0.3", "-p", str(grower.pid)], width=80, height=20,
                     env="LANG=C.UTF-8")
    t.wait_attached()
    t.wait_screen(clean_screen(20, "junk-from-elsewhere"), 10, "the view")
    with open(t.pane("#{pane_tty}"), "w") as tty:
        tty.write("\njunk-from-elsewhere\njunk-from-elsewhere\n")
    t.wait_screen(lambda l: any("junk-from-elsewhere" in x for x in l), 10, "the junk")
    t.keys("C-l")
    t.wait_screen(clean_screen(20, "junk-from-elsewhere"), 10, "the view painted again")
    t.keys("q")
    t.wait_exit(5)
    assert t.exit_status() == "0", t.stderr()
    grower.send("exit")


def test_top_tmux_quit_restores_the_terminal_before_stopping_the_command(env, tmux_session, tmp_path):
    """q with -- CMD: the terminal is given back first, then the command is sent SIGTERM (it
    may take up to 2 s to go): the command, when it gets the signal, finds its terminal in
    its ordinary modes again (canonical, echoing), not in the view's."""
    modes = tmp_path / "modes"
    t = tmux_session(["top", "-i", "0.3", "--", "/bin/sh", "-c",
                      "'trap \"stty -a </dev/tty >%s; exit 0\" TERM; while :; do sleep 0.05; done'" % modes],
                     width=80, height=20, env="LANG=C.UTF-8")
    t.wait_attached()
    t.wait_screen(lambda l: any(r[1] in ("sh", "sleep") for r in table(l)), 10, "the command")
    t.keys("q")
    t.wait_exit(10)
    assert t.exit_status() == "0", t.stderr()
    text = modes.read_text()
    assert re.search(r"(?<![-\w])icanon\b", text) and re.search(r"(?<![-\w])echo\b", text), text


@pytest.mark.parametrize("how", ["ctty", "no_ctty"])
def test_top_tmux_closed_terminal_ends_it(env, top_wl, tmux_session, how):
    """The terminal closed under the view (tmux kill-window): the profiler exits by itself, no
    probe left. ctty: it is the terminal's process (SIGHUP, and its keyboard hangs up).
    no_ctty: started with setsid and stdin from /dev/null, no SIGHUP and no keyboard: only its
    screen says the terminal is gone (it drew on, to nobody, for ever)."""
    grower = Workload(env["reaper"], [top_wl["top_grower"], "4096", "100", "0"])
    before = helpers.probe_snapshot()
    args = ["top", "-i", "0.3", "-p", str(grower.pid)]
    if how == "no_ctty":
        t = tmux_session(args + ["</dev/null"], env="LANG=C.UTF-8 setsid -w")
    else:
        t = tmux_session(args, env="LANG=C.UTF-8")
    t.wait_attached()
    t.wait_screen(lambda l: first_row_pid(l) == grower.pid, 10, "the grower")
    t.tmux("kill-window", "-t", "top", check=True)
    t.wait_exit(10)
    left = helpers.leftover_probes(before, {t.pid})
    assert not left, "probes left behind: %r" % left
    assert grower.p.poll() is None, "the target was disturbed"
    grower.send("exit")


def test_top_tmux_launched_command_does_not_share_the_keyboard(env, tmux_session, tmp_path):
    """top -- CMD in a terminal: keys are the view's. The command's stdin is not the terminal
    (a command reading its stdin took keys away from the view: q had to be pressed two or
    three times); one q quits."""
    said = tmp_path / "stdin"
    t = tmux_session(["top", "-i", "0.3", "--", "/bin/sh", "-c",
                      "'if [ -t 0 ]; then echo tty; else echo notty; fi >%s; exec sleep 1000'" % said],
                     width=80, height=20, env="LANG=C.UTF-8")
    t.wait_attached()
    t.wait_screen(lambda l: any(r[1] == "sleep" for r in table(l)), 10, "the command as sleep")
    assert said.read_text() == "notty\n"
    t.keys("q")
    t.wait_exit(10)
    assert t.exit_status() == "0", t.stderr()


def test_top_tmux_ctrl_backslash_quits_cleanly(env, top_wl, tmux_session):
    """Ctrl-\\ (SIGQUIT) ends the view like Ctrl-C: status 0, the terminal restored, no probe
    left (by its default action the profiler dumped core in the view's terminal modes, the
    screen and the cursor never given back)."""
    grower = Workload(env["reaper"], [top_wl["top_grower"], "4096", "100", "0"])
    before = helpers.probe_snapshot()
    t = tmux_session(["top", "-i", "0.3", "-p", str(grower.pid)], width=80, height=20,
                     env="LANG=C.UTF-8")
    t.wait_attached()
    t.wait_screen(lambda l: first_row_pid(l) == grower.pid, 10, "the grower")
    t.keys("C-\\")
    t.wait_exit(10)
    assert t.exit_status() == "0", t.stderr()
    assert not any("PID" in x or "q quit" in x for x in t.screen()), "terminal not restored"
    left = helpers.leftover_probes(before, {t.pid})
    assert not left, "probes left behind: %r" % left
    grower.send("exit")


def test_top_batch_exact(env, top_wl):
    """--batch --bytes: one plain screen per interval; the grower's live bytes, its growth since
    start and its call site's row are exactly what it holds (an odd size, so a rounded figure
    cannot pass); the churner is listed; SIGINT prints a final screen and exits 0."""
    reaper = env["reaper"]
    step, steps = 1048573, 12
    grower = Workload(reaper, [top_wl["top_grower"], "-w", str(step), "20", str(steps)])
    churn = Workload(reaper, [top_wl["top_churner"]])
    prof = Profiler(reaper, ["top", "--batch", "--bytes", "-i", "0.5", "-p", str(grower.pid), "-p",
                             str(churn.pid)])
    prof.wait_attached()
    grower.send("go")
    live, blocks = wait_held(grower)
    assert (live, blocks) == (step * steps, steps)
    k = sum(l.startswith(HEADER) for l in list(prof.out.lines))
    # screen k+1 (0-based) is the first sampled entirely after the "held"; k+2 completes it
    wait_screens(prof, k + 3)
    rc = finish(prof, signal.SIGINT)
    assert rc == 0, prof.err.lines
    assert [l for l in prof.err.lines if l.strip()] == [prof.err.lines[0]], prof.err.lines
    scr = screens(prof.out.lines)
    assert len(scr) >= k + 3
    assert "final" in scr[-1][0] and all("final" not in s[0] for s in scr[:-1])
    for s in scr[k + 1:]:
        rows = {int(r[0]): r for r in table(s)}
        assert set(rows) == {grower.pid, churn.pid}, s
        g = rows[grower.pid]
        # PID COMM LIVE GROWTH GROWTH-TOTAL ALLOC/s FREE/s TREND
        assert g[1] == "top_grower" and int(g[2]) == live and g[4] == "+%d" % live, g
        assert rows[churn.pid][1] == "top_churner", rows
        st = stack_rows(s, grower.pid)
        assert len(st) == 1, s
        # # ALLOCATOR LIVE BLOCKS GROWTH ALLOCS ALLOCATED CALL SITE
        assert st[0][:4] == ["1", "malloc", str(live), str(blocks)], st
        assert st[0][5:7] == [str(blocks), str(live)], st
        assert " ".join(st[0][7:]).startswith(GROWER_SITE), st
        assert any(l.strip().startswith("main (top_grower.c:") for l in s), s
        assert stack_rows(s, churn.pid), s
    # after the screen that saw the last step, nothing grows
    for s in scr[k + 2:]:
        assert [r for r in table(s) if int(r[0]) == grower.pid][0][3] == "0", s
    grower.send("exit")
    churn.send("exit")


def test_top_batch_launch_exits_with_command(env, top_wl, tmp_path):
    """top -- CMD (stdout a pipe: batch without asking): the profiler ends when the command
    does, with its status, after a final screen that marks it exited with what it held."""
    reaper = env["reaper"]
    said = tmp_path / "grower.out"
    prof = Profiler(reaper, ["top", "--bytes", "-i", "0.3", "--", top_wl["top_grower"], "-o", str(said),
                             "4096", "10", "5"], stdin=subprocess.PIPE)
    prof.wait_attached()
    deadline = time.monotonic() + 30
    while "held " not in (said.read_text() if said.exists() else ""):
        assert prof.p.poll() is None and time.monotonic() < deadline, prof.err.lines
        time.sleep(0.02)
    prof.p.stdin.close()  # the command's stdin: it exits at its end
    rc = finish(prof)
    assert rc == 0, prof.err.lines
    pid = int(said.read_text().split("\n")[0].split()[1])
    final = screens(prof.out.lines)[-1]
    assert "final" in final[0]
    g = [r for r in table(final) if int(r[0]) == pid]
    assert g and g[0][1] == "top_grower" and int(g[0][2]) == 5 * 4096 and g[0][-1] == "exited", final


def test_top_batch_counts_an_image_it_cannot_probe(env, tmp_path):
    """top -- CMD whose command execs into a static program whose malloc cannot be found: the
    header's drops say procs_untraced=1 (stderr alone said it, and the view painted over it)."""
    prog = helpers.stripped_static(tmp_path)
    prof = Profiler(env["reaper"], ["top", "-b", "-i", "0.2", "--", "/bin/sh", "-c", "exec %s wait" % prog],
                    stdin=subprocess.PIPE)
    prof.wait_attached()
    deadline = time.monotonic() + 30
    while not any("procs_untraced=1" in l for l in prof.out.lines if "Drops:" in l):
        assert prof.p.poll() is None and time.monotonic() < deadline, (prof.out.lines[-20:], prof.err.lines)
        time.sleep(0.05)
    prof.p.stdin.close()  # the command's stdin: it exits at its end
    rc = finish(prof)
    assert rc == 0, prof.err.lines
    assert any("its new image is not traced" in l for l in prof.err.lines), prof.err.lines


def test_top_batch_system_wide_comm(env, top_wl):
    """No -p: every process, here filtered with --comm: only the grower's row, exact."""
    reaper = env["reaper"]
    grower = Workload(reaper, [top_wl["top_grower"], "-w", "4096", "10", "5"])
    prof = Profiler(reaper, ["top", "--batch", "--bytes", "-i", "0.4", "--comm", "top_grower"])
    line = prof.wait_attached()
    assert "all processes" in line
    grower.send("go")
    live, _ = wait_held(grower)
    k = sum(l.startswith(HEADER) for l in list(prof.out.lines))
    wait_screens(prof, k + 2)
    assert finish(prof, signal.SIGINT) == 0, prof.err.lines
    s = screens(prof.out.lines)[k + 1]
    rows = table(s)
    assert [(int(r[0]), r[1], int(r[2])) for r in rows] == [(grower.pid, "top_grower", live)], s
    grower.send("exit")


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "args,mentions",
    [
        (["-i", "0"], "-i"),
        (["-i", "abc"], "-i"),
        (["-n", "-1"], "-n"),
        (["-s", "size"], "-s"),
        (["-p", "x"], "-p"),
        (["--bogus"], "--bogus"),
        (["-p"], "-p"),
        (["--"], "no command"),
        (["-p", "1", "--", "true"], "either"),
        (["-p", "1", "--comm", "x"], "--comm"),
        (["extra"], "extra"),
    ],
)
def test_top_usage_errors(profiler_bin, args, mentions):
    rc, out, err = helpers.run_profiler(["top"] + args, timeout=30)
    helpers.check_one_error_line(rc, out, err, want_rc=2, mentions=mentions)
    assert out == ""


def test_top_help(profiler_bin):
    rc, out, err = helpers.run_profiler(["top", "--help"], timeout=30)
    assert rc == 0 and err == ""
    assert out.startswith("Usage: asizeof-bpf top ") and "--batch" in out and "NO_COLOR" not in err


def test_top_no_such_pid(env):
    pid = helpers.free_pid()
    rc, out, err = helpers.run_profiler(["top", "--batch", "-p", str(pid)], timeout=60)
    helpers.check_one_error_line(rc, out, err, want_rc=1, mentions=str(pid))
    assert out == ""
