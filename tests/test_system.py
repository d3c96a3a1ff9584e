"""`xbctl --system`: the configuration files in sysctl's order, as one validated change,
on the simulator and over a real xenstored (checked with Debian's xenstore-read)."""

from __future__ import annotations

import json

import pytest
from conftest import assert_clean_failure
from xen_fixtures import MIB

TARGET = "machdep.xen.balloon.target"
MIN = "machdep.xen.balloon.min"


@pytest.fixture
def root(tmp_path):
    """A configuration root (XBCTL_CONF_ROOT) with the three places, empty."""
    for directory in ("etc/xbctl.d", "usr/lib/xbctl.d"):
        (tmp_path / directory).mkdir(parents=True)
    return tmp_path


def conf(root, relative: str, text: str) -> str:
    path = root / relative
    path.write_text(text)
    return str(path)


def lay_out(root):
    """web's floor and target from an /etc drop-in, a vendor file that an /etc file of the
    same name replaces, db from /etc/xbctl.conf, and a section for a domain not running."""
    web = conf(root, "etc/xbctl.d/10-web.conf", f"[web]\n{MIN} = 256M\n{TARGET} = 600M\n[nosuch]\n{TARGET} = 1G\n")
    conf(root, "usr/lib/xbctl.d/20-vendor.conf", "[web]\ntarget = 300M\n")  # replaced by /etc's 20-vendor.conf
    vendor = conf(root, "etc/xbctl.d/20-vendor.conf", "[web]\ntarget = 640M\n")
    main = conf(root, "etc/xbctl.conf", "[db]\ntarget = 1G\n")
    return web, vendor, main


def test_system_applies_in_sysctls_order_and_says_which_file_set_what(xbctl, root):
    web, vendor, main = lay_out(root)
    env = {"XBCTL_CONF_ROOT": str(root)}
    outcome = xbctl("--system", env=env)
    assert outcome.status == 0, outcome
    # 20-vendor.conf comes after 10-web.conf and its target wins; /etc/xbctl.conf comes last.
    assert outcome.stdout == (
        f"* Applying {web} ...\n"
        f"web: {MIN}: 131072 -> 262144\n"
        f"* Applying {vendor} ...\n"
        f"web: {TARGET}: 786432 -> 655360\n"
        f"* Applying {main} ...\n"
        f"db: {TARGET}: 1572864 -> 1048576\n"
    )
    assert f"{web}:4: domain 'nosuch': unknown domain; its lines are skipped" in outcome.stderr
    assert (xbctl.value("min", "web"), xbctl.value("target", "web")) == (256 * MIB, 640 * MIB)
    assert xbctl.value("target", "db") == 1024 * MIB


def test_system_twice_the_second_run_changes_nothing(xbctl, root):
    conf(root, "etc/xbctl.d/10-web.conf", f"[web]\n{MIN} = 256M\n{TARGET} = 600M\n")
    conf(root, "etc/xbctl.conf", "[db]\ntarget = 1G\n[db]\ntarget = 1100M\n")
    env = {"XBCTL_CONF_ROOT": str(root)}
    assert xbctl("--system", env=env).status == 0
    after_first = xbctl.snapshot()
    quiet = xbctl("-q", "--system", env=env)
    assert (quiet.status, quiet.stdout, quiet.stderr) == (0, "", ""), quiet
    document = xbctl("--json", "--system", env=env)
    assert document.status == 0, document
    written = json.loads(document.stdout)
    assert written["kind"] == "writes" and written["changed"] is False
    assert [d["changes"] for d in written["domains"]] == [[], []]
    text = xbctl("--system", env=env)
    assert [line for line in text.stdout.splitlines() if not line.startswith("* Applying ")] == [], text
    assert xbctl.snapshot() == after_first


