"""The hypervisor, through Xen's own libxenctrl loaded with ctypes (no compiled extension).

Used only by the Xenstore transport when it runs as Domain-0, and imported only when a
command reads or writes a balloon there. xbctl reads C structures only of library
versions whose layout was checked against Xen's public headers:

    Xen 4.17              soname libxenctrl.so.4.17, version node VERS_4.17.0
    Xen 4.18, 4.19, 4.20  soname libxenctrl.so.4.X,  version node libxenctrl_4.X.0

`xc_domaininfo_t` (struct xen_domctl_getdomaininfo) and `xc_physinfo_t` are byte for byte
the same in these releases (4.16 differs in xc_physinfo_t; 4.21 and later are unchecked).
The release is told by the symbol version node every libxenctrl symbol carries (Xen's
tools/libs/libs.mk writes one node for all symbols: `VERS_<major>.<minor>` up to 4.17,
`lib<name>_<major>.<minor>` from 4.18): dlvsym() must find `xc_domain_getinfolist` in it.
A library found by soname is checked the same way, so a mislabelled file is not trusted.
"""

from __future__ import annotations

import ctypes
import errno as errno_names
import os

# Checked releases -> (symbol version node, physinfo free_pages offset, outstanding_pages offset).
# xc_domaininfo_t is the same in all of them (see DOMAININFO_* below).
CHECKED_RELEASES = {
    "4.17": ("VERS_4.17.0", 48, 64),
    "4.18": ("libxenctrl_4.18.0", 48, 64),
    "4.19": ("libxenctrl_4.19.0", 48, 64),
    "4.20": ("libxenctrl_4.20.0", 48, 64),
}
LIBRARY_ENV = "XBCTL_LIBXENCTRL"

# xc_domaininfo_t, x86_64 (SPEC section 6; tests/test_hypervisor.py checks them with the real library).
DOMAININFO_SIZE = 112
DOMAININFO_DOMAIN = 0  # u16
DOMAININFO_FLAGS = 4  # u32
DOMAININFO_TOT_PAGES = 8
DOMAININFO_MAX_PAGES = 16
DOMAININFO_OUTSTANDING_PAGES = 24
DOMAININFO_HANDLE = 76  # u8[16]
PHYSINFO_SIZE = 256  # 112 in these releases; the rest is slack against a longer struct
PHYSINFO_TOTAL_PAGES = 40  # u64, the same in every checked release (tests/test_hypervisor_rig.py)
FLAG_HVM = 1 << 1  # XEN_DOMINF_hvm_guest: HVM or PVH
PAGE_KIB = 4
NEEDED_SYMBOLS = (
    "xc_interface_open",
    "xc_interface_close",
    "xc_domain_getinfolist",
    "xc_domain_setmaxmem",
    "xc_domain_set_pod_target",
    "xc_physinfo",
)

_XTL_VMESSAGE = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p
)
_XTL_PROGRESS = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong
)
_XTL_DESTROY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
XTL_ERROR = 8  # xentoollog_level: messages at this level or above say why something failed


class _Logger(ctypes.Structure):
    """A xentoollog_logger that keeps libxenctrl's complaints instead of printing them."""

    _fields_ = [("vmessage", _XTL_VMESSAGE), ("progress", _XTL_PROGRESS), ("destroy", _XTL_DESTROY)]


class HypervisorError(Exception):
    """A libxenctrl call that failed: which call, and the errno it left."""

    def __init__(self, call: str, errno_value: int) -> None:
        self.call = call
        self.errno = errno_value
        self.errno_name = errno_names.errorcode.get(errno_value, f"errno {errno_value}")
        super().__init__(f"{call} failed: {os.strerror(errno_value)} ({self.errno_name})")


# Xen keeps max_pages in 32 bits; ~0U is its "no limit".
UNLIMITED_PAGES = 2**32 - 1
DOMAINS_PER_CALL = 1024  # domains read by one xc_domain_getinfolist (xl list reads them so too)


