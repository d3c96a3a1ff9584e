"""The hypervisor test rig itself: Debian's real libxenctrl and xl over the rig's libxencall.

If these fail, the parity suite (test_xl_parity.py) proves nothing, so they check that the
rig answers the way Xen 4.17 does for the calls xbctl and xl make, and that the struct
layout xbctl reads through ctypes is the one in libxen-dev's headers.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from xen_fixtures import GIB, LAYOUT, MIB, domain_uuid, layout_domains
from xenharness import compiler
from xenharness.hypervisor import LOG_ENV, TABLE_ENV, Domain, FakeHypervisor, Host

# Reads every domain from `first` through Debian's real libxenctrl with ctypes, in a process
# of its own so that LD_LIBRARY_PATH (read at start-up) puts the rig's libxencall first.
GETINFOLIST = textwrap.dedent("""
    import ctypes, json, os, sys
    xc = ctypes.CDLL(os.environ["XBCTL_LIBXENCTRL"], use_errno=True)
    xc.xc_interface_open.restype = ctypes.c_void_p
    xc.xc_interface_open.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint]
    xc.xc_domain_getinfolist.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint,
                                         ctypes.c_void_p]
    xc.xc_interface_close.argtypes = [ctypes.c_void_p]
    xch = xc.xc_interface_open(None, None, 0)
    assert xch, ctypes.get_errno()
    first, count = int(sys.argv[1]), int(sys.argv[2])
    buf = ctypes.create_string_buffer(112 * count)
    n = xc.xc_domain_getinfolist(xch, first, count, buf)
    err = ctypes.get_errno()
    out = []
    for i in range(max(n, 0)):
        raw = buf.raw[112 * i:112 * (i + 1)]
        u64 = lambda off: int.from_bytes(raw[off:off + 8], "little")
        out.append({"domid": int.from_bytes(raw[0:2], "little"),
                    "flags": int.from_bytes(raw[4:8], "little"),
                    "tot_pages": u64(8), "max_pages": u64(16), "outstanding_pages": u64(24),
                    "handle": raw[76:92].hex()})
    xc.xc_interface_close(xch)
    print(json.dumps({"n": n, "errno": err if n < 0 else 0, "domains": out}))