def test_system_counts_the_settings_that_already_hold_and_v_lists_them_under_their_files(xbctl, root):
    web = conf(root, "etc/xbctl.d/10-web.conf", f"[web]\n{MIN} = 256M\n{TARGET} = 600M\n")
    main = conf(root, "etc/xbctl.conf", "[db]\ntarget = 1G\n[db]\ntarget = 1100M\n[web]\nmin = 128M\n")
    env = {"XBCTL_CONF_ROOT": str(root)}
    first = xbctl("--system", env=env)  # web's min is 128 MiB already: 10-web's 256M is undone by xbctl.conf
    assert first.stdout == (
        f"* Applying {web} ...\nweb: {TARGET}: 786432 -> 614400\n"
        f"* Applying {main} ...\ndb: {TARGET}: 1572864 -> 1126400\n"
    ), first
    assert first.stderr == "xbctl: note: 1 setting unchanged (-v lists it)\n", first
    again = xbctl("--system", env=env)
    assert (again.status, again.stdout) == (0, f"* Applying {web} ...\n* Applying {main} ...\n"), again
    assert again.stderr == "xbctl: note: nothing changed: 3 settings unchanged (-v lists them)\n", again
    # Each node once, under the file that set it last, domain by domain, as changes show.
    verbose = xbctl("--verbose", "--system", env=env)
    assert verbose.stdout == (
        f"* Applying {web} ...\nweb: {TARGET}: 614400 -> 614400 (unchanged)\n"
        f"* Applying {main} ...\nweb: {MIN}: 131072 -> 131072 (unchanged)\n"
        f"db: {TARGET}: 1126400 -> 1126400 (unchanged)\n"
    ), verbose
    assert verbose.stderr == "xbctl: note: nothing changed: 3 settings unchanged\n", verbose
    document = json.loads(xbctl("--json", "-v", "--system", env=env).stdout)  # what changed, as ever
    assert document["changed"] is False and [d["changes"] for d in document["domains"]] == [[], []]
    assert xbctl("-q", "-v", "--system", env=env).stderr == ""


def test_system_json_names_the_line_behind_each_change(xbctl, root):
    web = conf(root, "etc/xbctl.d/10-web.conf", f"[web]\n{TARGET} = 600M\n")
    document = xbctl("--json", "--system", env={"XBCTL_CONF_ROOT": str(root)})
    assert document.status == 0, document
    written = json.loads(document.stdout)
    assert written["domains"][0]["changes"] == [
        {"node": "target", "name": TARGET, "old_kib": 786432, "new_kib": 600 * MIB, "origin": f"{web}:2"}
    ]


@pytest.mark.parametrize(
    "text, status, message",
    [
        (
            f"[web]\n{TARGET} = 600M\n[db]\n{TARGET} = bogus\n",
            2,
            ":4: machdep.xen.balloon.target: invalid size 'bogus'",
        ),
        (f"[web]\n{TARGET} = 600M\n[db]\n{MIN} = 4G\n", 1, ":4: machdep.xen.balloon.min: Operation not permitted"),
        (f"[web]\n{TARGET} = 600M\n[db\n", 2, ":3: '[db' is neither a section nor an assignment"),
        ("[web]\nmachdep.xen.balloon.nosuch = 1\n", 4, ":2: "),
    ],
)
def test_a_bad_or_refused_line_leaves_its_file_out_and_the_others_apply(xbctl, root, text, status, message):
    # sysctl.d's rule: a file that fails is reported, the other files still apply.
    web = conf(root, "etc/xbctl.d/10-web.conf", f"[web]\n{MIN} = 200M\n")
    bad = conf(root, "etc/xbctl.d/50-bad.conf", text)
    main = conf(root, "etc/xbctl.conf", "[db]\ntarget = 1G\n")
    before = xbctl.snapshot()
    outcome = xbctl("--system", env={"XBCTL_CONF_ROOT": str(root)})
    assert outcome.status == status, outcome
    assert outcome.stdout == (
        f"* Applying {web} ...\nweb: {MIN}: 131072 -> 204800\n* Applying {main} ...\ndb: {TARGET}: 1572864 -> 1048576\n"
    ), outcome
    assert f"xbctl: {bad}{message}" in outcome.stderr and f"({bad} not applied)\n" in outcome.stderr, outcome
    assert outcome.stderr.endswith(
        "xbctl: 1 configuration file was not applied (see above); the other 2 were applied\n"
        "xbctl: hint: correct the lines cited above; the files apply as a whole or not at all\n"
    ), outcome
    assert "Traceback" not in outcome.stderr
    after = xbctl.snapshot()
    assert (xbctl.value("min", "web"), xbctl.value("target", "web")) == (200 * MIB, 768 * MIB)  # not 50-bad's 600M
    assert xbctl.value("target", "db") == 1024 * MIB
    assert xbctl.value("min", "db") == 512 * MIB
    assert after != before