class DomainInfo:
    """What the hypervisor holds for one domain (xc_domaininfo_t), in pages (immutable)."""

    __slots__ = ("domid", "flags", "tot_pages", "max_pages", "outstanding_pages", "handle")
    domid: int
    flags: int
    tot_pages: int
    max_pages: int
    outstanding_pages: int
    handle: bytes

    def __init__(
        self, *, domid: int, flags: int, tot_pages: int, max_pages: int, outstanding_pages: int, handle: bytes
    ) -> None:
        for name, value in zip(self.__slots__, (domid, flags, tot_pages, max_pages, outstanding_pages, handle)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("DomainInfo is immutable")

    def with_fields(self, **changes) -> "DomainInfo":
        """A copy with CHANGES applied."""
        return DomainInfo(**{**{name: getattr(self, name) for name in self.__slots__}, **changes})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DomainInfo) and all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __repr__(self) -> str:
        return "DomainInfo(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__) + ")"

    @property
    def current_kib(self) -> int:
        """What `xl list` shows as Mem: (tot_pages + outstanding_pages) * 4 KiB."""
        return (self.tot_pages + self.outstanding_pages) * PAGE_KIB

    @property
    def max_kib(self) -> int:
        """The hypervisor's maximum for the domain (libxl's max_memkb)."""
        return self.max_pages * PAGE_KIB

    @property
    def max_unlimited(self) -> bool:
        """True when the hypervisor sets no limit: max_pages is 2^32-1, Xen's "unlimited" (a
        Domain-0 booted without `max:` in dom0_mem)."""
        return self.max_pages >= UNLIMITED_PAGES

    @property
    def is_hvm(self) -> bool:
        """HVM or PVH: libxl sets a populate-on-demand target for these."""
        return bool(self.flags & FLAG_HVM)

    @property
    def uuid(self) -> str:
        """The domain handle formatted as libxl's LIBXL_UUID_FMT (lowercase 8-4-4-4-12)."""
        text = self.handle.hex()
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def decode_domaininfo(buffer: bytes) -> DomainInfo:
    """One xc_domaininfo_t from its DOMAININFO_SIZE bytes."""
    u16 = int.from_bytes(buffer[DOMAININFO_DOMAIN : DOMAININFO_DOMAIN + 2], "little")
    u32 = int.from_bytes(buffer[DOMAININFO_FLAGS : DOMAININFO_FLAGS + 4], "little")

    def u64(offset: int) -> int:
        return int.from_bytes(buffer[offset : offset + 8], "little")

    return DomainInfo(
        domid=u16,
        flags=u32,
        tot_pages=u64(DOMAININFO_TOT_PAGES),
        max_pages=u64(DOMAININFO_MAX_PAGES),
        outstanding_pages=u64(DOMAININFO_OUTSTANDING_PAGES),
        handle=bytes(buffer[DOMAININFO_HANDLE : DOMAININFO_HANDLE + 16]),
    )


class Unavailable(Exception):
    """Why the hypervisor is not used (the library is missing, unchecked, or cannot open it)."""


class Refused(Unavailable):
    """The privcmd device refused us (EACCES, EPERM): it is root's."""


# Where libxencall opens the hypervisor (tools/libs/call/linux.c): the first, else the second.
PRIVCMD_DEVICES = ("/dev/xen/privcmd", "/proc/xen/privcmd")


def privcmd_path() -> str:
    """The privcmd device libxencall opens on this machine (the first one that is there)."""
    for path in PRIVCMD_DEVICES:
        try:
            os.stat(path)
        except PermissionError:
            return path
        except OSError:
            continue
        return path
    return PRIVCMD_DEVICES[0]


def _dlvsym():
    libc = ctypes.CDLL(None)
    try:
        function = libc.dlvsym
    except AttributeError:  # glibc before 2.34 keeps it in libdl
        function = ctypes.CDLL("libdl.so.2").dlvsym
    function.restype = ctypes.c_void_p
    function.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    return function


