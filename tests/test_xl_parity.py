"""xbctl against the oracle: Debian's real xl, on the same fake hypervisor and real xenstored.

Each case runs `xl COMMAND D S` and then `xbctl COMMAND D S` (the installed command, as a
process, over Xenstore with Debian's real libxenctrl) from the same fresh state, and asserts
that both leave the same hypervisor (the state-changing hypercalls, in order, and the domain
table) and the same Xenstore tree (/local and /vm, with permissions).  Messages and exit
statuses differ by design (xbctl explains its refusals, exits 1 on EPERM), so only effects
are compared, plus the fact that both refused or both succeeded.  The size argument is the
same string for both: xl reads a plain number as MiB, as xbctl does.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from conftest import Outcome
from xen_fixtures import GIB, MIB, HypervisorHost, domain_uuid
from xenharness.hypervisor import Domain


@dataclass
class Effect:
    """What one command left behind."""

    outcome: Outcome
    calls: list[str]  # every hypercall, reads included
    writes: list[str]
    domains: dict[int, Domain]
    tree: str
    tree_before: str

    @property
    def succeeded(self) -> bool:
        return self.outcome.status == 0


def remove_dom0_memory_nodes(host: HypervisorHost) -> None:
    """A Domain-0 whose toolstack has not yet written its memory nodes (libxl fills them)."""
    host.rm("/local/domain/0/memory/target")
    host.rm("/local/domain/0/memory/static-max")


def run(host: HypervisorHost, tool: str, args: tuple[str, ...], prepare=None) -> Effect:
    """Reset everything, apply PREPARE, run TOOL ARGS; what it did."""
    host.reset()
    if prepare:
        prepare(host)
    host.hv.clear_log()
    before = host.tree()
    outcome = host.xl(*args) if tool == "xl" else host.process(*args)
    return Effect(outcome, host.hv.log(), host.hv.writes(), host.hv.domains(), host.tree(), before)


def both(host: HypervisorHost, *args: str, prepare=None) -> tuple[Effect, Effect]:
    xl = run(host, "xl", args, prepare)
    xbctl = run(host, "xbctl", args, prepare)
    return xl, xbctl


def assert_same_effect(xl: Effect, xbctl: Effect) -> None:
    assert xbctl.succeeded == xl.succeeded, (xl.outcome, xbctl.outcome)
    assert xbctl.writes == xl.writes, (xl.outcome, xbctl.outcome)
    assert xbctl.domains == xl.domains
    assert xbctl.tree == xl.tree, (xl.outcome, xbctl.outcome)
    assert "Traceback" not in xbctl.outcome.stderr


# (command, domain, size, what xl's hypercalls are: a check that the case tests something)
SUCCEEDING = [
    pytest.param(
        "mem-max", "1", "2048", [f"max_mem domid=1 max_memkb={2 * GIB + 1024}"], id="mem-max-pv-above-static-max"
    ),
    pytest.param(
        "mem-max", "1", "768", [f"max_mem domid=1 max_memkb={768 * MIB + 1024}"], id="mem-max-pv-equal-to-target"
    ),
    pytest.param("mem-max", "2", "3g", [f"max_mem domid=2 max_memkb={3 * GIB + 1024}"], id="mem-max-hvm-with-unit"),
    pytest.param("mem-max", "0", "6g", [f"max_mem domid=0 max_memkb={6 * GIB + 1024}"], id="mem-max-domain-0"),
    pytest.param(
        "mem-set", "1", "512", [f"max_mem domid=1 max_memkb={512 * MIB + 1024}"], id="mem-set-pv-below-target"
    ),
    pytest.param(
        "mem-set", "web", "1g", [f"max_mem domid=1 max_memkb={GIB + 1024}"], id="mem-set-pv-by-name-to-static-max"
    ),
    pytest.param(
        "mem-set",
        "2",
        "1024",
        [
            f"max_mem domid=2 max_memkb={GIB + 1024}",
            f"set_pod_target domid=2 target_pages={(GIB - 8 * MIB + 1024) // 4}",
        ],
        id="mem-set-hvm-with-videoram-below-target",
    ),
    pytest.param(
        "mem-set",
        "2",
        "2048",
        [
            f"max_mem domid=2 max_memkb={2 * GIB + 1024}",
            f"set_pod_target domid=2 target_pages={(2 * GIB - 8 * MIB + 1024) // 4}",
        ],
        id="mem-set-hvm-with-videoram-raised",
    ),
    pytest.param(
        "mem-set",
        "2",
        "2056",
        [
            f"max_mem domid=2 max_memkb={2056 * MIB + 1024}",
            f"set_pod_target domid=2 target_pages={(2 * GIB + 1024) // 4}",
        ],
        id="mem-set-hvm-static-max-plus-videoram",
    ),
    pytest.param("mem-set", "0", "2048", [f"max_mem domid=0 max_memkb={2 * GIB + 1024}"], id="mem-set-domain-0"),
    pytest.param("mem-set", "3", "384", [f"max_mem domid=3 max_memkb={384 * MIB + 1024}"], id="mem-set-pv-mail"),
]


@pytest.mark.parametrize(("command", "domain", "size", "xl_writes"), SUCCEEDING)
def test_same_effect_as_xl(hv_host, command, domain, size, xl_writes):
    xl, xbctl = both(hv_host, command, domain, size)
    assert xl.succeeded, xl.outcome
    assert xl.writes == xl_writes  # the rig and the case are what we think they are
    assert xl.tree != xl.tree_before
    assert_same_effect(xl, xbctl)


def pv_videoram(host: HypervisorHost) -> None:
    """A PV guest with video memory (a PV framebuffer sized by the administrator)."""
    host.write("/local/domain/1/memory/videoram", str(4 * MIB))


def test_mem_set_pv_with_videoram_like_xl(hv_host):
    xl, xbctl = both(hv_host, "mem-set", "1", "512", prepare=pv_videoram)
    assert xl.writes == [f"max_mem domid=1 max_memkb={512 * MIB + 1024}"]
    assert '/local/domain/1/memory/target = "%d"' % (512 * MIB - 4 * MIB) in xl.tree
    assert_same_effect(xl, xbctl)


@pytest.mark.parametrize(("domain", "size"), [("2", "1024"), ("1", "640"), ("0", "2048")])
def test_target_write_has_the_effect_of_xl_mem_set(hv_host, domain, size):
    xl = run(hv_host, "xl", ("mem-set", domain, size))
    xbctl = run(hv_host, "xbctl", ("-d", domain, "target", f"{size}M"))
    assert xl.succeeded and xl.writes, xl.outcome
    assert_same_effect(xl, xbctl)


def test_mem_set_writes_the_vm_memory_node(hv_host):
    xl, xbctl = both(hv_host, "mem-set", "2", "1024")
    uuid = domain_uuid(2)
    assert f'/vm/{uuid}/memory = "{(GIB - 8 * MIB) // MIB}"' in xl.tree
    assert_same_effect(xl, xbctl)


def test_mem_set_domain_0_creates_its_vm_node_like_xl(hv_host):
    # xen-init-dom0 writes no /vm for Domain-0; libxl writes /vm/<zero uuid>/memory anyway.
    xl, xbctl = both(hv_host, "mem-set", "0", "3072")
    assert f'/vm/{domain_uuid(0)}/memory = "3072"' in xl.tree
    assert_same_effect(xl, xbctl)


def test_mem_set_domain_0_without_memory_nodes_fills_them_like_xl(hv_host):
    xl, xbctl = both(hv_host, "mem-set", "0", "3072", prepare=remove_dom0_memory_nodes)
    assert xl.succeeded, xl.outcome
    assert "/local/domain/0/memory/static-max" in xl.tree
    assert_same_effect(xl, xbctl)


REFUSED = [
    pytest.param("mem-max", "1", "512", id="mem-max-below-target"),
    pytest.param("mem-max", "2", "1g", id="mem-max-hvm-below-target"),
    pytest.param("mem-set", "1", "2048", id="mem-set-above-static-max"),
    pytest.param("mem-set", "2", "2057", id="mem-set-hvm-above-static-max-with-videoram"),
    pytest.param("mem-set", "0", "100", id="mem-set-domain-0-below-128M"),
    pytest.param("mem-set", "0", "5g", id="mem-set-domain-0-above-static-max"),
]


@pytest.mark.parametrize(("command", "domain", "size"), REFUSED)
def test_refused_like_xl_without_any_hypercall(hv_host, command, domain, size):
    xl, xbctl = both(hv_host, command, domain, size)
    assert not xl.succeeded, xl.outcome
    assert xl.writes == [] and xl.tree == xl.tree_before
    assert xbctl.outcome.status != 0
    assert xbctl.outcome.stderr.startswith("xbctl: "), xbctl.outcome
    assert xbctl.tree == xbctl.tree_before
    assert_same_effect(xl, xbctl)
    # xl reads the hypervisor before it refuses; xbctl refuses on Xenstore's figures alone.
    assert xbctl.calls == []


def no_host_floor_for_db(host: HypervisorHost) -> None:
    """db's memory/dynamic-min at 0: no floor of xbctl's refuses before the video memory does."""
    host.write("/local/domain/2/memory/dynamic-min", "0")


@pytest.mark.parametrize("size", ["4", "7"])
def test_target_below_the_video_memory_is_refused_like_xl(hv_host, size):
    # db (HVM) has 8 MiB of video memory: libxl's unsigned new_target_memkb = S - videoram
    # wraps above static-max and xl refuses; xbctl says why.
    xl, xbctl = both(hv_host, "mem-set", "2", size, prepare=no_host_floor_for_db)
    assert not xl.succeeded and xl.writes == [], xl.outcome
    assert "below the domain's 8 MiB (8192 KiB) of video memory" in xbctl.outcome.stderr, xbctl.outcome
    assert_same_effect(xl, xbctl)
    assert xbctl.calls == []


def test_target_equal_to_the_video_memory_is_a_zero_memory_target_like_xl(hv_host):
    xl, xbctl = both(hv_host, "mem-set", "2", "8", prepare=no_host_floor_for_db)
    assert xl.succeeded, xl.outcome
    assert '/local/domain/2/memory/target = "0"' in xl.tree, xl.tree
    assert_same_effect(xl, xbctl)


def test_no_hypercall_at_all_on_xbctls_own_refusal(hv_host):
    # Stricter than xl: a guest that publishes no minimum still gets a floor (xl lets 0 through).
    hv_host.hv.clear_log()
    before = hv_host.tree()
    outcome = hv_host.process("mem-set", "1", "0")
    assert outcome.status == 1, outcome
    assert outcome.stderr.startswith("xbctl: "), outcome
    assert hv_host.hv.log() == []  # "every refusal of xbctl's own comes before any hypercall"
    assert hv_host.tree() == before


def test_failed_pod_call_is_undone_where_xl_leaves_it_half_done(hv_host):
    def pod_fails(host):
        host.hv.fail("set_pod_target", "ENOMEM", domid=2)

    xl, xbctl = both(hv_host, "mem-set", "2", "1024", prepare=pod_fails)
    raised = f"max_mem domid=2 max_memkb={GIB + 1024}"
    pod = f"set_pod_target domid=2 target_pages={(GIB - 8 * MIB + 1024) // 4} -> ENOMEM"
    assert not xl.succeeded
    assert xl.writes == [raised, pod]
    assert xl.domains[2].max_pages == (GIB + 1024) // 4  # xl's half-done change
    assert not xbctl.succeeded
    assert xbctl.outcome.stderr.startswith("xbctl: ")
    original_max_kib = 2 * GIB + 1024
    assert xbctl.writes == [raised, pod, f"max_mem domid=2 max_memkb={original_max_kib}"]
    assert xbctl.domains[2].max_pages == original_max_kib // 4  # put back
    assert xbctl.tree == xbctl.tree_before == xl.tree


def xl_list_mem_mib(host: HypervisorHost) -> dict[int, int]:
    done = host.xl("list")
    assert done.status == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    return {int(row[-5]): int(row[-4]) for row in rows}


@pytest.mark.parametrize("domid", [0, 1, 2])
def test_current_is_what_xl_list_shows(hv_host, domid):
    # tot_pages + outstanding_pages, both moved away from the target so no other source agrees.
    hv_host.hv.set_domain(domid, tot_pages=(300 + domid) * MIB // 4, outstanding_pages=MIB // 4)
    mem_kib = xl_list_mem_mib(hv_host)[domid] * 1024
    assert mem_kib == (301 + domid) * MIB
    outcome = hv_host.process("-d", str(domid), "--json", "current")
    assert outcome.status == 0, outcome
    node = outcome.json()["nodes"]["current"]
    assert node == {"name": "machdep.xen.balloon.current", "value_kib": mem_kib, "source": "hypervisor"}
    plain = hv_host.process("-d", str(domid), "current")
    assert plain.status == 0, plain
    assert plain.stdout == f"machdep.xen.balloon.current = {mem_kib}\n"