""")


def getinfolist(hv: FakeHypervisor, first: int = 0, count: int = 64) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", GETINFOLIST, str(first), str(count)],
        env=hv.env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def hv(xs_tools, tmp_path) -> FakeHypervisor:
    hv = FakeHypervisor(xs_tools, tmp_path / "hv")
    hv.reset(layout_domains())
    return hv


def test_real_libxenctrl_reads_the_table(hv):
    hv.set_domain(2, outstanding_pages=5)
    result = getinfolist(hv)
    assert result["n"] == len(LAYOUT)
    by_id = {d["domid"]: d for d in result["domains"]}
    assert sorted(by_id) == sorted(LAYOUT)
    web = by_id[1]
    assert web["tot_pages"] == 768 * MIB // 4
    assert web["max_pages"] == (1 * GIB + 1024) // 4
    assert web["flags"] == 0
    assert web["handle"] == domain_uuid(1).replace("-", "")
    assert by_id[2]["flags"] & 2  # HVM
    assert by_id[2]["outstanding_pages"] == 5
    assert hv.log() == ["getdomaininfolist first=0 max=64"]


def test_getinfolist_returns_the_next_existing_domains(hv):
    hv.remove_domain(1)
    result = getinfolist(hv, first=1, count=1)
    # As Xen does: asking for domain 1 when it is gone answers with the next one.
    assert result["n"] == 1
    assert result["domains"][0]["domid"] == 2
    assert getinfolist(hv, first=6, count=4) == {"n": 0, "errno": 0, "domains": []}


def test_injected_failure_reaches_the_caller_with_its_errno(hv):
    hv.fail("getdomaininfolist", "EPERM")
    result = getinfolist(hv)
    assert result["n"] == -1
    assert result["errno"] == errno.EPERM  # preserved across libxenctrl's buffer frees
    assert hv.log() == ["getdomaininfolist first=0 max=64 -> EPERM"]
    assert getinfolist(hv)["n"] == len(LAYOUT)  # once only


# Run in a process of its own: a library loaded into the test process would stay there and
# answer later dlopen()s by soname, whatever those tests expect.  The rig's libraries are
# loaded the way an in-process test would (preload_client_libs, no LD_LIBRARY_PATH).
WRITES = textwrap.dedent("""
    import ctypes, errno, os, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from xenharness import ensure_tools
    from xenharness.hypervisor import FakeHypervisor, preload_client_libs
    tools = ensure_tools()
    hv = FakeHypervisor(tools, sys.argv[2])
    preload_client_libs(tools)
    xc = ctypes.CDLL(str(tools.libxenctrl), use_errno=True)
    xc.xc_interface_open.restype = ctypes.c_void_p
    xc.xc_interface_open.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint]
    xc.xc_interface_close.argtypes = [ctypes.c_void_p]
    xc.xc_domain_setmaxmem.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64]
    xc.xc_domain_set_pod_target.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64,
                                            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    xc.xc_domain_pause.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    xch = xc.xc_interface_open(None, None, 0)
    assert xch
    def call(name, *args):
        rc = getattr(xc, name)(xch, *args)
        return f"{name}{args[:2]} = {rc} {errno.errorcode.get(ctypes.get_errno(), '') if rc else ''}".strip()
    print(call("xc_domain_setmaxmem", 2, 1025 * 1024))
    print(call("xc_domain_set_pod_target", 2, 1000, None, None, None))
    print(call("xc_domain_set_pod_target", 1, 1000, None, None, None))
    print(call("xc_domain_setmaxmem", 9, 1024))
    print(call("xc_domain_pause", 1))
    hv.fail("set_pod_target", "ENOMEM", domid=2)
    print(call("xc_domain_set_pod_target", 2, 2000, None, None, None))
    xencall = ctypes.CDLL(str(tools.client_lib_dir / "libxencall.so.1"), use_errno=True)
    xencall.xencall_open.restype = ctypes.c_void_p
    xencall.xencall_open.argtypes = [ctypes.c_void_p, ctypes.c_uint]
    xencall.xencall1.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint64]
    xencall.xencall_close.argtypes = [ctypes.c_void_p]
    handle = xencall.xencall_open(None, 0)
    domctl = ctypes.create_string_buffer(256)
    domctl[0:4] = (5).to_bytes(4, "little")  # XEN_DOMCTL_getdomaininfo
    domctl[4:8] = (0x14).to_bytes(4, "little")  # Xen 4.16's interface version
    rc = xencall.xencall1(handle, 36, ctypes.addressof(domctl))
    print(f"domctl 0x14 = {rc} {errno.errorcode.get(ctypes.get_errno())}")
    xencall.xencall_close(handle)
    xc.xc_interface_close(xch)