def _release_of(library: ctypes.CDLL) -> str | None:
    """The checked Xen release LIBRARY was built for, told by its symbol version node."""
    dlvsym = _dlvsym()
    for release, (node, _, _) in CHECKED_RELEASES.items():
        if dlvsym(library._handle, b"xc_domain_getinfolist", node.encode()):
            return release
    return None


def load_library() -> tuple[ctypes.CDLL, str, str]:
    """libxenctrl, its checked release and how it was named; Unavailable says why not."""
    explicit = os.environ.get(LIBRARY_ENV)
    if explicit is not None:
        if explicit == "":
            raise Unavailable(f"{LIBRARY_ENV} is empty (the hypervisor layer is switched off)")
        candidates = [explicit]
    else:
        # Newest first: a host has one Xen; the loader searches LD_LIBRARY_PATH and ld.so.cache.
        candidates = [f"libxenctrl.so.{release}" for release in reversed(CHECKED_RELEASES)]
    failures = []
    for name in candidates:
        try:
            library = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            failures.append(str(exc))
            continue
        release = _release_of(library)
        if release is None:
            checked = ", ".join(node for node, _, _ in CHECKED_RELEASES.values())
            raise Unavailable(
                f"{name} is not a libxenctrl of a Xen release xbctl has checked ({checked}); "
                "its structures are not read"
            )
        return library, release, name
    if explicit is not None:
        raise Unavailable(f"cannot load {LIBRARY_ENV}={explicit}: {failures[0]}")
    raise Unavailable("libxenctrl not found (libxenctrl.so.4.17 to 4.20; Debian package libxenmisc4.17)")


