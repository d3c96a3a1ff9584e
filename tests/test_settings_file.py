"""-f FILE: name=value lines, comments, name?=value, FILE:LINE errors, validated as a whole."""

from conftest import assert_clean_failure


def write(tmp_path, text):
    path = tmp_path / "balloon.conf"
    path.write_text(text)
    return str(path)


def test_applies_lines_in_order_with_comments_and_blanks(xbctl, tmp_path):
    path = write(
        tmp_path,
        "# db grows\n\nmachdep.xen.balloon.target=3G\n  machdep.xen.balloon.min = 1G   # keep a floor\n",
    )
    outcome = xbctl("-d", "db", "-f", path)
    assert outcome.status == 0, outcome
    assert outcome.stdout == (
        "machdep.xen.balloon.target: 1572864 -> 3145728\nmachdep.xen.balloon.min: 524288 -> 1048576\n"
    )
    assert xbctl.value("min", "db") == 1048576


def test_a_refused_line_cites_file_and_line_and_nothing_is_written(xbctl, tmp_path):
    path = write(tmp_path, "machdep.xen.balloon.target=1G\n# then\nmachdep.xen.balloon.min=2G\n")
    before = xbctl.snapshot()
    outcome = xbctl("-d", "db", "-f", path)
    assert_clean_failure(outcome, 1, f"{path}:3: machdep.xen.balloon.min: Operation not permitted")
    assert xbctl.snapshot() == before  # line 1 was valid, but the file is applied whole or not at all


def test_unknown_name_cites_file_and_line(xbctl, tmp_path):
    path = write(tmp_path, "machdep.xen.balloon.target=1G\nmachdep.xen.balloon.colour=blue\n")
    before = xbctl.snapshot()
    assert_clean_failure(xbctl("-d", "db", "-f", path), 4, f"{path}:2: machdep.xen.balloon.colour: unknown node")
    assert xbctl.snapshot() == before


def test_optional_lines_skip_unknown_names_and_refusals(xbctl, tmp_path):
    path = write(
        tmp_path,
        "machdep.xen.balloon.colour?=blue\nmachdep.xen.balloon.min?=8G\nmachdep.xen.balloon.target?=1G\n",
    )
    outcome = xbctl("-d", "db", "-f", path)
    assert outcome.status == 0, outcome
    assert outcome.stdout == "machdep.xen.balloon.target: 1572864 -> 1048576\n"
    assert f"xbctl: ignored: {path}:1: machdep.xen.balloon.colour: unknown node" in outcome.stderr
    assert f"xbctl: ignored: {path}:2: machdep.xen.balloon.min: Operation not permitted" in outcome.stderr
    assert xbctl.value("min", "db") == 524288


def test_optional_lines_do_not_excuse_malformed_values(xbctl, tmp_path):
    path = write(tmp_path, "machdep.xen.balloon.target?=lots\n")
    assert_clean_failure(xbctl("-d", "db", "-f", path), 2, f"{path}:1:", "invalid size 'lots'")


def test_line_without_equals_is_usage_error(xbctl, tmp_path):
    path = write(tmp_path, "machdep.xen.balloon.target\n")
    assert_clean_failure(xbctl("-f", path), 2, f"{path}:1:", "not an assignment")


def test_empty_file_does_nothing(xbctl, tmp_path):
    before = xbctl.snapshot()
    outcome = xbctl("-f", write(tmp_path, "# nothing yet\n\n"))
    assert (outcome.status, outcome.stdout, outcome.stderr) == (0, "", "")
    assert xbctl.snapshot() == before


def test_binary_file_is_usage_error(xbctl, tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"\xff\xfe\x00target=1")
    assert_clean_failure(xbctl("-f", str(path)), 2, "not a UTF-8 text file")


def test_output_of_e_feeds_f(xbctl, tmp_path):
    saved = xbctl("-e", "-d", "web", "machdep.xen.balloon.target", "machdep.xen.balloon.min").stdout
    xbctl("-q", "-d", "web", "target", "512M")
    outcome = xbctl("-d", "web", "-f", write(tmp_path, saved))
    assert outcome.status == 0, outcome
    assert xbctl.value("target", "web") == 786432


def test_semicolon_comments_and_dash_lines_as_sysctl_d_reads_them(xbctl, tmp_path):
    path = write(
        tmp_path,
        "; sysctl.d's other comment\n-machdep.xen.balloon.colour = blue\n- machdep.xen.balloon.min = 8G ; too high\n"
        "machdep.xen.balloon.target = 1G ; a comment after a value\n",
    )
    outcome = xbctl("-d", "db", "-f", path)
    assert outcome.status == 0, outcome
    assert outcome.stdout == "machdep.xen.balloon.target: 1572864 -> 1048576\n"
    assert outcome.stderr == (
        f"xbctl: ignored: {path}:2: machdep.xen.balloon.colour: unknown node\n"
        f"xbctl: ignored: {path}:3: machdep.xen.balloon.min: Operation not permitted: "
        "8 GiB (8388608 KiB) is above max 4 GiB (4194304 KiB)\n"
    ), outcome
    assert xbctl.value("min", "db") == 524288


def test_a_dash_line_does_not_excuse_a_malformed_value(xbctl, tmp_path):
    path = write(tmp_path, "machdep.xen.balloon.target = 1G\n-machdep.xen.balloon.min = lots\n")
    before = xbctl.snapshot()
    assert_clean_failure(xbctl("-d", "db", "-f", path), 2, f"{path}:2: machdep.xen.balloon.min", "invalid size 'lots'")
    assert xbctl.snapshot() == before


def test_every_domain_and_glob_sections_most_specific_last_and_f_is_all_or_nothing(xbctl, tmp_path):
    path = write(tmp_path, "[web]\nmin = 300M\n[*]\nmin = 100M\n[m*]\nmin = 200M\n")
    outcome = xbctl("-f", path)
    assert outcome.status == 0, outcome
    # [*] first, then [m*], then [web]: whatever their order in the file.
    assert [xbctl.value("min", d) for d in ("Domain-0", "web", "db", "mail")] == [102400, 307200, 102400, 204800]
    refused = write(tmp_path, "[*]\nmin = 600M\n")  # above mail's max: nothing is written anywhere
    before = xbctl.snapshot()
    assert_clean_failure(xbctl("-f", refused), 1, f"{refused}:2: machdep.xen.balloon.min: Operation not permitted")
    assert xbctl.snapshot() == before


def test_with_d_a_glob_section_sets_that_domain_alone(xbctl, tmp_path):
    path = write(tmp_path, "[*]\nmin = 100M\n[d*]\nmin = 200M\n[w*]\nmin = 300M\n")
    outcome = xbctl("-d", "db", "-f", path)
    assert outcome.status == 0, outcome
    assert f"xbctl: note: {path}:5: [w*] does not match db, which -d names; its lines are skipped" in outcome.stderr
    assert [xbctl.value("min", d) for d in ("web", "db", "mail")] == [131072, 204800, 262144]