def test_no_configuration_is_a_note_and_changes_nothing(xbctl, root):
    before = xbctl.snapshot()
    outcome = xbctl("--system", env={"XBCTL_CONF_ROOT": str(root)})
    assert (outcome.status, outcome.stdout) == (0, ""), outcome
    assert (
        outcome.stderr
        == f"xbctl: note: no configuration files under {root} (etc/xbctl.conf, etc/xbctl.d, usr/lib/xbctl.d)\n"
    )
    assert xbctl.snapshot() == before


@pytest.mark.parametrize(
    "args, says",
    [
        (["-d", "web"], "no -d"),
        (["-f", "/dev/null"], "no -f"),
        (["-a"], "no -a"),
        (["-A"], "no -A"),
        ([f"{TARGET}=1G"], "no names or assignments"),
        (["--wait"], "no --wait"),
    ],
)
def test_system_with_what_it_does_not_take_is_a_usage_error(xbctl, root, args, says):
    conf(root, "etc/xbctl.d/10-web.conf", f"[web]\n{TARGET} = 600M\n")
    before = xbctl.snapshot()
    outcome = xbctl("--system", *args, env={"XBCTL_CONF_ROOT": str(root)})
    assert_clean_failure(outcome, 2, f"--system applies the configuration files; it takes {says}")
    assert xbctl.snapshot() == before


def test_system_dry_run_shows_and_writes_nothing(xbctl, root):
    web = conf(root, "etc/xbctl.d/10-web.conf", f"[web]\n{TARGET} = 600M\n")
    before = xbctl.snapshot()
    outcome = xbctl("--dry-run", "--system", env={"XBCTL_CONF_ROOT": str(root)})
    assert outcome.status == 0, outcome
    assert outcome.stdout == f"* Applying {web} ...\nweb: {TARGET}: 786432 -> 614400\n"
    assert "dry run: nothing was written" in outcome.stderr
    assert xbctl.snapshot() == before


# ---------------------------------------------------------------- a real xenstored


def test_system_twice_over_xenstore(xs, root):
    web, vendor, main = lay_out(root)
    env = {"XBCTL_CONF_ROOT": str(root)}
    first = xs.process("--system", env=env)
    assert first.status == 0, first
    assert first.stdout.splitlines() == [
        f"* Applying {web} ...",  # web's floor already is 256 MiB here
        f"* Applying {vendor} ...",
        f"web: {TARGET}: 786432 -> 655360",
        f"* Applying {main} ...",
        f"db: {TARGET}: 1572864 -> 1048576",
    ], first
    assert xs.dom(1, "memory/target") == str(640 * MIB)  # Debian's xenstore-read
    assert xs.dom(2, "memory/target") == str(1024 * MIB)
    before = xs.listing()
    quiet = xs.process("-q", "--system", env=env)
    assert (quiet.status, quiet.stdout, quiet.stderr) == (0, "", ""), quiet
    document = xs.process("--json", "--system", env=env)
    written = json.loads(document.stdout)
    assert written["changed"] is False and all(d["changes"] == [] for d in written["domains"]), written
    assert xs.listing() == before  # xenstore-ls: nothing was written at all


