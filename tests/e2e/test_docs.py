# SPDX-License-Identifier: MIT
"""The documents against the program: --help, the man page and the README name the same
commands and options."""

import re

import pytest

import helpers


def test_help_names_every_command(profiler_bin):
    """The main --help is where a user finds top and serve: each is named there, and each
    named command answers its own --help."""
    rc, out, err = helpers.run_profiler(["--help"], timeout=30)
    assert rc == 0 and err == ""
    assert out.startswith("Usage: asizeof-bpf ")
    for cmd in ("report", "top", "serve"):
        assert "asizeof-bpf %s " % cmd in out or "asizeof-bpf [%s]" % cmd in out, cmd
        rc, sub, err = helpers.run_profiler([cmd, "--help"], timeout=30)
        assert rc == 0 and err == "" and sub.startswith("Usage: asizeof-bpf"), cmd


@pytest.mark.parametrize("cmd", ["report", "top", "serve"])
def test_every_option_is_documented(profiler_bin, cmd):
    """Each long option a command's --help offers is described in the man page and the
    README (the documents drifted once: options added by later work were in neither)."""
    rc, out, err = helpers.run_profiler([cmd, "--help"], timeout=30)
    assert rc == 0
    opts = sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", out)))
    assert len(opts) >= 5, opts
    man = (helpers.REPO / "tools" / "asizeof-bpf.8").read_text().replace("\\-", "-")
    readme = (helpers.REPO / "README.md").read_text()
    missing = [(o, doc) for o in opts for doc, text in (("man page", man), ("README", readme))
               if not re.search(re.escape(o) + r"(?![a-z-])", text)]
    assert not missing, missing


def _man():
    return (helpers.REPO / "tools" / "asizeof-bpf.8").read_text().replace("\\-", "-")


def _readme():
    return (helpers.REPO / "README.md").read_text()


def _accepted_values(args):
    """The values an option takes, as its usage error lists them: "... (a, b, c)"."""
    rc, out, err = helpers.run_profiler(args + ["-p", "2147483647"], timeout=30)
    assert rc == 2, err
    m = re.search(r"\(([a-z_]+(?:, [a-z_]+)+)\)", err)
    assert m, err
    return m.group(1).split(", ")


def _help_entries(text, opt):
    """The --help lines about opt: from where it is named to the next option's line."""
    return [m.group(0) for m in re.finditer(re.escape(opt) + r"(?![a-z-]).*?(?=\n  -|\n\n|\Z)", text, re.S)]


def _man_entries(text, opt):
    """The man page's tagged paragraphs (.TP) whose tag names opt, font escapes removed."""
    text = re.sub(r"\\f[BIRP]", "", text)
    paras = re.split(r"\n(?=\.(?:TP|SS|SH|PP|IP)\b)", text)
    return [p for p in paras if p.startswith(".TP") and re.search(re.escape(opt) + r"(?![a-z-])", p.split("\n")[1])]


def _readme_entries(text, opt):
    """The README's option table rows for opt (first cell "`-x, --opt ...`")."""
    return [l for l in text.splitlines() if re.match(r"\| `(?:-[a-zA-Z], )?%s(?![a-z-])" % re.escape(opt), l)]


@pytest.mark.parametrize("cmds,opt,bad", [
    (["report", "top", "serve"], "--unwind", ["--unwind", "bogus"]),
    (["report", "top", "serve"], "--attach", ["--attach", "bogus"]),
    (["report"], "--format", ["-f", "bogus"]),
    (["report"], "--weight", ["--weight", "bogus"]),
], ids=["unwind", "attach", "format", "weight"])
def test_option_values_are_documented(profiler_bin, cmds, opt, bad):
    """Where --help, the man page or the README describe an option's values, they name every
    value the program takes (--unwind auto was missing from two of them)."""
    values = _accepted_values(bad)
    for cmd in cmds:
        assert _accepted_values([cmd] + bad) == values, cmd
    docs = []
    for cmd in cmds:
        rc, out, err = helpers.run_profiler([cmd, "--help"], timeout=30)
        assert rc == 0
        # an entry that names none of the values defers to another ("MODE, as for the report")
        docs += [("%s --help" % cmd, e) for e in _help_entries(out, opt)
                 if any(re.search(r"\b%s\b" % v, e) for v in values)]
    assert any(d.startswith("report") for d, _ in docs), "report --help does not list %s's values" % opt
    docs += [("man page", e) for e in _man_entries(_man(), opt)]
    docs += [("README", e) for e in _readme_entries(_readme(), opt)]
    assert [d for d, _ in docs if d == "man page"] and [d for d, _ in docs if d == "README"], docs
    missing = [(doc, v) for doc, e in docs for v in values if not re.search(r"\b%s\b" % v, e)]
    assert not missing, missing


def test_json_fields_are_documented():
    """The JSON report's field names, called a stable interface, are the ones the man page and
    the README list: each one the writer writes, and no other."""
    src = (helpers.REPO / "user" / "report_json.c").read_text()
    fields = set(re.findall(r"json_writer__(?:field_\w+|key)\(&?w, \"([a-z_]+)\"", src))
    literals = set(re.findall(r"\"([a-z_]+)\"", src))  # the fields and the values they take
    assert {"pid", "kind", "container_id", "module_offset"} <= fields, fields
    man = _man()
    blocks = {
        "man page": man[man.index(".SS JSON"):man.index(".SS Drop counters")],
        "README": re.search(r"`-f json` writes.*?```(.*?)```", _readme(), re.S).group(1),
    }
    for doc, block in blocks.items():
        named = set(re.findall(r"\"([a-z_]+)\"", block))
        assert not fields - named, (doc, "undocumented", sorted(fields - named))
        assert not named - literals, (doc, "not written", sorted(named - literals))