class Hypervisor:
    """An open libxenctrl interface: read domains and the host, set maximum and PoD target."""

    def __init__(self) -> None:
        self.library, self.release, self.library_name = load_library()
        self._complaints: list[str] = []
        self._complaint_errno = 0  # the errno libxencall logged with its complaint
        self._logger = _Logger(
            _XTL_VMESSAGE(self._on_message), _XTL_PROGRESS(lambda *args: None), _XTL_DESTROY(lambda _: None)
        )
        lib = self.library
        for symbol in NEEDED_SYMBOLS:
            if not hasattr(lib, symbol):
                raise Unavailable(f"{self.library_name} has no {symbol}()")
        lib.xc_interface_open.restype = ctypes.c_void_p
        lib.xc_interface_open.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint]
        lib.xc_interface_close.argtypes = [ctypes.c_void_p]
        lib.xc_domain_getinfolist.restype = ctypes.c_int
        lib.xc_domain_getinfolist.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint, ctypes.c_void_p]
        lib.xc_domain_setmaxmem.restype = ctypes.c_int
        lib.xc_domain_setmaxmem.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint64]
        lib.xc_domain_set_pod_target.restype = ctypes.c_int
        lib.xc_domain_set_pod_target.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_uint64,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.xc_physinfo.restype = ctypes.c_int
        lib.xc_physinfo.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        logger = ctypes.byref(self._logger)
        ctypes.set_errno(0)
        self.handle = lib.xc_interface_open(logger, logger, 0)
        if not self.handle:
            errno_value = ctypes.get_errno()
            why = self._complaints[-1] if self._complaints else "no reason given"
            errno_value = errno_value or self._complaint_errno
            if errno_value:
                why += f" ({os.strerror(errno_value)})"
            refused = errno_value in (errno_names.EACCES, errno_names.EPERM)
            raise (Refused if refused else Unavailable)(f"{self.library_name}: xc_interface_open failed: {why}")

    def _on_message(self, _logger, level, errno_value, context, message_format, _args) -> None:
        # The format is printf's, its arguments a va_list ctypes cannot walk: keep the text.
        if level >= XTL_ERROR:
            where = (context or b"").decode("utf-8", "replace")
            text = (message_format or b"").decode("utf-8", "replace").strip()
            self._complaints.append(f"{where}: {text}" if where else text)
            if errno_value > 0:
                self._complaint_errno = errno_value

    def _fail(self, call: str) -> HypervisorError:
        return HypervisorError(call, ctypes.get_errno() or 0)

    def domain(self, domid: int) -> DomainInfo | None:
        """DOMID's info, or None when the hypervisor has no such domain."""
        buffer = ctypes.create_string_buffer(DOMAININFO_SIZE)
        ctypes.set_errno(0)
        found = self.library.xc_domain_getinfolist(self.handle, domid, 1, buffer)
        if found < 0:
            raise self._fail(f"xc_domain_getinfolist({domid})")
        info = decode_domaininfo(buffer.raw) if found == 1 else None
        # It answers with the next domain that exists: a different id means DOMID is gone.
        return info if info is not None and info.domid == domid else None

    def domains(self, domids: list[int]) -> dict[int, DomainInfo | None]:
        """The info of each of DOMIDS (None: no such domain), read as `xl list` reads them: in
        batches of consecutive domains, a few hypercalls for thousands of domains."""
        wanted = sorted(set(domids))
        found: dict[int, DomainInfo] = {}
        buffer = ctypes.create_string_buffer(DOMAININFO_SIZE * DOMAINS_PER_CALL)
        next_id = wanted[0] if wanted else 0
        while wanted and next_id <= wanted[-1]:
            ctypes.set_errno(0)
            count = self.library.xc_domain_getinfolist(self.handle, next_id, DOMAINS_PER_CALL, buffer)
            if count < 0:
                raise self._fail(f"xc_domain_getinfolist({next_id})")
            raw = buffer.raw
            for index in range(count):
                info = decode_domaininfo(raw[index * DOMAININFO_SIZE : (index + 1) * DOMAININFO_SIZE])
                found[info.domid] = info
            if count < DOMAINS_PER_CALL:
                break
            next_id = info.domid + 1
        return {domid: found.get(domid) for domid in domids}

    def free_kib(self) -> int:
        """Free host memory as `xl info` shows it: (free_pages - outstanding_pages) * 4 KiB."""
        return self.memory_kib()[1]

    def memory_kib(self) -> tuple[int, int]:
        """The host's total and free memory in KiB from one xc_physinfo, as `xl info` shows
        them: total_pages * 4, (free_pages - outstanding_pages) * 4."""
        buffer = ctypes.create_string_buffer(PHYSINFO_SIZE)
        ctypes.set_errno(0)
        if self.library.xc_physinfo(self.handle, buffer) != 0:
            raise self._fail("xc_physinfo")
        _, free_at, outstanding_at = CHECKED_RELEASES[self.release]
        raw = buffer.raw
        total = int.from_bytes(raw[PHYSINFO_TOTAL_PAGES : PHYSINFO_TOTAL_PAGES + 8], "little")
        free = int.from_bytes(raw[free_at : free_at + 8], "little")
        outstanding = int.from_bytes(raw[outstanding_at : outstanding_at + 8], "little")
        return total * PAGE_KIB, max(free - outstanding, 0) * PAGE_KIB

    def set_max_kib(self, domid: int, max_kib: int) -> None:
        """xc_domain_setmaxmem(DOMID, MAX_KIB)."""
        ctypes.set_errno(0)
        if self.library.xc_domain_setmaxmem(self.handle, domid, max_kib) != 0:
            raise self._fail(f"xc_domain_setmaxmem({domid}, {max_kib} KiB)")

    def set_pod_target(self, domid: int, pages: int) -> None:
        """xc_domain_set_pod_target(DOMID, PAGES) (HVM and PVH guests)."""
        ctypes.set_errno(0)
        if self.library.xc_domain_set_pod_target(self.handle, domid, pages, None, None, None) != 0:
            raise self._fail(f"xc_domain_set_pod_target({domid}, {pages} pages)")

    def close(self) -> None:
        """Close the interface."""
        if self.handle:
            self.library.xc_interface_close(self.handle)
            self.handle = None