def test_system_dry_run_over_xenstore_writes_nothing(xs, root):
    web, vendor, main = lay_out(root)
    before = xs.listing()
    outcome = xs.process("--dry-run", "--system", env={"XBCTL_CONF_ROOT": str(root)})
    assert outcome.status == 0, outcome
    assert (
        f"web: {TARGET}: 786432 -> 655360" in outcome.stdout and f"db: {TARGET}: 1572864 -> 1048576" in outcome.stdout
    )
    assert "dry run: nothing was written" in outcome.stderr
    assert xs.listing() == before  # Debian's xenstore-ls
    assert xs.dom(1, "memory/target") == str(768 * MIB)  # Debian's xenstore-read
    # Regardless of policy's record: --system applies everything, configured earlier or not.
    assert xs.process("-q", "policy", env={"XBCTL_CONF_ROOT": str(root)}).status == 0
    xs.write("/local/domain/1/memory/target", str(700 * MIB))
    again = xs.process("--dry-run", "--system", env={"XBCTL_CONF_ROOT": str(root)})
    assert f"web: {TARGET}: 716800 -> 655360" in again.stdout, again
    assert xs.process("-q", "--system", env={"XBCTL_CONF_ROOT": str(root)}).status == 0
    assert xs.dom(1, "memory/target") == str(640 * MIB)


def test_system_refused_over_xenstore_applies_the_other_files(xs, root):
    conf(root, "etc/xbctl.d/10-web.conf", f"[web]\n{TARGET} = 600M\n")
    bad = conf(root, "etc/xbctl.conf", "[web]\nmin = 300M\n[db]\ntarget = 64G\n")
    outcome = xs.process("--system", env={"XBCTL_CONF_ROOT": str(root)})
    assert outcome.status == 1, outcome
    assert f"xbctl: {bad}:4: {TARGET}: Operation not permitted" in outcome.stderr, outcome
    assert xs.dom(1, "memory/target") == str(600 * MIB)  # Debian's xenstore-read: 10-web.conf applied
    assert not xs.exists("/local/domain/1/memory/dynamic-min")  # xbctl.conf is left out whole: no 300M
    assert xs.dom(2, "memory/target") == str(1536 * MIB)


# ---------------------------------------------------------------- sysctl.d's rules


def test_dash_lines_semicolon_comments_and_every_domain_in_sysctl_d_s_order(xbctl, root):
    # 10-web.conf names web; 90-defaults.conf, read later, is for every domain and guests named
    # m*: the most specific section wins whatever file it is in.
    web = conf(root, "etc/xbctl.d/10-web.conf", f"; web's own\n[web]\n{MIN} = 300M ; a floor\n")
    defaults = conf(
        root,
        "etc/xbctl.d/90-defaults.conf",
        f"[*]\n-{MIN} = 600M\n-machdep.xen.balloon.colour = blue\n[m*]\n{MIN} = 200M\n[x*]\n{MIN} = 1M\n",
    )
    outcome = xbctl("--system", env={"XBCTL_CONF_ROOT": str(root)})
    assert outcome.status == 0, outcome
    assert outcome.stdout == (
        f"* Applying {web} ...\nweb: {MIN}: 131072 -> 307200\n"
        f"* Applying {defaults} ...\n"
        f"Domain-0: {MIN}: 1048576 -> 614400\n"
        f"db: {MIN}: 524288 -> 614400\n"
        f"mail: {MIN}: 262144 -> 204800\n"
    ), outcome
    # A "-" line that fails is a warning, not a failure (mail's max is 512 MiB).
    assert f"xbctl: ignored: {defaults}:2: {MIN}: Operation not permitted" in outcome.stderr, outcome
    assert outcome.stderr.count(f"xbctl: ignored: {defaults}:3: machdep.xen.balloon.colour: unknown node\n") == 1
    assert f"xbctl: note: {defaults}:6: [x*] matches no domain; its lines are skipped" in outcome.stderr
    assert [xbctl.value("min", d) for d in ("web", "db", "mail")] == [300 * MIB, 600 * MIB, 200 * MIB]
