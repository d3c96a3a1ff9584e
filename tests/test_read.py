"""Reading nodes: sysctl form, subcommands, output forms, unknown names and domains."""

from conftest import assert_clean_failure

NAMES = [f"machdep.xen.balloon.{key}" for key in ("current", "target", "min", "max", "xen-max")]


def test_all_nodes_of_domain0(xbctl):
    outcome = xbctl("-a")
    assert outcome.status == 0
    assert outcome.stderr == ""
    assert outcome.stdout.splitlines() == [
        "machdep.xen.balloon.current = 4194304",
        "machdep.xen.balloon.target = 4194304",
        "machdep.xen.balloon.min = 1048576",
        "machdep.xen.balloon.max = 4194304",
        "machdep.xen.balloon.xen-max = 4194304",
    ]


def test_a_without_state_file_shows_the_default_host(tmp_path):
    from conftest import Xbctl

    fresh = Xbctl(tmp_path / "never-written" / "sim.json")
    outcome = fresh("-a")
    assert outcome.status == 0
    assert [line.split(" = ")[0] for line in outcome.stdout.splitlines()] == NAMES
    assert not fresh.state_path.exists()  # reading writes nothing


def test_value_only_and_equals_forms(xbctl):
    assert xbctl("-n", "-d", "web", "target").stdout == "786432\n"
    # -e with -d records the domain: -f restores web, even without -d.
    assert xbctl("-e", "-d", "web", "machdep.xen.balloon.min").stdout == "[web]\nmachdep.xen.balloon.min=131072\n"
    assert xbctl("-e", "machdep.xen.balloon.min").stdout == "machdep.xen.balloon.min=1048576\n"
    assert xbctl("-ne", "-d", "web", "max").stdout == "1048576\n"  # -n wins, as in sysctl


def test_several_names_and_subtree(xbctl):
    outcome = xbctl("-d", "1", "machdep.xen.balloon.target", "machdep.xen.balloon.current")
    assert outcome.stdout == "machdep.xen.balloon.target = 786432\nmachdep.xen.balloon.current = 786432\n"
    assert [line.split(" = ")[0] for line in xbctl("machdep.xen").stdout.splitlines()] == NAMES


def test_subcommand_read_matches_sysctl_form(xbctl):
    for key, name in zip(("current", "target", "min", "max", "xen-max"), NAMES):
        assert xbctl("-d", "db", key).stdout == xbctl("-d", "db", name).stdout


def test_options_may_follow_the_command(xbctl):
    assert xbctl("target", "-d", "web", "-n").stdout == "786432\n"


def test_max_is_xen_max_clipped_at_boot_size(xbctl):
    assert xbctl.value("max", "Domain-0") == 4194304
    # db runs a driver that publishes no limit, so only xen-max is known
    assert xbctl.value("max", "db") == 4194304
    assert xbctl.value("xen-max", "db") == 4194304


def test_unknown_node_exits_4(xbctl):
    assert_clean_failure(xbctl("machdep.xen.balloon.nope"), 4, "machdep.xen.balloon.nope: unknown node")
    assert_clean_failure(xbctl("kern.maxproc"), 4, "unknown node")


def test_unknown_domain_exits_4(xbctl):
    assert_clean_failure(xbctl("-d", "nosuch", "-a"), 4, "domain 'nosuch': unknown domain")
    assert_clean_failure(xbctl("-d", "42", "target"), 4, "unknown domain")
    assert_clean_failure(xbctl("-d", "32752", "target"), 4, "ids are below 32752")
    assert_clean_failure(xbctl("-d", "domain-0", "target"), 4, "unknown domain")  # names match exactly


def test_domain_by_id_and_name_agree(xbctl):
    assert xbctl("-d", "2", "-a").stdout == xbctl("-d", "db", "-a").stdout


def test_list_shows_every_domain(xbctl):
    outcome = xbctl("list")
    assert outcome.status == 0
    for name in ("Domain-0", "web", "db", "mail"):
        assert name in outcome.stdout
    assert "no driver" in outcome.stdout  # mail
    assert "\x1b[" not in outcome.stdout  # no colour when NO_COLOR is set / not a terminal


def test_list_json(xbctl):
    document = xbctl("--json", "list").json()
    assert document["schema_version"] == 1 and document["kind"] == "list"
    assert [d["name"] for d in document["domains"]] == ["Domain-0", "web", "db", "mail"]
    web = document["domains"][1]
    assert web["nodes"]["target"] == {
        "name": "machdep.xen.balloon.target",
        "value_kib": 786432,
        "memory_target_kib": 786432,
        "videoram_kib": 0,
    }
    # three states: the driverless guest says so; Linux's (db) says nothing; NetBSD's publishes
    assert [d["has_driver"] for d in document["domains"]] == [True, True, None, False]
    assert [d["driver"] for d in document["domains"]] == ["yes", "yes", "unknown", "no"]


def test_read_json(xbctl):
    document = xbctl("--json", "-d", "web", "-a").json()
    assert document["kind"] == "read"
    assert document["domain"] == {"id": 1, "name": "web"}
    assert list(document["nodes"]) == ["current", "target", "min", "max", "xen-max"]
    assert document["nodes"]["current"]["source"] == "hypervisor"


def test_nothing_to_do_is_usage_error(xbctl):
    assert_clean_failure(xbctl(), 2, "nothing to do")


def test_version_and_help(xbctl):
    assert xbctl("--version").stdout.startswith("xbctl ")
    help_text = xbctl("--help").stdout
    # Each command has its line in the command list, not just a mention in the description.
    listed = _help_commands(help_text)
    for command in ("current", "target", "min", "max", "xen-max", "mem-set", "mem-max", "list", "sim", "agent"):
        assert command in listed, (command, help_text)


def _help_commands(help_text: str) -> list[str]:
    """The command names --help lists under its Commands heading (the first word of each entry)."""
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip(" │╭─╮").startswith("Commands"))
    names = []
    for line in lines[start + 1 :]:
        entry = line.strip(" │")
        if not entry or entry.startswith(("╰", "─")):
            break
        if line.startswith((" ", "│")) and not line.startswith(("      ", "│      ")):  # not a wrapped summary
            names.append(entry.split()[0])
    return names