""")


def test_writes_change_the_table_and_are_logged(hv):
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    env.update({TABLE_ENV: str(hv.table_path), LOG_ENV: str(hv.log_path)})
    done = subprocess.run(
        [sys.executable, "-c", WRITES, str(Path(__file__).parent), str(hv.directory)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "xc_domain_setmaxmem(2, 1049600) = 0",
        "xc_domain_set_pod_target(2, 1000) = 0",
        # A PV guest has no PoD; a missing domain is ESRCH; anything else is ENOSYS.
        "xc_domain_set_pod_target(1, 1000) = -1 EINVAL",
        "xc_domain_setmaxmem(9, 1024) = -1 ESRCH",
        "xc_domain_pause(1,) = -1 ENOSYS",
        "xc_domain_set_pod_target(2, 2000) = -1 ENOMEM",
        # Built against other headers than the library's, every domctl would be EACCES.
        "domctl 0x14 = -1 EACCES",
    ]
    assert hv.domain(2).max_pages == 1025 * 1024 // 4
    assert hv.domain(2).pod_target == 1000  # the failed call changed nothing
    assert hv.log() == [
        "max_mem domid=2 max_memkb=1049600",
        "set_pod_target domid=2 target_pages=1000",
        "set_pod_target domid=1 target_pages=1000 -> EINVAL",
        "max_mem domid=9 max_memkb=1024 -> ESRCH",
        "unknown domctl cmd=3 domid=1 -> ENOSYS",
        "set_pod_target domid=2 target_pages=2000 -> ENOMEM",
        "domctl cmd=5 interface_version=0x14 -> EACCES",
    ]
    assert hv.writes() == [ln for ln in hv.log() if ln.startswith(("max_mem", "set_pod"))]


OFFSETS_C = r"""
#include <stddef.h>
#include <stdio.h>
#include <xenctrl.h>
#define OFF(t, f) printf("%s.%s %zu\n", #t, #f, offsetof(t, f))
int main(void)
{
    printf("xc_domaininfo_t %zu\n", sizeof(xc_domaininfo_t));
    OFF(xc_domaininfo_t, domain);
    OFF(xc_domaininfo_t, flags);
    OFF(xc_domaininfo_t, tot_pages);
    OFF(xc_domaininfo_t, max_pages);
    OFF(xc_domaininfo_t, outstanding_pages);
    OFF(xc_domaininfo_t, handle);
    printf("xc_physinfo_t %zu\n", sizeof(xc_physinfo_t));
    OFF(xc_physinfo_t, total_pages);
    OFF(xc_physinfo_t, free_pages);
    OFF(xc_physinfo_t, outstanding_pages);
    printf("XEN_DOMINF_hvm_guest %d\n", XEN_DOMINF_hvm_guest);
    return 0;
}
"""


def dynamic_symbols(path, defined: bool) -> set[tuple[str, str]]:
    """(name, version) of the functions PATH defines or imports (objdump -T)."""
    out = subprocess.run(["objdump", "-T", str(path)], check=True, capture_output=True, text=True).stdout
    found = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 3 or "DF" not in parts or ("*UND*" in parts) == defined:
            continue
        found.add((parts[-1], parts[-2].strip("()")))
    return found


@pytest.mark.parametrize(
    "prefix, rig_lib", [("xencall", "libxencall.so.1"), ("xenforeignmemory", "libxenforeignmemory.so.1")]
)
def test_rig_libraries_define_everything_debians_libraries_import(xs_tools, prefix, rig_lib):
    # Debian's libraries are linked BIND_NOW: one missing symbol and nothing loads.
    wanted = set()
    for lib in (
        "libxenctrl.so.4.17",
        "libxendevicemodel.so.1",
        "libxenhypfs.so.1",
        "libxenguest.so.4.17",
        "libxenlight.so.4.17",
    ):
        wanted |= {
            (n, v)
            for n, v in dynamic_symbols(xs_tools.lib_dir / lib, defined=False)
            if n.startswith(prefix + "_") or n.startswith(prefix) and n[len(prefix) :].isdigit()
        }
    assert ("xencall_buffers_never_fault", "VERS_1.1") in wanted or prefix != "xencall"
    assert ("xenforeignmemory_open", "VERS_1.0") in wanted or prefix != "xenforeignmemory"
    provided = dynamic_symbols(xs_tools.client_lib_dir / rig_lib, defined=True)
    provided_names = {n for n, _ in provided}
    for name, version in wanted:
        # libxenguest imports a few without a version: any default version satisfies it.
        assert (name, version) in provided or (version in ("", "Base") and name in provided_names), name


def test_struct_layout_matches_libxen_dev_headers(xs_tools, tmp_path):
    source = tmp_path / "offsets.c"
    source.write_text(OFFSETS_C)
    exe = tmp_path / "offsets"
    subprocess.run(
        [compiler(), "-D__XEN_TOOLS__", f"-I{xs_tools.include_dir}", "-o", str(exe), str(source)],
        check=True,
        capture_output=True,
        text=True,
    )
    printed = dict(
        line.rsplit(" ", 1)
        for line in subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines()
    )
    assert {k: int(v) for k, v in printed.items()} == {
        "xc_domaininfo_t": 112,
        "xc_domaininfo_t.domain": 0,
        "xc_domaininfo_t.flags": 4,
        "xc_domaininfo_t.tot_pages": 8,
        "xc_domaininfo_t.max_pages": 16,
        "xc_domaininfo_t.outstanding_pages": 24,
        "xc_domaininfo_t.handle": 76,
        "xc_physinfo_t": 112,
        "xc_physinfo_t.total_pages": 40,
        "xc_physinfo_t.free_pages": 48,
        "xc_physinfo_t.outstanding_pages": 64,
        "XEN_DOMINF_hvm_guest": 2,
    }


def test_xl_list_shows_the_table(hv_host):
    hv_host.hv.set_domain(1, tot_pages=700 * MIB // 4, outstanding_pages=10 * MIB // 4)
    done = hv_host.xl("list")
    assert done.status == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    mem_mib = {int(row[-5]): int(row[-4]) for row in rows}  # ID and Mem columns
    assert mem_mib == {0: 4096, 1: 710, 2: 1536, 3: 512, 4: 256, 5: 256}
    assert [row[0] for row in rows] == ["Domain-0", "web", "db", "mail", "web", "7"]
    assert not hv_host.hv.writes()


def test_xl_info_free_memory_is_free_minus_outstanding(hv_host):
    hv_host.hv.set_host(free_pages=3 * GIB // 4, outstanding_pages=GIB // 4, total_pages=16 * GIB // 4)
    done = hv_host.xl("info")
    assert done.status == 0, done.stderr
    fields = dict(line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
    assert int(fields["total_memory           "]) == 16 * 1024
    assert int(fields["free_memory            "]) == 2 * 1024
    assert int(fields["outstanding_claims     "]) == 1024
    assert fields["xen_version            "].strip().startswith("4.17")


def test_xl_mem_set_and_mem_max_work_on_the_rig(hv_host):
    done = hv_host.xl("mem-set", "2", "1024m")
    assert done.status == 0, done.stderr
    new_kib = 1024 * MIB - 8 * MIB  # minus memory/videoram
    assert hv_host.hv.writes() == [
        f"max_mem domid=2 max_memkb={1024 * MIB + 1024}",
        f"set_pod_target domid=2 target_pages={(new_kib + 1024) // 4}",
    ]
    assert hv_host.read("/local/domain/2/memory/target") == str(new_kib)
    assert hv_host.read(f"/vm/{domain_uuid(2)}/memory") == str(new_kib // 1024)
    assert hv_host.hv.domain(2).max_pages == (1024 * MIB + 1024) // 4
    hv_host.hv.clear_log()
    done = hv_host.xl("mem-max", "1", "2048m")
    assert done.status == 0, done.stderr
    assert hv_host.hv.writes() == [f"max_mem domid=1 max_memkb={2 * GIB + 1024}"]
    assert hv_host.read("/local/domain/1/memory/static-max") == str(2 * GIB)


def test_xl_leaves_a_raised_maximum_when_pod_fails(hv_host):
    # The half-done change xbctl undoes: xl has set the maximum when the PoD call fails.
    hv_host.hv.fail("set_pod_target", "ENOMEM")
    before = hv_host.tree()
    done = hv_host.xl("mem-set", "2", "1024m")
    assert done.status != 0
    assert hv_host.hv.writes() == [
        f"max_mem domid=2 max_memkb={1024 * MIB + 1024}",
        f"set_pod_target domid=2 target_pages={(1024 * MIB - 8 * MIB + 1024) // 4} -> ENOMEM",
    ]
    assert hv_host.hv.domain(2).max_pages == (1024 * MIB + 1024) // 4
    assert hv_host.tree() == before  # the transaction was abandoned


def test_table_round_trips(hv):
    hv.reset(
        [
            Domain(
                domid=7,
                tot_pages=1,
                max_pages=2,
                flags=2,
                outstanding_pages=3,
                handle=domain_uuid(7),
                pod_target=4,
                vcpus=3,
                cpu_time=5,
            )
        ],
        host=Host(free_pages=11, outstanding_pages=12, total_pages=13),
    )
    hv.fail("max_mem", "EBUSY", domid=7, times=2)
    table = hv.table()
    assert table.domains == {7: Domain(7, 1, 2, 2, 3, domain_uuid(7), 4, 3, 5)}
    assert (table.host.free_pages, table.host.outstanding_pages) == (11, 12)
    assert [(f.op, f.err, f.domid, f.times) for f in table.failures] == [("max_mem", errno.EBUSY, 7, 2)]
    assert getinfolist(hv)["domains"][0]["outstanding_pages"] == 3