def test_serve_seconds_limit_is_documented():
    """?seconds=N: the documents give the bound the server checks."""
    src = (helpers.REPO / "user" / "serve_http.c").read_text()
    limit = int(float(re.search(r"#define HTTP_MAX_SECONDS ([0-9.]+)", src).group(1)))
    man = re.sub(r"\\f[BIRP]|\n\.[A-Z]+ ?|\"", " ", _man())
    for doc, text in (("man page", man), ("README", _readme())):
        around = text[text.index("?seconds="):][:400]
        assert re.search(r"\b%s\b" % limit, around.replace(",", "")), (doc, around)
        assert "at most an hour" not in around, (doc, around)


def test_examples_give_one_pid_per_option():
    """-p takes one pid: $(pidof NAME) gives several when several run (pidof -s gives one)."""
    for doc, text in (("man page", _man()), ("README", _readme())):
        bad = re.findall(r"-p \$\(pidof (?!-s )[^)]*\)", text)
        assert not bad, (doc, bad)


# the keys top_view__key() and key_procs()/key_stacks() handle (q's twin Q aside)
TOP_KEYS = ["g", "l", "a", "t", "Up", "Down", "j", "k", "PgUp", "PgDn", "Home", "End", "Enter",
            "Right", "Space", "Esc", "Backspace", "Left", "/", "p", "Ctrl-L", "h", "?", "q"]


def test_top_keys_are_documented(profiler_bin):
    """Every key the live view handles is named where its keys are listed: top --help, the
    man page and the README (PgUp/PgDn, Home/End, Space, Left, Backspace and ? were only on
    the help screen)."""
    rc, out, err = helpers.run_profiler(["top", "--help"], timeout=30)
    assert rc == 0
    man = re.sub(r"^\.[A-Z]+ ?", "", _man(), flags=re.M).replace('"', "")
    docs = {
        "top --help": re.search(r"Keys:.*?(?=\nExit status)", out, re.S),
        "man page": re.search(r"Keys:.*?(?=\n\.?SS |\nasizeof-bpf serve)", man, re.S),
        "README": re.search(r"Keys:.*?(?=\n\n)", _readme(), re.S),
    }
    missing = []
    for doc, m in docs.items():
        assert m, "no key list in the %s" % doc
        text = m.group(0).replace("\n", " ")
        missing += [(k, doc) for k in TOP_KEYS
                    if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(k), text)]
    assert not missing, missing


def test_sample_bytes_range_is_documented(profiler_bin):
    """--sample-bytes: the man page gives the range the program checks (the bound moved from
    2^32 to 2^31: at 2^32 a sampled 1-byte block's count wrapped to 0 in the kernel)."""
    rc, out, err = helpers.run_profiler(["--sample-bytes", "0", "-p", "2147483647"], timeout=30)
    assert rc == 2, err
    lo, hi = re.search(r"--sample-bytes: '0' is not (\d+)-(\d+)", err).groups()
    assert int(hi) == 1 << 31
    entries = _man_entries(_man(), "--sample-bytes")
    assert entries and all("(%s to %s;" % (lo, hi) in re.sub(r"\s+", " ", e) for e in entries), entries


def test_every_drop_counter_is_documented():
    """Nothing is lost silently only if the user can tell what a counter means: each name the
    program writes (user/snapshot.c's drop_names, JSON's `dropped` keys) is described in the
    man page's Drop counters and the README's list, and neither names one it does not write."""
    src = (helpers.REPO / "user" / "snapshot.c").read_text()
    table = re.search(r"drop_names\[ASZ_NR_DROPS\] = \{(.*?)\};", src, re.S).group(1)
    names = set(re.findall(r"\] = \"([a-z_]+)\"", table))
    header = (helpers.REPO / "include" / "asizeof.h").read_text()
    assert len(names) == int(re.search(r"ASZ_NR_DROPS = (\d+)", header).group(1)), names
    man = _man()
    section = man[man.index(".SS Drop counters"):man.index(".SH EXIT STATUS")]
    man_named = set(re.findall(r"^\.B ([a-z_]+)$", section, re.M))
    readme = _readme()
    para = readme[readme.index("Nothing is lost silently."):]
    para = para[:para.index("\n\n")]
    readme_named = set(re.findall(r"`([a-z_]+)`", para))
    assert man_named == names, (sorted(names - man_named), sorted(man_named - names))
    assert names <= readme_named, sorted(names - readme_named)


def test_max_procs_range_is_documented(profiler_bin):
    """--max-procs (the kernel's process map had a fixed size): the range the program checks is
    the man page's and the README's, and each command's --help offers it."""
    rc, out, err = helpers.run_profiler(["--max-procs", "0", "-p", "2147483647"], timeout=30)
    assert rc == 2, err
    lo, hi = re.search(r"--max-procs: '0' is not (\d+)-(\d+)", err).groups()
    entries = _man_entries(_man(), "--max-procs")
    assert entries and all("(%s to %s," % (lo, hi) in re.sub(r"\s+", " ", e) for e in entries), entries
    rows = _readme_entries(_readme(), "--max-procs")
    assert rows and "(%s to %s;" % (lo, "{:,}".format(int(hi))) in rows[0], rows
    for cmd in ("report", "top", "serve"):
        rc, out, _ = helpers.run_profiler([cmd, "--help"], timeout=30)
        assert rc == 0 and "--max-procs N" in out, cmd
